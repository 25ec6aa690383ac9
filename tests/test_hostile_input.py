"""Hostile records at the edge: JSON that Python accepts but JSON does not, keys no store can hold, and
contents no destination could be sent. Each is refused with a reason; nothing of it is stored.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from scheduled_jobs import jsondata
from scheduled_jobs.ingesting import entity_key_of, keyed_records
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TaskStore:
    if request.param == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    url: str = request.getfixturevalue("postgres_server_url")
    found = TaskStore.from_url(url)
    with found.engine.begin() as conn:
        for table in ("scheduled_jobs_task", "scheduled_jobs_entity"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    return found


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"price": NaN}', "NaN is not a JSON number"),
        ('[{"price": Infinity}]', "Infinity is not a JSON number"),
        ('{"price": -Infinity}', "-Infinity is not a JSON number"),
        ("[" * 100_000, "nested more than 100 levels deep"),
        ("[" * 101 + "]" * 101, "nested more than 100 levels deep"),
        ('{"a": ' * 101 + "1" + "}" * 101, "nested more than 100 levels deep"),
        ('{"id": 1, "total": ' + "9" * 5000 + "}", "a number has more than 4300 digits"),
        ('{"id": 1,', "not valid JSON: Expecting property name enclosed in double quotes at line 1, column 10"),
        (b'{"name": "\xff\xfe caf\xe9"}', "not UTF-8 text: invalid start byte at byte 10"),
        # Python keeps the last value: the first would be lost without a word.
        ('{"id": 1, "id": 2}', "an object names the key 'id' twice: which value counts would be a guess"),
        (
            '[{"id": 1, "lines": [{"qty": 1, "qty": 9}]}]',
            "an object names the key 'qty' twice: which value counts would be a guess",
        ),
    ],
)
def test_untrusted_json_is_refused_with_its_reason(text: str | bytes, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        jsondata.loads(text)
    assert str(caught.value) == reason
    assert len(str(caught.value)) < 200, "a reason never carries the document"


def test_plain_json_at_the_depth_limit_is_read_whole() -> None:
    deep = "[" * 100 + "]" * 100
    assert jsondata.loads(deep) is not None
    document = {"id": 7, "lines": [{"sku": "A", "qty": 2, "price": 1.5e300}], "big": 10**4000, "note": "Nan"}
    assert jsondata.loads(json.dumps(document)) == document


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "a record's entity key 'id' is None (a null); it must be a non-empty string or a whole number"),
        (True, "a record's entity key 'id' is True (a bool); it must be a non-empty string or a whole number"),
        (7.5, "a record's entity key 'id' is 7.5 (a float); it must be a non-empty string or a whole number"),
        ({"a": 1}, "a record's entity key 'id' is {'a': 1} (a dict); it must be a non-empty string or a whole number"),
        ("", "a record's entity key 'id' is ''; it must be a non-empty string or a whole number"),
        ("k" * 501, "a record's entity key 'id' is 501 characters long; at most 500 are allowed ("),
        pytest.param(10**5000, "a record's entity key 'id' is a number of more than 500 digits", id="5001-digits"),
        ("SO-\x001", "a record's entity key 'id' holds the control character U+0000 at position 3 ('SO-\\x001')"),
        ("SO-1\n", "a record's entity key 'id' holds the control character U+000A at position 4"),
        ("SO-\ud8001", "a record's entity key 'id' holds the control character U+D800 at position 3"),
    ],
)
def test_an_unusable_entity_key_is_refused_at_the_edge(value: Any, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        entity_key_of({"id": value}, "id")
    assert str(caught.value).startswith(reason), str(caught.value)
    assert len(str(caught.value)) < 250


def test_keys_77_and_text_77_are_one_entity(store: TaskStore) -> None:
    """Keys are text: a CSV file (always text) and a JSON API (a number) name one record."""
    assert entity_key_of({"id": 77}, "id") == entity_key_of({"id": "77"}, "id") == "77"
    assert entity_key_of({"id": "k" * 500}, "id") == "k" * 500, "500 characters are allowed"
    store.add_entities(["r"], keyed_records([{"id": 77, "name": "A"}], "id"))
    store.add_entities(["r"], keyed_records([{"id": "77", "name": "B"}], "id"))
    repeat = store.add_entities(["r"], keyed_records([{"id": "77", "name": "B"}], "id"))
    assert repeat.unchanged == 1, "the last content of entity 77 is remembered whatever the key's JSON type"
    assert [task["entity_key"] for task in store.list_tasks("r")] == ["77", "77"]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT entity_key FROM scheduled_jobs_entity")).scalars().all() == ["77"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"price": float("nan")}, "entity 'k1': a number is NaN or infinite, which JSON cannot hold"),
        ({"price": json.loads("1e400")}, "entity 'k1': a number is NaN or infinite, which JSON cannot hold"),
        ({"name": json.loads('"caf\\ud800"')}, "entity 'k1': a text holds a lone UTF-16 surrogate"),
        pytest.param({"total": 10**5000}, "entity 'k1': a number has more than 4300 digits", id="5001-digits"),
    ],
)
def test_content_no_destination_could_be_sent_is_refused_and_nothing_stored(
    store: TaskStore, payload: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError) as caught:
        store.add_entities(["r"], [("k0", {"fine": 1}), ("k1", payload)])
    assert str(caught.value).startswith(reason), str(caught.value)
    assert sum(store.counts().values()) == 0, "a refused batch stored part of itself"
    assert store.add_entities(["r"], [("k0", {"fine": 1})]).created == 1


def test_the_longest_key_and_odd_text_are_stored_whole(store: TaskStore) -> None:
    """What is allowed is kept exactly: a 500-character key of 4-byte characters, NUL inside a value."""
    key = "\U0001f600" * 500
    payload = {"note": "a\x00b", "emoji": "\U0001f600", "big": 10**300, "neg": -0.0}
    result = store.add_entities(["r"], keyed_records([{"id": key, **payload}], "id"))
    assert result.created == 1
    (task,) = store.claim("r", 10)
    assert task.entity_key == key
    assert task.payload == {"id": key, **payload}


# -- the webhook's records cap is checked while the body is read, not after every record is built ----


def test_a_webhook_list_over_the_records_cap_is_refused_before_the_rest_is_parsed() -> None:
    """The attack: 10 MiB of ``{}`` (3.5 million records within the byte limit) to a webhook capped at 10,000.

    Refused once record 10,001 begins: the records after it are never built (a malformed tail is not even
    seen, so the answer is the 413, not a 400), and the refusal costs a fraction of a full parse.
    """
    from scheduled_jobs.exceptions import WebhookRefusedError
    from scheduled_jobs.web.webhooks import parse_entities

    with pytest.raises(WebhookRefusedError) as caught:
        parse_entities(b"[" + b"{}," * 3 + b"not json at all", 2)
    assert (caught.value.status, caught.value.message) == (
        413,
        "too many records: more than 2 in one request ([scheduled_jobs] webhook_max_records); "
        "split them over several requests; nothing was stored",
    )
    bomb = b"[" + b",".join([b"{}"] * (10 * 1024 * 1024 // 3)) + b"]"
    started = time.process_time()
    with pytest.raises(WebhookRefusedError) as caught:
        parse_entities(bomb, 10_000)
    took = time.process_time() - started
    assert caught.value.status == 413
    assert took < 0.2, f"refusing 3.5 million records took {took:.2f} s of CPU: they were all parsed first"
    assert len(parse_entities(b' [ {} , {"id": 1} ] ', 2)) == 2, "at the cap: read whole"
    assert parse_entities(b'{"id": 1}', 1) == [{"id": 1}]
    assert parse_entities(b"[]", 1) == []


@pytest.mark.parametrize(
    "text",
    [
        '[{"id": 1},]',
        '[{"id": 1} {"id": 2}]',
        '[{"id": 1}] x',
        '[{"id": 1}',
        "[",
        '[{"a": NaN}]',
        "[" * 101 + "]" * 101,
        '[{"id": 1, "id": 2}]',
        "\ufeff[]",
        "[1, 2, 3]",
        " \r\n\t[ ] ",
    ],
)
def test_a_capped_parse_answers_every_list_as_the_plain_parse_does(text: str) -> None:
    """The capped reading of a top-level list is the same parse: same value, or the same reason."""
    try:
        expected: Any = jsondata.loads(text)
    except ValueError as exc:
        expected = str(exc)
    try:
        found: Any = jsondata.loads(text, max_items=10)
    except ValueError as exc:
        found = str(exc)
    assert found == expected
    try:
        expected = jsondata.loads(text.encode("utf-16"))
    except ValueError as exc:
        expected = str(exc)
    try:
        found = jsondata.loads(text.encode("utf-16"), max_items=10)
    except ValueError as exc:
        found = str(exc)
    assert found == expected
