"""The ingest loop's read-ahead and record mapping."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from scheduled_jobs.configurations import Mapping
from scheduled_jobs.ingesting import keyed_records, read_ahead


def test_read_ahead_keeps_order_and_raises_the_producers_error() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("page 6 is broken")

    seen = []
    with pytest.raises(ValueError, match="page 6 is broken"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    produced = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for item in read_ahead(endless(), depth=2):
        if item == 3:
            break
    threads = [t for t in threading.enumerate() if t.name == "read-ahead"]
    assert threads == []
    assert len(produced) <= 3 + 2 + 2  # never more than depth ahead (plus one in hand)


def test_mapping_filters_and_reshapes_records() -> None:
    mapping = Mapping(filter={"status": ["paid"]}, fields={"order": "id", "who": "customer.name", "gone": "nope"})
    records = [
        {"id": 1, "status": "paid", "customer": {"name": "A"}},
        {"id": 2, "status": "cancelled", "customer": {"name": "B"}},
        {"id": 3, "customer": {"name": "C"}},
    ]
    assert keyed_records(records, "id", mapping) == [("1", {"order": 1, "who": "A", "gone": None})]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"number": 1}, "record 0: a record has no entity key 'id'"),
        (
            {"id": None},
            "record 0: a record's entity key 'id' is None (a null); it must be a non-empty string or a whole number",
        ),
        (
            {"id": {"a": 1}},
            "record 0: a record's entity key 'id' is {'a': 1} (a dict); it must be a non-empty string or a whole number",
        ),
    ],
)
def test_a_record_without_a_usable_entity_key_is_an_error(record: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        keyed_records([record], "id")
    assert str(caught.value) == reason


class _Pages:
    """A subscriber of three pages that records which pages were acknowledged."""

    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    def batches(self) -> Iterator[object]:
        from scheduled_jobs.connectors.base import Batch

        for page in (1, 2, 3):
            records = [{"id": f"{page}-{i}"} for i in range(50)]
            yield Batch(f"page {page}", records, acknowledge=lambda page=page: self.acknowledged.append(page))


def test_batches_are_acknowledged_in_order_and_never_past_a_failure(tmp_path: object) -> None:
    import time

    from scheduled_jobs.ingesting import ingest
    from scheduled_jobs.store import TaskStore

    store = TaskStore.from_url(f"sqlite:///{tmp_path}/store.db")
    real = store.add_entities
    calls = {"n": 0}

    def flaky(routes: list[str], records: list[tuple[str, object]]) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.3)  # page 1 is slow to commit: page 2 must not be acknowledged first
        if calls["n"] == 2:
            raise RuntimeError("the store went away")
        return real(routes, records)

    store.add_entities = flaky  # type: ignore[method-assign]
    pages = _Pages()
    with pytest.raises(RuntimeError, match="the store went away"):
        ingest(store, pages, ["r"], "id")  # type: ignore[arg-type]
    assert pages.acknowledged == [1]  # nothing is acknowledged past the failed page 2
    again = _Pages()
    store.add_entities = real  # type: ignore[method-assign]
    summary = ingest(store, again, ["r"], "id")  # type: ignore[arg-type]
    assert again.acknowledged == [1, 2, 3]
    assert store.counts("r")["new"] == 150  # nothing stored twice
    assert summary.unchanged >= 50


def test_batches_commit_in_the_order_read_so_the_later_content_wins(tmp_path: object) -> None:
    import time

    from scheduled_jobs.connectors.base import Batch
    from scheduled_jobs.ingesting import ingest
    from scheduled_jobs.store import TaskStore

    store = TaskStore.from_url(f"sqlite:///{tmp_path}/store.db")
    real = store.add_entities
    calls = {"n": 0}

    def slow_first(routes: list[str], records: list[tuple[str, object]]) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.3)  # the first page is slow to store: the second must still come after it
        return real(routes, records)

    store.add_entities = slow_first  # type: ignore[method-assign]

    class TwoPages:
        def batches(self) -> Iterator[object]:
            yield Batch("page 1", [{"id": "A", "v": 1}, {"id": "B", "v": 1}])
            yield Batch("page 2", [{"id": "A", "v": 2}])

    ingest(store, TwoPages(), ["r"], "id")  # type: ignore[arg-type]
    assert [(t["entity_key"], t["payload"]) for t in store.list_tasks("r")] == [
        ("A", '{"id":"A","v":1}'),
        ("B", '{"id":"B","v":1}'),
        ("A", '{"id":"A","v":2}'),
    ]
    store.add_entities = real  # type: ignore[method-assign]
    assert store.add_entities(["r"], [("A", {"id": "A", "v": 2})]).created == 0  # v2 is the content kept
