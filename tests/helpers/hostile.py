"""Hypothesis strategies for what a careless or hostile producer sends: records, documents and raw bytes.

A document is drawn as JSON values that Python's ``json`` can write but JSON cannot hold (NaN, Infinity,
numbers of thousands of digits, lone surrogates, control characters in keys), then possibly mangled
(truncated, deeply nested, bytes that are not UTF-8). Whatever comes out must be stored whole or refused
with a reason; these strategies only make the input.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

KEY = "id"

_texts = st.one_of(
    st.text(max_size=20),
    st.text(
        alphabet=st.characters(categories=["Cc", "Cs", "Cf", "Zs", "Lu", "Nd"]), max_size=12
    ),  # control, surrogates
    st.sampled_from(["", "..", "NaN", "\x00", "a\x00b", "\ud800", "SO-1\n", "k" * 501, "caf\u00e9", "\u202e"]),
)
_numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-(10**600), 1.5e308, 0.1, -0.0]),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _texts)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
entity_keys = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(min_size=1, max_size=12),
    _texts,
    _numbers,
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
plain_keys = st.one_of(
    st.integers(min_value=0, max_value=10**12), st.from_regex(r"[A-Za-z0-9 ._/-]{1,30}", fullmatch=True)
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """Half the time a record nobody may refuse; else one with hostile values, key, or no key."""
    names = st.text(max_size=8).filter(lambda k: k != KEY)
    if draw(st.booleans()):
        record: dict[str, Any] = draw(st.dictionaries(names, plain_values, max_size=4))
        record[KEY] = draw(plain_keys)
        return record
    record = draw(st.dictionaries(names, values, max_size=4))
    if draw(st.integers(0, 9)):  # now and then a record without the key
        record[KEY] = draw(st.one_of(entity_keys, plain_keys))
    return record


def dumps(value: Any) -> str:
    """What a lax producer writes: Python's json, NaN and Infinity included."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


@st.composite
def mangled(draw: st.DrawFn, text: str) -> bytes:
    """``text`` as bytes, perhaps mangled the way a transfer, a producer or an attacker would."""
    how = draw(
        st.sampled_from(
            ["as is", "as is", "as is", "truncated", "nested", "huge", "overflow", "latin-1", "garbage", "nul"]
        )
    )
    if how == "truncated" and text:
        return text.encode("utf-8", "surrogatepass")[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "nested":
        depth = draw(st.sampled_from([99, 101, 5_000, 100_000]))
        return ("[" * depth + "{}" + "]" * depth).encode()
    if how == "huge":  # a number of 5,000 digits beside the document
        return ("[" + text + ", " + "9" * 5000 + "]").encode("utf-8", "surrogatepass")
    if how == "overflow" and "{" in text:  # a float that Python reads as infinity, inside the first object
        at = text.index("{") + 1
        member = '"overflow": 1e400' + ("" if text[at : at + 1] == "}" else ", ")
        return (text[:at] + member + text[at:]).encode("utf-8", "surrogatepass")
    if how == "latin-1":
        return text.encode("latin-1", "replace") + b"\xe9\xff"
    if how == "garbage":
        return draw(st.binary(max_size=64))
    if how == "nul":
        return text.encode("utf-8", "surrogatepass") + b"\x00"
    return text.encode("utf-8", "surrogatepass")


def storable(record: dict[str, Any]) -> bool:
    """Whether the store must keep ``record`` whole: plain JSON that a destination can be sent."""
    try:
        json.dumps(record, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return False
    return True


def plain(record: dict[str, Any]) -> bool:
    """A record nobody may refuse: a printable text or whole-number key of at most 500 characters, and
    content plain JSON can hold."""
    key = record.get(KEY)
    if isinstance(key, bool) or not isinstance(key, str | int):
        return False
    text = str(key)
    printable = all(not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF) for c in text)
    return 0 < len(text) <= 500 and printable and storable(record) and _depth(record) <= 100


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0
