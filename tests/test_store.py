"""The task store on SQLite and on the PostgreSQL server: ingest, claim, finish, fail, repair."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.schema import VERSION_TABLE

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TaskStore:
    if request.param == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    url = request.getfixturevalue("postgres_server_url")
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:  # each test starts from an empty queue
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    return store


def test_schema_is_created_by_alembic(store: TaskStore) -> None:
    with store.engine.connect() as conn:
        version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    assert version == "0005"


def test_same_input_twice_makes_no_duplicate_tasks(store: TaskStore) -> None:
    records = [("A", {"id": "A", "n": 1}), ("B", {"id": "B", "n": 2})]
    first = store.add_entities(["r1", "r2"], records)
    again = store.add_entities(["r1", "r2"], records)
    assert (first.created, first.unchanged) == (4, 0)
    assert (again.created, again.unchanged) == (0, 4)
    assert store.counts("r1")["new"] == 2


def test_changed_content_makes_a_new_task(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"id": "A", "n": 1})])
    changed = store.add_entities(["r"], [("A", {"id": "A", "n": 2}), ("A", {"id": "A", "n": 2})])
    assert (changed.created, changed.unchanged) == (1, 1)
    assert [t["payload"] for t in store.list_tasks("r")] == ['{"id":"A","n":1}', '{"id":"A","n":2}']


def test_within_one_batch_the_last_record_of_an_entity_stands_for_it(store: TaskStore) -> None:
    result = store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 1}), ("A", {"n": 2})])
    assert (result.created, result.unchanged) == (2, 1)
    assert [(t["entity_key"], t["payload"]) for t in store.list_tasks("r")] == [("A", '{"n":2}'), ("B", '{"n":1}')]


def test_tasks_follow_the_source_order_on_each_route_in_the_routes_order(store: TaskStore) -> None:
    """Ids ("oldest first") follow the source, route by route; the ids returned are those tasks'."""
    keys = ["k3", "k10", "k1", "k2", "a"]  # neither sorted nor in the database's collation order
    store.add_entities(["b", "a"], [("k1", {"v": 0})])  # k1 unchanged below: it makes no task
    result = store.add_entities(["b", "a"], [(key, {"v": 1 if key != "k1" else 0}) for key in keys], return_ids=True)
    made = [(t["id"], t["route"], t["entity_key"]) for t in store.list_tasks() if t["id"] in set(result.task_ids)]
    expected = [(route, key) for route in ["b", "a"] for key in keys if key != "k1"]
    assert [(route, key) for _, route, key in sorted(made)] == expected
    assert result.task_ids == sorted(result.task_ids) and len(result.task_ids) == 8
    assert (result.created, result.unchanged) == (8, 2)


def test_a_batch_of_new_changed_and_unchanged_entities_on_two_routes(store: TaskStore) -> None:
    store.add_entities(["r1"], [("A", {"n": 1}), ("B", {"n": 1})])
    store.add_entities(["r2"], [("A", {"n": 2})])
    result = store.add_entities(["r1", "r2"], [("A", {"n": 2}), ("B", {"n": 1}), ("C", {"n": 1}), ("B", {"n": 1})])
    # r1: A changed, B unchanged, C new; r2: A unchanged, B and C new; and the repeated B once per route.
    assert (result.created, result.unchanged) == (4, 4)
    assert [(t["route"], t["entity_key"]) for t in store.list_tasks()][3:] == [
        ("r1", "A"),
        ("r1", "C"),
        ("r2", "B"),
        ("r2", "C"),
    ]
    created_by = store.add_entities(["r1"], [("D", {"n": 1})], created_by=None)
    assert created_by.created == 1


