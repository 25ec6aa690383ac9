"""``job: prune_tasks``: its keys and their ``path: key: reason`` messages, its DAG, and real runs that prune
old finished and skipped tasks (and their events) on SQLite and PostgreSQL, keeping each entity's newest task."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers.airflow_compat import DagBag, dag_test

from scheduled_jobs.catalog import housekeeping_warnings, load_catalog
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.store import utcnow
from scheduled_jobs.store.schema import tasks

if TYPE_CHECKING:
    from pathlib import Path

    from scheduled_jobs.store import TaskStore

VALID = "name: Prune\njob: prune_tasks\nexpression: '0 3 * * *'\nretention_days: 30\n"
ROUTE = "orders-to-erp"


def problems_for(project: Path, text: str) -> list[str]:
    path = project / "job_definitions" / "prune.yaml"
    path.write_text(text, encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    return [str(p).removeprefix(f"{path}: ") for p in catalog.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("retention_days: 30\n", ""), ["retention_days: is required with job: prune_tasks"]),
        (VALID.replace("30", "0"), ["retention_days: must be greater than 0, got 0"]),
        (VALID.replace("30", "-1"), ["retention_days: must be greater than 0, got -1"]),
        (VALID.replace("30", "'30'"), ["retention_days: must be a whole number, got '30'"]),
        (VALID.replace("30", "true"), ["retention_days: must be a whole number, got True"]),
        (VALID.replace("30", "36501"), ["retention_days: must be at most 36500, got 36501"]),
        (VALID + "batch_size: 0\n", ["batch_size: must be greater than 0, got 0"]),
        (VALID + "batch_size: 10001\n", ["batch_size: must be at most 10000, got 10001"]),
        (
            VALID + "stuck_after_minutes: 5\n",
            ["stuck_after_minutes: only allowed with job: repair_stuck_tasks (this job is prune_tasks)"],
        ),
        (VALID + "overlap: skip\n", ["overlap: only allowed with job: incoming or outgoing (this job is prune_tasks)"]),
        (
            "name: Repair\njob: repair_stuck_tasks\nexpression: '@daily'\nretention_days: 3\n",
            ["retention_days: only allowed with job: prune_tasks (this job is repair_stuck_tasks)"],
        ),
        (VALID + "retention: 30\n", ["retention: unknown key; did you mean 'retention_days'?"]),
    ],
)
def test_a_prune_definition_names_each_mistake(project: Path, text: str, expected: list[str]) -> None:
    assert problems_for(project, text) == expected


def test_a_valid_prune_definition_and_its_defaults(project: Path) -> None:
    assert problems_for(project, VALID) == []
    job = load_catalog(project / "job_definitions", project / "configurations").jobs["prune"]
    assert (job.definition.retention_days, job.definition.batch_size, job.guard) == (30, 1000, None)


def test_the_example_prune_job_builds_an_unguarded_dag(project: Path) -> None:
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag = bag.get_dag("prune-tasks")
    assert dag is not None, bag.import_errors
    assert [t.task_id for t in dag.tasks] == ["prune_tasks"], "no configuration, no guard"
    (task,) = dag.tasks
    assert (type(task).__name__, task.retention_days, task.batch_size, task.configuration) == (
        "PruneTasksOperator",
        30,
        1000,
        None,
    )
    assert dag.tags == {"scheduled-job", "prune_tasks"}
    assert dag.timetable.expression == "30 3 * * *"
    assert "older than 30 days are deleted (1000 per transaction)" in dag.doc_md


def test_validate_warns_when_no_prune_job_is_enabled(project: Path) -> None:
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert housekeeping_warnings(catalog) == []
    prune = project / "job_definitions" / "prune-tasks.yaml"
    prune.write_text(prune.read_text() + "disabled: true\n", encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert housekeeping_warnings(catalog) == [
        "every prune_tasks job is disabled (prune-tasks): the task store keeps growing"
    ]
    prune.unlink()
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    (warning,) = housekeeping_warnings(catalog)
    assert warning.startswith("no prune_tasks job: finished and skipped tasks are kept forever")


# -- real runs ---------------------------------------------------------------------------------------------


def _task(store: TaskStore, key: str, version: int, status: str, days_ago: float, events: int = 0) -> int:
    """A task of ``key`` (a new content each version) in ``status``, last updated ``days_ago``."""
    store.add_entities([ROUTE], [(key, {"id": key, "version": version})])
    at = utcnow() - dt.timedelta(days=days_ago)
    with store.engine.begin() as conn:
        task_id = conn.execute(
            sa.text("SELECT max(id) FROM scheduled_jobs_task WHERE entity_key = :k"), {"k": key}
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE scheduled_jobs_task SET status = :s, updated_at = :at, created_at = :at WHERE id = :i"),
            {"s": status, "at": at, "i": task_id},
        )
        for n in range(events):
            conn.execute(
                sa.text("INSERT INTO scheduled_jobs_task_event (task_id, at, kind, detail) VALUES (:t, :at, :k, :d)"),
                {"t": task_id, "at": at, "k": "exported", "d": json.dumps({"attempt": n + 1})},
            )
    return int(task_id)


def _ids(store: TaskStore) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM scheduled_jobs_task")).scalars())


def _event_task_ids(store: TaskStore) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT task_id FROM scheduled_jobs_task_event")).scalars())


def _run_prune(project: Path, retention_days: int, batch_size: int) -> tuple[Any, str]:
    (project / "job_definitions" / "prune-tasks.yaml").write_text(
        f"name: Prune tasks\njob: prune_tasks\nexpression: '@daily'\nretention_days: {retention_days}\n"
        f"batch_size: {batch_size}\n",
        encoding="utf-8",
    )
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("prune-tasks")
    run = dag_test(dag)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}["prune_tasks"]


def test_prune_deletes_old_finished_and_skipped_tasks_and_their_events_keeping_each_entitys_newest(
    any_store: TaskStore, project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = any_store
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task_event"))
    a1 = _task(store, "A", 1, "finished", 90, events=2)
    a2 = _task(store, "A", 2, "skipped", 80, events=1)
    a3 = _task(store, "A", 3, "finished", 70, events=1)  # A's newest: kept, however old
    b1 = _task(store, "B", 1, "finished", 60)
    b2 = _task(store, "B", 2, "failed", 50, events=3)  # failed: never pruned
    c1 = _task(store, "C", 1, "finished", 40, events=1)
    c2 = _task(store, "C", 2, "finished", 5)  # young: kept
    c3 = _task(store, "C", 3, "new", 1)
    d1 = _task(store, "D", 1, "finished", 2)  # young and old-fashioned: kept
    d2 = _task(store, "D", 2, "processing", 100)  # processing is never pruned (an exporter holds it)
    e1 = _task(store, "E", 1, "skipped", 45)
    e2 = _task(store, "E", 2, "new", 0)
    capfd.readouterr()

    run, state = _run_prune(project, retention_days=30, batch_size=2)
    assert (run.state, state) == ("success", "success")
    deleted = {a1, a2, b1, c1, e1}
    assert _ids(store) == {a3, b2, c2, c3, d1, d2, e2}
    assert _event_task_ids(store) == {a3, b2}, "the events of deleted tasks went with them"
    log = capfd.readouterr()
    assert "5 tasks and 4 events deleted in 3 batches of at most 2" in log.out + log.err
    with store.engine.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT entity_key FROM scheduled_jobs_entity")).scalars())
    assert keys == {"A", "B", "C", "D", "E"}, "the entity-key rule's memory is never pruned"
    assert not deleted & _ids(store)

    again, _ = _run_prune(project, retention_days=30, batch_size=1000)
    assert again.state == "success"
    assert _ids(store) == {a3, b2, c2, c3, d1, d2, e2}
    log = capfd.readouterr()
    assert "0 tasks and 0 events deleted in 0 batches" in log.out + log.err


def test_a_pruned_entity_with_unchanged_content_still_makes_no_new_task(any_store: TaskStore, project: Path) -> None:
    """The entity-key rule outlives prune: re-importing the last content of a pruned entity is "unchanged"."""
    store = any_store
    _task(store, "A", 1, "finished", 90)
    newest = _task(store, "A", 2, "finished", 80)
    run, _ = _run_prune(project, retention_days=30, batch_size=10)
    assert run.state == "success"
    assert _ids(store) == {newest}
    result = store.add_entities([ROUTE], [("A", {"id": "A", "version": 2})])
    assert result.created == 0
    assert _ids(store) == {newest}


# -- prune beside a concurrent writer (issue 22, item 4) -------------------------------------------------------


def _entity_store(url: str) -> TaskStore:
    from scheduled_jobs.store import TaskStore

    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY"
                )
            )
    return store


def _tasks_of(store: TaskStore, key: str) -> list[int]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT id FROM scheduled_jobs_task WHERE entity_key = :k ORDER BY id"), {"k": key}
            ).scalars()
        )


def _prune_in_thread(store: TaskStore, outcome: list[Any], batch_size: int = 100) -> Any:
    import threading

    from scheduled_jobs.store import prune_tasks

    def run() -> None:
        try:
            outcome.append(prune_tasks(store.engine, utcnow() - dt.timedelta(days=7), batch_size=batch_size))
        except Exception as exc:  # the test reports it
            outcome.append(exc)

    thread = threading.Thread(target=run, name="prune")
    thread.start()
    return thread


@pytest.mark.postgres
def test_prune_beside_an_uncommitted_delete_of_the_newest_task_keeps_the_entity_a_task(
    postgres_server_url: str,
) -> None:
    """Connection 1 deletes A's newest task (as the console's delete does: lock, then delete) and holds its
    transaction open; prune runs to its end on connection 2; then connection 1 commits. Prune still saw the
    newest task (not committed away yet) and, before the fix, deleted the older one: A had no task left."""
    store = _entity_store(postgres_server_url)
    older = _task(store, "A", 1, "finished", 60)
    newest = _task(store, "A", 2, "finished", 50)
    other_old = _task(store, "B", 1, "finished", 60)
    other_newest = _task(store, "B", 2, "finished", 50)
    deleter = sa.create_engine(postgres_server_url)
    outcome: list[Any] = []
    with deleter.connect() as conn:
        conn.execute(sa.text("SET lock_timeout = '5s'"))
        conn.commit()
        with conn.begin():
            locked = conn.execute(
                sa.text("SELECT id FROM scheduled_jobs_task WHERE id = :i FOR UPDATE SKIP LOCKED"), {"i": newest}
            ).scalars()
            assert list(locked) == [newest]
            conn.execute(sa.text("DELETE FROM scheduled_jobs_task WHERE id = :i"), {"i": newest})
            pruner = _prune_in_thread(store, outcome)
            pruner.join(30)
            assert not pruner.is_alive(), "prune waited for the deleting transaction"
        # committed here, after prune ended
    deleter.dispose()
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert _tasks_of(store, "A") == [older], "A lost its newest task to the delete and its older one to prune"
    assert _tasks_of(store, "B") == [other_newest], "prune still prunes the entities nobody touches"
    assert other_old not in _tasks_of(store, "B")


@pytest.mark.postgres
def test_a_delete_of_the_newest_task_while_a_prune_batch_holds_it_waits_for_nothing_and_removes_nothing(
    postgres_server_url: str,
) -> None:
    """The other order: prune's batch is open (held mid-transaction after its locks); the console's delete of
    A's newest task runs beside it. It must neither wait nor take the task prune relies on."""
    import threading

    from scheduled_jobs.store import TaskIds, delete_tasks

    store = _entity_store(postgres_server_url)
    older = _task(store, "A", 1, "finished", 60)
    newest = _task(store, "A", 2, "finished", 50)
    from scheduled_jobs.store import TaskStore

    pruning = TaskStore.from_url(postgres_server_url)
    held, release = threading.Event(), threading.Event()
    statements: list[str] = []

    @sa.event.listens_for(pruning.engine, "after_cursor_execute")
    def _hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)
        if statement.lstrip().upper().startswith("DELETE") and not held.is_set():
            held.set()
            release.wait(30)  # prune's batch has deleted, not committed

    outcome: list[Any] = []
    pruner = _prune_in_thread(pruning, outcome)
    try:
        assert held.wait(30)
        started = dt.datetime.now(dt.UTC)
        result = delete_tasks(store.engine, TaskIds((newest,)), Actor("user", user="ada"))
        waited = (dt.datetime.now(dt.UTC) - started).total_seconds()
    finally:
        release.set()
        pruner.join(30)
    assert waited < 2.0
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert _tasks_of(store, "A") != [], "prune and a delete together left A without a task"
    if result.changed:  # the delete went first: prune must then have kept the older task
        assert _tasks_of(store, "A") == [older]
    else:  # prune went first: the newest task stays until prune's batch is over
        assert result.not_eligible == 1
        assert _tasks_of(store, "A") == [newest]
        assert delete_tasks(store.engine, TaskIds((newest,)), Actor("user", user="ada")).changed == 1


