"""Reliability of the export path, asserted from what a real loopback HTTP sink received.

Exporters run as separate processes against a real store (PostgreSQL, and SQLite), so claims race
for real and a process can be killed with SIGKILL at a chosen point.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers.sink import Sink

from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings
from scheduled_jobs.exporting import RetryFailed, export_route
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from pathlib import Path

ROUTE = "orders-to-erp"
LATER = dt.timedelta(hours=1)


@pytest.fixture
def pg_store(postgres_server_url: str) -> TaskStore:
    store = TaskStore.from_url(postgres_server_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity RESTART IDENTITY"))
    return store


def fill(store: TaskStore, count: int) -> set[str]:
    keys = [f"SO-{i:05d}" for i in range(count)]
    store.add_entities([ROUTE], [(key, {"id": key, "total": i}) for i, key in enumerate(keys)])
    return {f"{ROUTE}-{task['id']}" for task in store.list_tasks(ROUTE)}


def exporter(store_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "tests")])}
    return subprocess.Popen(
        [sys.executable, "-m", "helpers.exporter", store_url, ROUTE, *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def finish_all(processes: list[subprocess.Popen[str]]) -> list[str]:
    errors = []
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        if process.returncode != 0:
            errors.append(stderr[-2000:])
    return errors


def publisher(**settings: object) -> HttpPublisher:
    base = {
        "type": "http",
        "connection": "sink",
        "endpoint": "/orders/{entity_key}",
        "timeout_seconds": 1,
        "retry": {"attempts": 5, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2},
    }
    return HttpPublisher(HttpPublisherSettings.model_validate({**base, **settings}))


def url_of(store: TaskStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


@pytest.mark.postgres
def test_eight_exporters_deliver_10000_tasks_exactly_once_on_postgres(sink: Sink, pg_store: TaskStore) -> None:
    expected = fill(pg_store, 10_000)
    errors = finish_all([exporter(url_of(pg_store), "--concurrency", "2") for _ in range(8)])
    assert errors == []
    assert sink.duplicates() == {}
    assert set(sink.received) == expected
    assert pg_store.counts(ROUTE)["finished"] == 10_000


def test_four_exporters_on_sqlite_never_see_a_locked_database(sink: Sink, tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    expected = fill(store, 10_000)
    errors = finish_all([exporter(url_of(store), "--concurrency", "2") for _ in range(4)])
    assert errors == []  # an OperationalError "database is locked" would fail an exporter
    assert sink.duplicates() == {}
    assert set(sink.received) == expected
    assert store.counts(ROUTE)["finished"] == 10_000


def repair_and_export(store: TaskStore) -> None:
    store.repair(dt.timedelta(minutes=0), max_attempts=5, now=dt.datetime.now(dt.UTC).replace(tzinfo=None) + LATER)
    export_route(store, publisher(), ROUTE)


@pytest.mark.postgres
def test_killed_after_the_claim_commits_loses_nothing_and_repeats_nothing(sink: Sink, pg_store: TaskStore) -> None:
    expected = fill(pg_store, 300)
    process = exporter(url_of(pg_store), "--crash-at", "claimed")
    process.wait(timeout=60)
    assert process.returncode == -9
    assert pg_store.counts(ROUTE)["processing"] == 100  # the claimed batch, stranded
    repair_and_export(pg_store)
    assert sink.duplicates() == {}
    assert set(sink.received) == expected


@pytest.mark.postgres
def test_killed_during_a_push_loses_nothing(sink: Sink, pg_store: TaskStore) -> None:
    expected = fill(pg_store, 300)
    sink.plan = lambda number, key: "hold" if number == 30 else "ok"
    process = exporter(url_of(pg_store))
    assert sink.held.wait(60)
    process.kill()  # while the sink holds request 30
    process.wait(timeout=60)
    sink.release.set()
    sink.plan = lambda number, key: "ok"
    repair_and_export(pg_store)
    assert set(sink.received) == expected
    # Only the batch that was in flight is delivered again, each repeat under its first idempotency key.
    assert set(sink.duplicates()) <= {f"{ROUTE}-{i}" for i in range(1, 31)}
    assert pg_store.counts(ROUTE)["finished"] == 300


@pytest.mark.postgres
def test_killed_after_pushing_before_settling_repeats_with_the_same_key(sink: Sink, pg_store: TaskStore) -> None:
    expected = fill(pg_store, 300)
    process = exporter(url_of(pg_store), "--crash-at", "pushed", "--after", "40")
    process.wait(timeout=60)
    assert process.returncode == -9
    repair_and_export(pg_store)
    assert set(sink.received) == expected
    repeated = sink.duplicates()
    assert set(repeated) == {f"{ROUTE}-{i}" for i in range(1, 41)}  # pushed, never settled
    assert set(repeated.values()) == {2}
    # A destination that drops repeats by idempotency key ends with each order once.
    assert len(set(sink.received)) == 300


@pytest.mark.postgres
def test_a_late_finish_after_repair_changes_nothing(sink: Sink, pg_store: TaskStore) -> None:
    fill(pg_store, 1)
    (slow,) = pg_store.claim(ROUTE, 1)
    pg_store.repair(dt.timedelta(minutes=0), max_attempts=5, now=dt.datetime.now(dt.UTC).replace(tzinfo=None) + LATER)
    result = export_route(pg_store, publisher(), ROUTE)  # a second exporter delivers it
    assert result.exported == 1
    assert pg_store.finish(slow) is False
    assert pg_store.fail(slow, "late failure") is False
    assert pg_store.settle(slow.claim_token, [slow.id], []) == 0
    task = pg_store.list_tasks(ROUTE)[0]
    assert (task["status"], task["last_error"], task["attempts"]) == ("finished", None, 2)


def terminate_on(store: TaskStore, marker: str, occurrence: int) -> None:
    """Terminate the store connection that runs the ``occurrence``-th statement containing ``marker``,
    right before that statement: the connection is lost in the middle of that transaction."""
    seen = {"n": 0}
    admin = sa.create_engine(store.engine.url, isolation_level="AUTOCOMMIT")

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _kill(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if marker in statement:
            seen["n"] += 1
            if seen["n"] == occurrence:
                pid = conn.connection.dbapi_connection.get_backend_pid()  # type: ignore[union-attr]
                with admin.connect() as other:
                    other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("moment", "marker"), [("claim", "FOR NO KEY UPDATE"), ("settle", "last_error=%(last_error)s")]
)
def test_a_lost_database_connection_fails_loudly_and_loses_nothing(
    sink: Sink, pg_store: TaskStore, moment: str, marker: str
) -> None:
    expected = fill(pg_store, 250)
    store = TaskStore.from_url(url_of(pg_store))
    terminate_on(store, marker, occurrence=2)  # the second claim or settle: one batch is done by then
    with pytest.raises(sa.exc.OperationalError, match=r"terminat|closed|connection"):
        export_route(store, publisher(), ROUTE)
    export_route(pg_store, publisher(), ROUTE)  # a rerun
    repair_and_export(pg_store)  # and a repair of what the failed run left processing
    assert set(sink.received) == expected
    assert pg_store.counts(ROUTE)["finished"] == 250
    repeated = set(sink.duplicates())
    if moment == "claim":
        assert repeated == set()
    else:  # the batch pushed but never settled is delivered again, same keys
        assert repeated == {f"{ROUTE}-{i}" for i in range(101, 201)}


@pytest.mark.postgres
def test_a_faulty_sink_loses_nothing_and_statuses_match_what_it_saw(sink: Sink, pg_store: TaskStore) -> None:
    expected = fill(pg_store, 400)
    faults = {0: "500", 1: "429", 2: "timeout", 3: "reset"}
    sink.timeout_sleep = 1.5
    # Every fifth request fails transiently the first time a key is seen; key 399 always gets 400.
    sink.plan = lambda number, key: (
        "400" if key.endswith("-399") else faults.get(number % 10, "ok") if sink.attempts[key] == 1 else "ok"
    )
    result = export_route(pg_store, publisher(timeout_seconds=0.5), ROUTE, concurrency=4)
    assert sink.duplicates() == {}
    tasks = {f"{ROUTE}-{t['id']}": t for t in pg_store.list_tasks(ROUTE)}
    finished = {key for key, t in tasks.items() if t["status"] == "finished"}
    failed = {key for key, t in tasks.items() if t["status"] == "failed"}
    assert finished == set(sink.received)
    assert failed == {f"{ROUTE}-399"}  # the permanent refusal; every transient fault was retried away
    assert finished | failed == expected
    assert (result.exported, result.failed) == (len(finished), len(failed))
    assert all(gap >= 0.95 for gap in sink.retry_after_gaps) and sink.retry_after_gaps  # Retry-After: 1 honoured
    refused = tasks[f"{ROUTE}-399"]
    assert refused["last_error"].startswith("HTTP 400 from POST http://127.0.0.1:")
    assert refused["last_error"].endswith('/orders/SO-00398: {"error": "nope"}')
    assert refused["retryable"] is False
    assert sink.attempts[f"{ROUTE}-399"] == 1  # a permanent refusal is not retried within the run
    assert sum(sink.attempts.values()) > 400  # the transient faults did happen, and were retried


def test_retrying_failed_tasks_on_later_runs(sink: Sink, tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    fill(store, 3)
    sink.plan = lambda number, key: "500"
    first = export_route(store, publisher(retry={"attempts": 1}), ROUTE, retry_failed=RetryFailed(3, 0))
    assert (first.exported, first.failed) == (0, 3)
    sink.plan = lambda number, key: "ok"
    later = export_route(store, publisher(), ROUTE, retry_failed=RetryFailed(3, 0))
    assert (later.requeued, later.exported) == (3, 3)
    assert len(set(sink.received)) == 3


def test_a_slow_export_renews_its_claims_so_repair_leaves_them_alone(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from scheduled_jobs import exporting

    monkeypatch.setattr(exporting, "LEASE_REFRESH_SECONDS", 0.2)
    monkeypatch.setattr(exporting, "CLAIM_BATCH", 5)
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    expected = fill(store, 15)
    sink.timeout_sleep = 0.3
    sink.plan = lambda number, key: "slow"
    repaired: list[int] = []
    stop = threading.Event()

    def repair_loop() -> None:  # an eager repair job: anything claimed for 2 s counts as stuck
        while not stop.is_set():
            repaired.extend(store.repair(dt.timedelta(seconds=2), max_attempts=5).reset)
            time.sleep(0.05)

    repairer = threading.Thread(target=repair_loop)
    repairer.start()
    try:
        result = export_route(store, publisher(timeout_seconds=2), ROUTE)
    finally:
        stop.set()
        repairer.join()
    # Each batch takes 1.5 s while the next one waits, claimed: 3 s without renewal.
    assert repaired == []
    assert result.exported == 15
    assert sink.duplicates() == {}
    assert set(sink.received) == expected


def test_a_live_export_is_never_repaired_while_one_delivery_outlasts_the_stuck_threshold(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One publish (concurrency 1) takes longer than the stuck threshold but stays within its deadline:
    its claim is renewed while it is in flight, so neither repair nor a second exporter beside it takes
    the task, and the destination gets each record once."""
    import threading

    from scheduled_jobs import exporting

    monkeypatch.setattr(exporting, "LEASE_REFRESH_SECONDS", 0.1)
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    expected = fill(store, 3)
    sink.timeout_sleep = 1.5  # each delivery: 1.5 s, the stuck threshold 0.6 s, the deadline 3 s
    sink.plan = lambda number, key: "slow"
    repaired: list[int] = []
    stop = threading.Event()

    def repair_loop() -> None:
        while not stop.is_set():
            repaired.extend(store.repair(dt.timedelta(seconds=0.6), max_attempts=5).reset)
            time.sleep(0.05)

    def second_exporter() -> None:  # takes whatever repair hands back, as a second export run would
        while not sink.attempts and not stop.is_set():  # once the first export holds the claims
            time.sleep(0.01)
        while not stop.is_set():
            export_route(store, publisher(timeout_seconds=3), ROUTE)
            time.sleep(0.05)

    helpers = [threading.Thread(target=repair_loop), threading.Thread(target=second_exporter)]
    for thread in helpers:
        thread.start()
    try:
        result = export_route(store, publisher(timeout_seconds=3), ROUTE)
    finally:
        stop.set()
        for thread in helpers:
            thread.join()
    assert repaired == []
    assert sink.duplicates() == {}
    assert result.exported == 3
    assert sorted(sink.received) == sorted(expected)
