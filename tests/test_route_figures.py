"""The Tasks overview's figures per route: exact counts of what needs attention on every call; the finished
tasks (nearly all of a large store) counted again at once when that is cheap, else in the background.

On SQLite and on the PostgreSQL server (a database of the session, emptied per test).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from scheduled_jobs.store import TaskStore, route_figures, utcnow
from scheduled_jobs.store.reports import FinishedCounts

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TaskStore:
    if request.param == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store = TaskStore.from_url(request.getfixturevalue("postgres_server_url"))
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    return store


def _counts(store: TaskStore) -> dict[str, dict[str, int]]:
    return {route: f.counts for route, f in route_figures(store.engine, utcnow() - dt.timedelta(hours=1)).items()}


def _export(store: TaskStore, route: str, finish: int, fail: int = 0) -> None:
    claimed = store.claim(route, finish + fail)
    token = claimed[0].claim_token
    failures = [(t.id, "boom", True) for t in claimed[finish:]]
    assert store.settle(token, [t.id for t in claimed[:finish]], failures) == finish + fail


def test_every_count_is_exact_at_once_in_a_small_store(store: TaskStore) -> None:
    store.add_entities(["a", "b"], [(f"k{i}", {"n": i}) for i in range(10)])
    _export(store, "a", finish=4, fail=2)
    assert _counts(store)["a"] == {"new": 4, "processing": 0, "finished": 4, "failed": 2, "skipped": 0}
    _export(store, "a", finish=3)
    _export(store, "b", finish=10)
    counts = _counts(store)
    assert counts["a"] == {"new": 1, "processing": 0, "finished": 7, "failed": 2, "skipped": 0}
    assert counts["b"] == {"new": 0, "processing": 0, "finished": 10, "failed": 0, "skipped": 0}  # only finished


def test_oldest_new_and_stuck_per_route(store: TaskStore) -> None:
    store.add_entities(["a"], [(f"k{i}", {"n": i}) for i in range(3)])
    old = utcnow() - dt.timedelta(days=2)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE scheduled_jobs_task SET created_at = :at WHERE id = 2"), {"at": old})
    store.claim("a", 1)  # task 1, claimed now: processing, not stuck
    figures = route_figures(store.engine, utcnow() - dt.timedelta(minutes=30))["a"]
    assert figures.oldest_new_at == old
    assert (figures.counts["processing"], figures.stuck) == (1, 0)
    assert route_figures(store.engine, utcnow() + dt.timedelta(minutes=1))["a"].stuck == 1


def test_a_dear_finished_count_is_served_from_the_last_one_and_counted_again_in_the_background(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FinishedCounts, "CHEAP_SECONDS", 0.0)  # every count is "dear": a large store
    monkeypatch.setattr(FinishedCounts, "REFRESH_SECONDS", 3600.0)
    store.add_entities(["a"], [(f"k{i}", {"n": i}) for i in range(10)])
    _export(store, "a", finish=2)
    first = route_figures(store.engine, utcnow())["a"]
    assert first.counts["finished"] == 2
    _export(store, "a", finish=3, fail=1)
    again = route_figures(store.engine, utcnow())["a"]
    # What needs attention is counted now; the finished tasks as they were counted, and when.
    assert again.counts == {"new": 4, "processing": 0, "finished": 2, "failed": 1, "skipped": 0}
    assert again.finished_counted_at == first.finished_counted_at
    monkeypatch.setattr(FinishedCounts, "REFRESH_SECONDS", 0.0)
    stale = route_figures(store.engine, utcnow())["a"]  # starts the recount, does not wait for it
    assert stale.counts["finished"] == 2
    deadline = time.monotonic() + 10
    while route_figures(store.engine, utcnow())["a"].counts["finished"] != 5:
        assert time.monotonic() < deadline, "the background recount never arrived"
        time.sleep(0.05)
    assert route_figures(store.engine, utcnow())["a"].finished_counted_at > first.finished_counted_at  # type: ignore[operator]


@pytest.mark.postgres
def test_the_unfinished_counts_are_read_through_the_partial_index(postgres_server_url: str) -> None:
    """The overview's counts never read the finished tasks: the plan uses the partial index."""
    engine = TaskStore.from_url(postgres_server_url).engine
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        for query in (
            "SELECT route, status, count(*) FROM scheduled_jobs_task WHERE status <> 'finished' GROUP BY route, status",
        ):
            plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}")).scalars())
            assert "ix_scheduled_jobs_task_unfinished" in plan, plan