@pytest.mark.postgres
def test_a_settle_of_the_newest_task_beside_prune_neither_waits_nor_stops_it(postgres_server_url: str) -> None:
    """An exporter's settle holds A's newest task in its transaction (it stays a task: only its status
    changes): prune goes on and deletes A's older task without waiting for the settle."""
    store = _entity_store(postgres_server_url)
    older = _task(store, "A", 1, "finished", 60)
    store.add_entities([ROUTE], [("A", {"id": "A", "version": 2})])
    (claimed,) = store.claim(ROUTE, 10)
    settler = sa.create_engine(postgres_server_url)
    outcome: list[Any] = []
    with settler.connect() as conn, conn.begin():
        # The lock a settle takes (lock_tasks, wait=True), then its update.
        conn.execute(
            sa.select(tasks.c.id).where(tasks.c.id == claimed.id).with_for_update(of=tasks, key_share=True)
        ).all()
        conn.execute(sa.update(tasks).where(tasks.c.id == claimed.id).values(status="finished"))
        pruner = _prune_in_thread(store, outcome)
        pruner.join(30)
        assert not pruner.is_alive(), "prune waited for a settle"
    settler.dispose()
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert outcome[0].tasks_deleted == 1
    assert _tasks_of(store, "A") == [claimed.id]
    assert older not in _tasks_of(store, "A")


def test_prune_beside_a_delete_on_sqlite_keeps_the_entity_a_task(tmp_path: Path) -> None:
    """SQLite: the deleting transaction holds the database; prune waits for it, then sees the delete."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = _entity_store(url)
    older = _task(store, "A", 1, "finished", 60)
    newest = _task(store, "A", 2, "finished", 50)
    outcome: list[Any] = []
    with store.engine.connect() as conn, conn.begin():
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task WHERE id = :i"), {"i": newest})
        pruner = _prune_in_thread(store, outcome)
        pruner.join(0.5)
        assert pruner.is_alive(), "prune waits for the database lock"
    pruner.join(30)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert _tasks_of(store, "A") == [older]
