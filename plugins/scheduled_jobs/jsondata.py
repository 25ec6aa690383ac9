"""JSON from sources we do not control: files in an inbox, API pages, webhook bodies.

Python's ``json`` accepts more than JSON: ``NaN`` and ``Infinity``, and nesting up to the interpreter's
recursion limit. What it accepts here is stored, and later dumped, loaded and sent again at other stack
depths by other processes, so a document is refused at the edge unless every later step can hold it:
- ``NaN``, ``Infinity`` and ``-Infinity`` are refused (a number that overflows to infinity, like ``1e400``,
  is refused by the store's ``canonical_json``, which every source goes through);
- nesting is capped at ``MAX_DEPTH`` levels, far below the recursion limit;
- a number of more digits than Python converts (4,300) is refused, not a crash;
- text must be UTF-8 (or UTF-16/32 with a BOM, as ``json`` detects), without lone surrogates;
- an object may name a key once: Python keeps the last value of a repeated key, and other parsers the
  first, so ``{"id": 1, "id": 2}`` would lose a value without a word.
Every refusal is a ``ValueError`` whose message says what and where, built from the parser's position,
never from the document itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from scheduled_jobs.exceptions import ScheduledJobsError

MAX_DEPTH = 100
"""Arrays and objects nested deeper than this are refused (real records nest a handful of levels)."""


class InvalidJsonError(ScheduledJobsError, ValueError):
    """Text that is not JSON at all; ``line`` and ``column`` say where the parser stopped."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"not valid JSON: {message} at line {line}, column {column}")
        self.message = message
        self.line = line
        self.column = column


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _first_repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    return ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        repeated = _first_repeated(pairs)
        shown = repr(repeated) if len(repeated) <= 60 else repr(repeated[:50]) + "..."
        raise ValueError(f"an object names the key {shown} twice: which value counts would be a guess")
    return found


class TooManyItemsError(ScheduledJobsError, ValueError):
    """A top-level list longer than the caller takes; raised as soon as the item after the last one begins."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} items in the list")
        self.limit = limit


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def loads(data: bytes | str, max_items: int | None = None) -> Any:
    """Parse untrusted JSON; ``ValueError`` with the reason when it is not plain, storable JSON.

    With ``max_items``, a top-level list of more items is refused (``TooManyItemsError``) while it is
    read: ten megabytes of ``{}`` are three and a half million objects, and building them all only to
    count them would cost a second of CPU and half a gigabyte per request.
    """
    try:
        document = _parse(data, max_items)
    except json.JSONDecodeError as exc:
        raise InvalidJsonError(exc.msg, exc.lineno, exc.colno) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    except TooManyItemsError:
        raise
    except ValueError as exc:  # NaN/Infinity (ours) or a number of more digits than Python converts
        reason = str(exc)
        if "integer string conversion" in reason:
            reason = "a number has more than 4300 digits"
        raise ValueError(reason) from None
    if isinstance(document, dict | list):
        check_depth(document, data)
    return document


def _parse(data: bytes | str, max_items: int | None) -> Any:
    if max_items is None:
        return json.loads(data, parse_constant=_no_constant, object_pairs_hook=_object)
    # Decoded as json.loads decodes bytes (UTF-8, or UTF-16/32 told by the first bytes).
    text = data.decode(json.detect_encoding(data), "surrogatepass") if isinstance(data, bytes) else data
    start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]  # matches the empty string
    if not text.startswith("[", start):  # one value, not a list: json.loads as given (bytes and text differ on a BOM)
        return json.loads(data, parse_constant=_no_constant, object_pairs_hook=_object)
    # The top-level list item by item, with json's own scanner: same values, same errors and positions.
    decoder = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_object)
    items: list[Any] = []
    index = _WHITESPACE.match(text, start + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", index):
        index += 1
    else:
        while True:
            if len(items) >= max_items:
                raise TooManyItemsError(max_items)
            item, index = decoder.raw_decode(text, index)
            items.append(item)
            index = _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
            if text.startswith("]", index):
                index += 1
                break
            if not text.startswith(",", index):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index = _WHITESPACE.match(text, index + 1).end()  # type: ignore[union-attr]
    end = _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return items


def check_depth(document: Any, text: bytes | str | None = None) -> None:
    """Refuse an already parsed value nested deeper than ``MAX_DEPTH``.

    ``text``, when given, is its source: a document with no more brackets than ``MAX_DEPTH`` cannot
    nest deeper, which spares the walk for small documents (two C-speed counts).
    """
    if text is not None:
        brackets = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
        if brackets <= MAX_DEPTH:
            return
    level: list[Any] = [document]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise ValueError(f"nested more than {MAX_DEPTH} levels deep")


def type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages to whoever sent the JSON (not Python's names)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
