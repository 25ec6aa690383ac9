"""Duplicate prevention under a real scheduler: ``airflow standalone`` (a PostgreSQL metadata database,
LocalExecutor, the triggerer).

Six runs that export one route are triggered at once through the REST API, five from different jobs and
one as a webhook. Exactly one executes, one waits (deferred, in the triggerer) and then executes, three are
skipped as duplicates, and the webhook run is never skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import connection_json
from helpers.databases import fresh_database
from helpers.orders_to_erp import FILE_SUBSCRIBER, write_project, yearly_exports
from helpers.scheduler import QUICK, dags_registered, finished_runs, task_rows, trigger_all
from helpers.sink import Sink
from helpers.standalone import Standalone

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e
JOBS = [f"dup-{letter}" for letter in "abcdef"]


@pytest.fixture
def airflow(tmp_path: Path, request: pytest.FixtureRequest, airflow_metadata_url: str) -> Iterator[Standalone]:
    """``airflow standalone`` on its own home; the test's ``jobs`` and ``extra_env`` marks shape it, and its
    parameter (``sqlite``, the default, or ``postgresql``) the task store's database."""
    jobs_mark = request.node.get_closest_marker("jobs")
    jobs: dict[str, str] = jobs_mark.args[0] if jobs_mark else yearly_exports(JOBS, tasks_to_export=3)
    env_mark = request.node.get_closest_marker("extra_env")
    definitions, configurations = write_project(
        tmp_path, incoming=FILE_SUBSCRIBER, publisher="  timeout_seconds: 5\n", jobs=jobs
    )
    with contextlib.ExitStack() as stack:
        sink = Sink(timeout_sleep=1.0, plan=lambda number, key: "slow").start()
        stack.callback(sink.stop)
        store_env = {}
        if getattr(request, "param", "sqlite") == "postgresql":
            server = request.getfixturevalue("postgres_server_url")
            store_url = stack.enter_context(fresh_database(server, "sj_dup_store"))
            store_env["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"] = connection_json(store_url.render_as_string(False))
        yield stack.enter_context(
            Standalone(
                tmp_path / "home",
                definitions=definitions,
                configurations=configurations,
                metadata_url=airflow_metadata_url,
                env={
                    **QUICK,
                    **store_env,
                    "AIRFLOW_CONN_SINK": sink.connection_env,
                    **(env_mark.args[0] if env_mark else {}),
                },
            )
        )


def store_of(airflow: Standalone) -> TaskStore:
    """The task store this Airflow uses: the SQLite file of its home, or the PostgreSQL database it was given."""
    connection = airflow.env["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"]
    parsed = json.loads(connection)
    if parsed["conn_type"] == "sqlite":
        return TaskStore.from_url(f"sqlite:///{parsed['host']}")
    url = sa.URL.create(
        "postgresql+psycopg2",
        username=parsed["login"],
        password=parsed["password"] or None,
        host=parsed["host"],
        port=parsed["port"],
        database=parsed["schema"],
    )
    return TaskStore.from_url(url.render_as_string(hide_password=False))


def task_logs(airflow: Standalone, task_id: str, dag_ids: list[str]) -> str:
    """The end of each log of ``task_id`` in these DAGs, to say why a task failed."""
    found = []
    for dag_id in dag_ids:
        for path in sorted((airflow.home / "logs").glob(f"dag_id={dag_id}/*/task_id={task_id}/*.log")):
            found.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(found)