def test_a_batch_too_big_for_one_statement_is_written_in_pieces_with_the_same_outcome(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole inbox file is one batch; PostgreSQL refuses a statement over 1 GiB, so a big batch is
    written in pieces (here: 60 characters of payload per statement), in one transaction, with the same
    counts, order and ids as one statement."""
    from scheduled_jobs.store import ingest

    monkeypatch.setattr(ingest, "BYTES_PER_STATEMENT", 60)
    test_tasks_follow_the_source_order_on_each_route_in_the_routes_order(store)
    assert len(store.list_tasks()) == 2 + 8
    with store.engine.begin() as conn:  # the next scenario starts from an empty store
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
        conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))
    test_a_batch_of_new_changed_and_unchanged_entities_on_two_routes(store)


def test_concurrent_ingests_of_the_same_entities_in_opposite_orders_never_deadlock(store: TaskStore) -> None:
    """Two writers share 2,000 entities, one reading them forwards, one backwards, on two routes: each
    locks them in the same (route, key) order, so neither waits for the other in a cycle (PostgreSQL would
    abort one as a deadlock). Whatever the interleaving, an entity's tasks on a route never repeat the
    content just before (no task for unchanged content), and its newest task holds the content recorded."""
    import threading

    from scheduled_jobs.store.schema import entities

    keys = [f"E{i:05d}" for i in range(2000)]
    errors: list[BaseException] = []

    def write(order: list[str], writer: str) -> None:
        try:
            for round_ in range(5):
                store.add_entities(["r1", "r2"], [(key, {"writer": writer, "round": round_}) for key in order])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=args) for args in ((keys, "f"), (keys[::-1], "b"))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    assert not errors, errors
    history: dict[tuple[str, str], list[str]] = {}
    for task in store.list_tasks():  # in id order
        history.setdefault((task["route"], task["entity_key"]), []).append(task["content_hash"])
    assert set(history) == {(route, key) for route in ("r1", "r2") for key in keys}
    assert all(a != b for hashes in history.values() for a, b in itertools.pairwise(hashes))
    with store.engine.connect() as conn:
        recorded = {(row.route, row.entity_key): row.content_hash for row in conn.execute(sa.select(entities))}
    assert {slot: hashes[-1] for slot, hashes in history.items()} == recorded
    # Every write is a change (no two writes carry the same writer and round): ten tasks per entity and route.
    assert {len(hashes) for hashes in history.values()} == {10}


def test_claim_takes_the_oldest_new_tasks_up_to_the_limit(store: TaskStore) -> None:
    store.add_entities(["r"], [(str(i), {"i": i}) for i in range(5)])
    claimed = store.claim("r", 3)
    assert [t.entity_key for t in claimed] == ["0", "1", "2"]
    assert all(t.attempts == 1 for t in claimed)
    assert store.counts("r") == {"new": 2, "processing": 3, "finished": 0, "failed": 0, "skipped": 0}
    assert [t.entity_key for t in store.claim("r", 10)] == ["3", "4"]
    assert store.claim("r", 10) == []


def test_claim_stops_at_the_newest_task_seen_at_the_start(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {}), ("b", {"x": 1})])
    up_to = store.newest_new_id("r")
    store.add_entities(["r"], [("c", {})])
    assert [t.entity_key for t in store.claim("r", 10, up_to_id=up_to)] == ["a", "b"]


def test_finish_and_fail_only_count_while_the_claim_holds(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {}), ("b", {"x": 1})])
    first, second = store.claim("r", 2)
    assert store.finish(first) is True
    assert store.finish(first) is False  # already finished
    assert store.fail(second, "HTTP 500") is True
    rows = {t["entity_key"]: t for t in store.list_tasks("r")}
    assert rows["a"]["status"] == "finished"
    assert (rows["b"]["status"], rows["b"]["last_error"]) == ("failed", "HTTP 500")


def test_repair_resets_stuck_tasks_then_fails_them_after_max_attempts(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {})])
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
    stale = store.claim("r", 1)[0]
    assert store.repair(dt.timedelta(minutes=30), max_attempts=2, now=later).reset == [stale.id]
    assert store.finish(stale) is False  # the first exporter's late finish changes nothing
    store.claim("r", 1)
    result = store.repair(dt.timedelta(minutes=30), max_attempts=2, now=later)
    assert (result.reset, result.failed) == ([], [stale.id])
    task = store.list_tasks("r")[0]
    assert (task["status"], task["attempts"]) == ("failed", 2)
    assert task["last_error"] == "stuck in processing for more than 30 minutes after 2 attempts"


def test_repair_leaves_tasks_that_are_not_stuck_yet(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {})])
    store.claim("r", 1)
    assert store.repair(dt.timedelta(minutes=30), max_attempts=3).reset == []
    assert store.counts("r")["processing"] == 1


def test_settle_is_fenced_by_the_claim_token(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {}), ("b", {"x": 1}), ("c", {"x": 2})])
    claim = store.claim("r", 3)
    token = claim[0].claim_token
    assert store.settle("another-token", [claim[0].id], []) == 0
    assert store.settle(token, [claim[0].id], [(claim[1].id, "HTTP 503", True), (claim[2].id, "HTTP 400", False)]) == 3
    rows = {t["entity_key"]: (t["status"], t["retryable"], t["last_error"]) for t in store.list_tasks("r")}
    assert rows == {
        "a": ("finished", False, None),
        "b": ("failed", True, "HTTP 503"),
        "c": ("failed", False, "HTTP 400"),
    }


def test_requeue_failed_only_retryable_with_attempts_left(store: TaskStore) -> None:
    store.add_entities(["r"], [("a", {}), ("b", {"x": 1})])
    first, second = store.claim("r", 2)
    store.settle(first.claim_token, [], [(first.id, "HTTP 503", True), (second.id, "HTTP 400", False)])
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert store.requeue_failed("r", max_attempts=3, failed_before=now - dt.timedelta(minutes=5)) == 0  # too soon
    assert store.requeue_failed("r", max_attempts=3, failed_before=now + dt.timedelta(seconds=1)) == 1
    assert [t.entity_key for t in store.claim("r", 5)] == ["a"]
    assert store.requeue_failed("r", max_attempts=2, failed_before=now + dt.timedelta(minutes=1)) == 0


def test_watermarks_keep_their_type(store: TaskStore) -> None:
    import decimal

    assert store.load_watermark("src") is None
    moment = dt.datetime(2026, 3, 29, 1, 30, 15, 250000)
    store.save_watermark("src", moment)
    assert store.load_watermark("src") == moment
    store.save_watermark("src", decimal.Decimal("10.50"))
    assert store.load_watermark("src") == decimal.Decimal("10.50")
    store.save_watermark("src", 42)
    assert store.load_watermark("src") == 42


def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    TaskStore.from_url(url).add_entities(["r"], [("a", {})])
    assert TaskStore.from_url(url).counts("r")["new"] == 1
