"""Duplicate prevention under a real scheduler: ``airflow standalone`` (SQLite, LocalExecutor, triggerer).

Six runs that export one route are triggered at once from the CLI, five from different jobs and one as
a webhook. Exactly one executes, one waits (deferred, in the triggerer) and then executes, three are
skipped as duplicates, and the webhook run is never skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers.ports import free_port
from helpers.sink import Sink

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.e2e
JOBS = [f"dup-{letter}" for letter in "abcdef"]
BIN = Path(sys.executable).parent


@pytest.fixture
def airflow(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """``airflow standalone`` on its own home; the test's ``jobs`` and ``extra_env`` marks shape it."""
    jobs_mark = request.node.get_closest_marker("jobs")
    jobs: dict[str, str] = (
        jobs_mark.args[0]
        if jobs_mark
        else {
            job: f"name: {job}\njob: outgoing\nroute: orders-to-erp\ntasks_to_export: 3\nexpression: '0 0 1 1 *'\n"
            for job in JOBS  # yearly: they run when triggered
        }
    )
    env_mark = request.node.get_closest_marker("extra_env")
    metadata_url = f"sqlite:///{tmp_path / 'home' / 'airflow.db'}"
    if getattr(request, "param", "sqlite") == "postgresql":
        server = request.getfixturevalue("postgres_server_url")  # a fresh database of this session
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        name = f"sj_meta_{os.getpid()}_{int(time.time())}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        metadata_url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    sink = Sink(timeout_sleep=1.0, plan=lambda number, key: "slow").start()
    definitions, configurations = tmp_path / "job_definitions", tmp_path / "configurations"
    for kind in ("incoming", "outgoing", "routes"):
        (configurations / kind).mkdir(parents=True)
    (configurations / "incoming" / "orders.yaml").write_text(
        "name: Orders\nentity_key: id\nsubscriber: {type: file, base_folder: inbox}\n"
    )
    (configurations / "outgoing" / "erp.yaml").write_text(
        "name: ERP\npublisher:\n  type: http\n  connection: sink\n  endpoint: /orders/{id}\n  timeout_seconds: 5\n"
    )
    (configurations / "routes" / "orders-to-erp.yaml").write_text(
        "name: Orders to ERP\nincoming_configuration: orders\noutgoing_configuration: erp\n"
    )
    definitions.mkdir()
    for job, text in jobs.items():
        (definitions / f"{job}.yaml").write_text(text)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
            "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(configurations),
            "AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER": str(tmp_path / "data"),
            "AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS": "1",
            "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": json.dumps(
                {"conn_type": "sqlite", "host": str(tmp_path / "store.db")}
            ),
            "AIRFLOW_CONN_SINK": sink.connection_env,
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            **(env_mark.args[0] if env_mark else {}),
        }
    )
    log = (tmp_path / "standalone.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    env["_LOG"] = str(tmp_path / "standalone.log")
    env["_STORE"] = str(tmp_path / "store.db")
    try:
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        for child in psutil.Process().children(recursive=True):
            if child.pid != os.getpid():
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        sink.stop()
        if metadata_url.startswith("postgresql"):
            admin = sa.create_engine(request.getfixturevalue("postgres_server_url"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(metadata_url).database}" WITH (FORCE)')
                )
            admin.dispose()


def task_logs(env: dict[str, str], task_id: str, dag_ids: list[str]) -> str:
    """The end of each log of ``task_id`` in these DAGs, to say why a task failed."""
    found = []
    for dag_id in dag_ids:
        for path in sorted(Path(env["AIRFLOW_HOME"], "logs").glob(f"dag_id={dag_id}/*/task_id={task_id}/*.log")):
            found.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(found)


def metadata(env: dict[str, str]) -> sa.Engine:
    return sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])