def work_times(store: TaskStore) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """When each DAG's guarded work began and ended, from the job run history (after the guard let it in)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT dag_id, started_at, ended_at FROM scheduled_jobs_job_run")).all()
    return {row.dag_id: (_time(row.started_at), _time(row.ended_at)) for row in rows}


def _time(value: object) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


@pytest.mark.parametrize("airflow", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_six_runs_at_once_one_runs_one_waits_three_skip_and_the_webhook_runs(airflow: Standalone) -> None:
    store = store_of(airflow)
    store.add_entities(["orders-to-erp"], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(12)])
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 180, "the six DAGs")
    trigger_all(airflow, JOBS, webhook={"dup-f"})
    airflow.wait_for(finished_runs(airflow, len(JOBS)), 240, "the six runs to finish")
    tasks = task_rows(airflow)
    # The duplicate rule runs inside the export task (guard_design inline, the default).
    exports = {job: tasks[(job, "export_route")] for job in JOBS}
    states = {job: export.state for job, export in exports.items()}
    assert states["dup-f"] == "success"  # the webhook is exempt
    ran = [job for job in JOBS[:5] if states[job] == "success"]
    skipped = [job for job in JOBS[:5] if states[job] == "skipped"]
    assert (len(ran), len(skipped)) == (2, 3), (
        states,
        task_logs(airflow, "export_route", [j for j in JOBS if states[j] == "failed"]),
    )
    # The waiting run's task started (and deferred) before the first ended: its work's own record says
    # when the work began.
    worked = work_times(store)
    first, second = sorted(ran, key=lambda job: worked[job][0])
    assert worked[second][0] >= worked[first][1]  # the waiting run never overlapped
    ledger = ProcessLedger(store.engine)
    assert sorted(r["dag_id"] for r in ledger.skipped("route:orders-to-erp")) == sorted(skipped)
    assert {r["duplicate_of_dag_id"] for r in ledger.skipped("route:orders-to-erp")} <= set(ran)
    assert store.counts("orders-to-erp")["finished"] == 9  # three runs of three tasks each


PRIORITIES = {"low": 1, "high": 30, "middle": 15}


@pytest.mark.jobs(
    {
        f"repair-{name}": f"name: repair {name}\njob: repair_stuck_tasks\nexpression: '* * * * *'\npriority: {weight}\n"
        for name, weight in PRIORITIES.items()
    }
)
@pytest.mark.extra_env({"AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": "1"})
def test_with_one_slot_higher_priority_starts_first(airflow: Standalone) -> None:
    engine = airflow.metadata()

    def three_ran() -> bool:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT dag_id, run_id FROM task_instance WHERE dag_id LIKE 'repair-%' AND state = 'success'")
            ).all()
        return {r.dag_id for r in rows} == {f"repair-{name}" for name in PRIORITIES}

    airflow.wait_for(three_ran, 240, "the three repair jobs of one minute")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT ti.dag_id, ti.start_date, dr.logical_date FROM task_instance ti "
                "JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
                "WHERE ti.dag_id LIKE 'repair-%' AND ti.state = 'success'"
            )
        ).all()
    by_minute: dict[object, list[sa.Row[object]]] = {}
    for row in rows:
        by_minute.setdefault(row.logical_date, []).append(row)
    full = [minute for minute, found in by_minute.items() if len(found) == 3]
    assert full, rows  # all three were due at the same moment
    order = [r.dag_id for r in sorted(by_minute[min(full)], key=lambda r: r.start_date)]
    assert order == ["repair-high", "repair-middle", "repair-low"], rows
    with engine.connect() as conn:  # the three really competed for one slot
        assert conn.execute(sa.text("SELECT slots FROM slot_pool WHERE pool = 'default_pool'")).scalar() == 1


def task_states(airflow: Standalone, task_id: str) -> dict[str, str]:
    with airflow.metadata().connect() as conn:
        rows = conn.execute(
            sa.text("SELECT dag_id, state FROM task_instance WHERE dag_id LIKE 'dup-%' AND task_id = :task"),
            {"task": task_id},
        ).all()
    return {r.dag_id: r.state for r in rows}


@pytest.mark.extra_env({"AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES": "false"})
def test_with_the_switch_off_nothing_is_skipped(airflow: Standalone) -> None:
    TaskStore.from_url(f"sqlite:///{airflow.store_path}").add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 180, "the DAGs")
    trigger_all(airflow, JOBS[:3])
    airflow.wait_for(finished_runs(airflow, 3), 240, "three runs")
    assert task_states(airflow, "export_route") == dict.fromkeys(JOBS[:3], "success")
    store = TaskStore.from_url(f"sqlite:///{airflow.store_path}")
    assert ProcessLedger(store.engine).skipped("route:orders-to-erp") == []


def test_a_vanished_holder_stops_blocking_after_its_lease(airflow: Standalone) -> None:
    store = TaskStore.from_url(f"sqlite:///{airflow.store_path}")
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    # A run whose worker died without Airflow knowing of it: only its 20 s lease can end its hold.
    ghost = Holder("gone-job", "scheduled__2026-11-24T00:00:00+00:00")
    ProcessLedger(store.engine).enter("route:orders-to-erp", ghost, dt.timedelta(seconds=20))
    held_until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 180, "the DAGs")
    trigger_all(airflow, ["dup-a"])
    airflow.wait_for(finished_runs(airflow, 1), 240, "the run")
    assert task_states(airflow, "export_route") == {"dup-a": "success"}
    with airflow.metadata().connect() as conn:
        started = conn.execute(
            sa.text("SELECT start_date FROM task_instance WHERE dag_id = 'dup-a' AND task_id = 'export_route'")
        ).scalar()
    started_at = started if isinstance(started, dt.datetime) else dt.datetime.fromisoformat(str(started))
    assert started_at.replace(tzinfo=dt.UTC) >= held_until - dt.timedelta(seconds=2)  # it waited out the lease
