"""The ingest loop's read-ahead and record mapping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from scheduled_jobs.ingesting import keyed_records, read_ahead
from scheduled_jobs.models.configurations import Mapping

if TYPE_CHECKING:
    from scheduled_jobs.store import TaskStore


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


class _Fake:
    """What the ingest loop asks of every subscriber besides its batches: no secrets to redact here."""

    def redact(self, text: str) -> str:
        return text


class _Pages(_Fake):
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

    def flaky(routes: list[str], records: list[tuple[str, object]], **options: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.3)  # page 1 is slow to commit: page 2 must not be acknowledged first
        if calls["n"] == 2:
            raise RuntimeError("the store went away")
        return real(routes, records, **options)  # type: ignore[arg-type]

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

    def slow_first(routes: list[str], records: list[tuple[str, object]], **options: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.3)  # the first page is slow to store: the second must still come after it
        return real(routes, records, **options)  # type: ignore[arg-type]

    store.add_entities = slow_first  # type: ignore[method-assign]

    class TwoPages(_Fake):
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


# -- one poison batch rejects itself, not the run ------------------------------------------------------


def _store(dialect: str, request: pytest.FixtureRequest, tmp_path: object) -> TaskStore:
    import sqlalchemy as sa

    from scheduled_jobs.store import TaskStore

    if dialect == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path}/store.db")
    store = TaskStore.from_url(request.getfixturevalue("postgres_server_url"))
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_watermark"))
    return store


class _ThreeSources(_Fake):
    """Three sources (files, pages), the middle one poison; which were acknowledged or rejected, and why."""

    def __init__(self, poison: dict[str, object]) -> None:
        self.poison = poison
        self.acknowledged: list[int] = []
        self.rejected: list[tuple[int, str]] = []

    def batches(self) -> Iterator[object]:
        from scheduled_jobs.connectors.base import Batch

        for n in (1, 2, 3):
            records = [self.poison] if n == 2 else [{"id": f"good-{n}", "note": NOTE}]
            yield Batch(
                f"source {n}",
                records,
                acknowledge=lambda n=n: self.acknowledged.append(n),
                reject=lambda reason, n=n: self.rejected.append((n, reason)),
            )


NOTE = "secret payload"
POISON = {
    "a number of 5,000 digits": {"id": "big", "n": 10**5000, "note": NOTE},
    "a lone surrogate": {"id": "odd", "text": "\ud800", "note": NOTE},
    # Refused at the edge by the entity-key rule (PostgreSQL's column would refuse them too).
    "a key over 500 characters": {"id": "x" * 600, "note": NOTE},
    "a key holding NUL": {"id": "a\x00b", "note": NOTE},
}
POSTGRES = pytest.mark.postgres


@pytest.mark.parametrize(
    ("dialect", "case"),
    [("sqlite", case) for case in POISON] + [pytest.param("postgresql", case, marks=POSTGRES) for case in POISON],
)
def test_a_batch_the_store_refuses_is_rejected_and_the_run_goes_on(
    dialect: str, case: str, request: pytest.FixtureRequest, tmp_path: object
) -> None:
    from scheduled_jobs.ingesting import ingest

    store = _store(dialect, request, tmp_path)
    sources = _ThreeSources(POISON[case])
    summary = ingest(store, sources, ["r"], "id")  # type: ignore[arg-type]
    assert sources.acknowledged == [1, 3]
    assert [n for n, _ in sources.rejected] == [2]
    assert summary.rejected == [{"source": "source 2", "reason": sources.rejected[0][1]}]
    reason = sources.rejected[0][1]
    # It names the problem, shortly, without the statement, its parameters or the record's data.
    assert reason and len(reason) < 200
    for leak in ("INSERT", NOTE, "x" * 60, "00000000", "[SQL", "parameters"):  # a key's start may name it
        assert leak not in reason
    assert [t["entity_key"] for t in store.list_tasks("r")] == ["good-1", "good-3"]
    assert summary.sources == 2


def test_a_store_that_fails_still_fails_the_run_and_rejects_nothing(tmp_path: object) -> None:
    # A broken store is not the data's fault: nothing is rejected (a file would go to rejected/ for good),
    # nothing acknowledged; the run fails and the next one reads everything again.
    import sqlalchemy as sa

    from scheduled_jobs.ingesting import ingest
    from scheduled_jobs.store import TaskStore

    store = TaskStore.from_url(f"sqlite:///{tmp_path}/store.db")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE scheduled_jobs_entity"))
    sources = _ThreeSources({"id": "fine"})
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        ingest(store, sources, ["r"], "id")  # type: ignore[arg-type]
    assert (sources.acknowledged, sources.rejected) == ([], [])


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=POSTGRES)])
def test_a_record_the_store_refuses_rejects_only_itself_where_its_batch_allows_it(
    dialect: str, request: pytest.FixtureRequest, tmp_path: object
) -> None:
    # Rows of a query are sources of their own (Batch.reject_record): the store refuses the batch, so its
    # records are stored one by one, in the writer, before the next batch.
    from scheduled_jobs.connectors.base import Batch
    from scheduled_jobs.ingesting import ingest

    store = _store(dialect, request, tmp_path)
    rejected: list[tuple[int, str]] = []

    def reject_record(index: int, reason: str) -> str:
        rejected.append((index, reason))
        return f"row {index}"

    class Rows(_Fake):
        def batches(self) -> Iterator[object]:
            records = [{"id": "A", "v": 1}, POISON["a number of 5,000 digits"], {"id": "B", "v": 1}]
            yield Batch("rows 1-3", records, reject_record=reject_record)
            yield Batch("rows 4-4", [{"id": "A", "v": 2}], reject_record=reject_record)

    summary = ingest(store, Rows(), ["r"], "id")  # type: ignore[arg-type]
    assert [index for index, _ in rejected] == [1]
    assert summary.rejected == [{"source": "row 1", "reason": rejected[0][1]}]
    assert rejected[0][1].startswith("the task store refused it: ")
    assert [(t["entity_key"], t["payload"]) for t in store.list_tasks("r")] == [
        ("A", '{"id":"A","v":1}'),
        ("B", '{"id":"B","v":1}'),
        ("A", '{"id":"A","v":2}'),  # still after the refused batch's good records: the later content wins
    ]
    assert (summary.sources, summary.entities, summary.tasks_created) == (2, 3, 3)