def wait_for(predicate: object, seconds: float, what: str, env: dict[str, str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except sa.exc.DBAPIError:
            pass  # the metadata database is still being created or migrated
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n" + Path(env["_LOG"]).read_text()[-4000:])


@pytest.mark.parametrize("airflow", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_six_runs_at_once_one_runs_one_waits_three_skip_and_the_webhook_runs(airflow: dict[str, str]) -> None:
    env = airflow
    store = TaskStore.from_url(f"sqlite:///{env['_STORE']}")
    store.add_entities(["orders-to-erp"], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(12)])
    engine = metadata(env)
    wait_for(dags_registered(env, len(JOBS)), 180, "the six DAGs", env)
    trigger_all(env, JOBS, webhook={"dup-f"})
    wait_for(finished_runs(env, len(JOBS)), 240, "the six runs to finish", env)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT dag_id, task_id, state, start_date, end_date FROM task_instance WHERE dag_id LIKE 'dup-%'")
        ).all()
    tasks = {(r.dag_id, r.task_id): r for r in rows}
    guards = {job: tasks[(job, "guard")].state for job in JOBS}
    exports = {job: tasks[(job, "export_route")] for job in JOBS}
    assert guards["dup-f"] == "success" and exports["dup-f"].state == "success"  # the webhook is exempt
    ran = [job for job in JOBS[:5] if exports[job].state == "success"]
    skipped = [job for job in JOBS[:5] if guards[job] == "skipped"]
    assert (len(ran), len(skipped)) == (2, 3), (
        guards,
        task_logs(env, "guard", [j for j in JOBS if guards[j] == "failed"]),
    )
    first, second = sorted(ran, key=lambda job: exports[job].start_date)
    assert exports[second].start_date >= exports[first].end_date  # the waiting run never overlapped
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
def test_with_one_slot_higher_priority_starts_first(airflow: dict[str, str]) -> None:
    env = airflow
    engine = metadata(env)

    def three_ran() -> bool:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT dag_id, run_id FROM task_instance WHERE dag_id LIKE 'repair-%' AND state = 'success'")
            ).all()
        return {r.dag_id for r in rows} == {f"repair-{name}" for name in PRIORITIES}

    wait_for(three_ran, 240, "the three repair jobs of one minute", env)
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


def trigger_all(env: dict[str, str], jobs: list[str], webhook: set[str] | None = None) -> None:
    """``airflow dags trigger`` for each job at once; those in ``webhook`` with conf {"trigger": "webhook"}."""
    triggers = [
        subprocess.Popen(
            [
                str(BIN / "airflow"),
                "dags",
                "trigger",
                job,
                *(["--conf", '{"trigger": "webhook"}'] if job in (webhook or set()) else []),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for job in jobs
    ]
    for trigger in triggers:
        output, _ = trigger.communicate(timeout=120)
        assert trigger.returncode == 0, output


def finished_runs(env: dict[str, str], count: int) -> Callable[[], bool]:
    engine = metadata(env)

    def done() -> bool:
        with engine.connect() as conn:
            states = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id LIKE 'dup-%'")).scalars().all()
        return len(states) == count and all(s in ("success", "failed") for s in states)

    return done


def dags_registered(env: dict[str, str], count: int) -> Callable[[], bool]:
    engine = metadata(env)

    def registered() -> bool:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT count(*) FROM dag WHERE dag_id LIKE 'dup-%' AND NOT is_paused")
            ).scalar()
        return found == count

    return registered


def task_states(env: dict[str, str], task_id: str) -> dict[str, str]:
    with metadata(env).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT dag_id, state FROM task_instance WHERE dag_id LIKE 'dup-%' AND task_id = :task"),
            {"task": task_id},
        ).all()
    return {r.dag_id: r.state for r in rows}


@pytest.mark.extra_env({"AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES": "false"})
def test_with_the_switch_off_nothing_is_skipped(airflow: dict[str, str]) -> None:
    env = airflow
    TaskStore.from_url(f"sqlite:///{env['_STORE']}").add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    wait_for(dags_registered(env, len(JOBS)), 180, "the DAGs", env)
    trigger_all(env, JOBS[:3])
    wait_for(finished_runs(env, 3), 240, "three runs", env)
    assert task_states(env, "guard") == dict.fromkeys(JOBS[:3], "success")
    assert task_states(env, "export_route") == dict.fromkeys(JOBS[:3], "success")


def test_a_vanished_holder_stops_blocking_after_its_lease(airflow: dict[str, str]) -> None:
    env = airflow
    store = TaskStore.from_url(f"sqlite:///{env['_STORE']}")
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    # A run whose worker died without Airflow knowing of it: only its 20 s lease can end its hold.
    ghost = Holder("gone-job", "scheduled__2026-11-24T00:00:00+00:00")
    ProcessLedger(store.engine).enter("route:orders-to-erp", ghost, dt.timedelta(seconds=20))
    held_until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    wait_for(dags_registered(env, len(JOBS)), 180, "the DAGs", env)
    trigger_all(env, ["dup-a"])
    wait_for(finished_runs(env, 1), 240, "the run", env)
    assert task_states(env, "export_route") == {"dup-a": "success"}
    with metadata(env).connect() as conn:
        started = conn.execute(
            sa.text("SELECT start_date FROM task_instance WHERE dag_id = 'dup-a' AND task_id = 'export_route'")
        ).scalar()
    started_at = started if isinstance(started, dt.datetime) else dt.datetime.fromisoformat(str(started))
    assert started_at.replace(tzinfo=dt.UTC) >= held_until - dt.timedelta(seconds=2)  # it waited out the lease
