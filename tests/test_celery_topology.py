"""The docker-compose topology, for real, on this machine: CeleryExecutor, PostgreSQL, Redis, two workers.

Separate processes, as the compose services are: ``airflow api-server``, ``scheduler``,
``dag-processor``, ``triggerer`` and two ``airflow celery worker`` (each its own name, recorded as the
task instances' hostname), with PostgreSQL (127.0.0.1:5432) as Airflow's metadata database and as the
task store, and Redis (127.0.0.1:6379, a database of its own, emptied first) as the broker.

One test, in phases, on one time budget each (no fixed sleeps):

1. By cron, every minute: an incoming job reads 300 orders into two routes; two export jobs of one
   route (``overlap: allow``) run at the same time on both workers: every task is delivered once.
2. A worker is killed (SIGKILL, its whole process group) in the middle of an export: after the repair
   job and the next exports, every queued task is delivered; none is lost. The schedule goes on, but
   the test runs each job by hand as soon as its turn comes (the REST API), instead of waiting for the
   next minute's fire time.
3. Four jobs of the other route triggered at once (the REST API), their guards on both workers: one
   runs, one waits, two are skipped as duplicates.

Every process it started is stopped at the end, by its own process group.
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

import httpx
import psutil
import pytest
import sqlalchemy as sa
from conftest import ROOT, connection_json
from helpers.ports import free_port
from helpers.sink import Sink
from helpers.triggers import trigger, trigger_together
from helpers.users import PASSWORDS, ROLES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("SCHEDULED_JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
ORDERS = 300
MINUTELY = "'* * * * *'"


def write_project(base: Path, sink: Sink, crm: Sink) -> dict[str, str]:
    configurations, definitions, inbox = base / "configurations", base / "job_definitions", base / "data" / "inbox"
    for folder in (configurations / "incoming", configurations / "outgoing", configurations / "routes", definitions):
        folder.mkdir(parents=True)
    inbox.mkdir(parents=True)
    (configurations / "incoming" / "orders.yaml").write_text(
        "name: Orders\nentity_key: id\nsubscriber: {type: file, base_folder: inbox, pattern: '*.json'}\n"
    )
    for name, connection in (("erp", "sink"), ("crm", "crm")):
        (configurations / "outgoing" / f"{name}.yaml").write_text(
            f"name: {name.upper()}\npublisher:\n  type: http\n  connection: {connection}\n  endpoint: /orders/{{id}}\n"
            "  timeout_seconds: 5\n  retry: {attempts: 1}\n"
        )
        (configurations / "routes" / f"orders-to-{name}.yaml").write_text(
            f"name: Orders to {name.upper()}\nincoming_configuration: orders\noutgoing_configuration: {name}\n"
        )
    jobs = {
        "orders-incoming": f"job: incoming\nincoming_configuration: orders\nexpression: {MINUTELY}\n",
        "export-a": f"job: outgoing\nroute: orders-to-erp\noverlap: allow\nexpression: {MINUTELY}\n",
        "export-b": f"job: outgoing\nroute: orders-to-erp\noverlap: allow\nexpression: {MINUTELY}\n",
        "repair": f"job: repair_stuck_tasks\nstuck_after_minutes: 1\nmax_attempts: 10\nexpression: {MINUTELY}\n",
        **{f"crm-{n}": "job: outgoing\nroute: orders-to-crm\nexpression: '0 0 1 1 *'\n" for n in range(1, 5)},
    }
    for identifier, text in jobs.items():
        (definitions / f"{identifier}.yaml").write_text(f"name: {identifier}\nidentifier: {identifier}\n{text}")
    return {
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(configurations),
        "AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER": str(base / "data"),
        "AIRFLOW_CONN_SINK": sink.connection_env,
        "AIRFLOW_CONN_CRM": crm.connection_env,
    }


def drop_orders(base: Path, name: str, first: int, count: int) -> list[str]:
    ids = [f"O-{n}" for n in range(first, first + count)]
    path = base / "data" / "inbox" / name
    path.with_suffix(".tmp").write_text(json.dumps([{"id": i, "total": 10} for i in ids]))
    path.with_suffix(".tmp").rename(path)
    return ids


class Topology:
    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.metadata = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        self.url = f"http://localhost:{env['AIRFLOW__API__PORT']}"

    def token(self) -> str:
        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": PASSWORDS["admin"]}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["access_token"])

    def trigger(self, *dag_ids: str) -> list[str]:
        """A manual run of each DAG, asked for at once; their run ids."""
        return trigger_together(self.url, self.token(), [(dag_id, None) for dag_id in dag_ids])

    def start(self, name: str, *command: str, **extra: str) -> None:
        log = (self.base / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [str(BIN / "airflow"), *command],
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it forks
        )

    def kill(self, name: str) -> list[int]:
        """SIGKILL a component and every process under it, as if its machine died; the pids killed."""
        process = self.processes[name]
        tree = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
        for pid in tree:  # task processes may run in sessions of their own: kill each, not just the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return tree

    def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # then SIGKILL: a Celery worker's warm shutdown waits for its tasks
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.base.glob("*.log"))

    def wait_for(self, predicate: Callable[[], bool], seconds: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for name, process in self.processes.items():
                assert process.poll() is None or name.endswith("-killed"), f"{name} died\n{self.logs()}"
            with contextlib.suppress(sa.exc.DBAPIError):
                if predicate():
                    return time.monotonic() - started
            time.sleep(1)
        raise AssertionError(f"timed out after {seconds}s waiting for {what}\n{self.logs()}")

    def rows(self, query: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
        with self.metadata.connect() as conn:
            return list(conn.execute(sa.text(query), params))


@pytest.fixture
def topology(tmp_path: Path, postgres_server_url: str) -> Iterator[tuple[Topology, Sink, Sink, sa.Engine]]:
    import redis

    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()  # a database of its own: nothing left over from an earlier run
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    stamp = f"{os.getpid()}_{int(time.time())}"
    databases = {"meta": f"sj_celery_meta_{stamp}", "store": f"sj_celery_store_{stamp}"}
    with admin.connect() as conn:
        for name in databases.values():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(postgres_server_url)
    meta_url = url.set(database=databases["meta"]).render_as_string(hide_password=False)
    store_url = url.set(database=databases["store"]).render_as_string(hide_password=False)
    sink = Sink(plan=lambda number, key: "slow", timeout_sleep=0.05).start()
    crm = Sink(plan=lambda number, key: "slow", timeout_sleep=0.05).start()
    port = free_port()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "helpers.worker_name.worker_name",
            "PYTHONPATH": str(ROOT / "tests"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ROLES,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # A killed worker's task instances are failed 30 s after their last heartbeat (default 5 min).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS": "1",
            "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": connection_json(store_url),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            **write_project(tmp_path, sink, crm),
        }
    )
    migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    running = Topology(tmp_path, env)
    try:
        running.start("api-server", "api-server", "--port", str(port))
        running.start("scheduler", "scheduler")
        running.start("dag-processor", "dag-processor")
        running.start("triggerer", "triggerer")
        for n in (1, 2):
            # --skip-serve-logs: two workers on one machine would both want the log server's port.
            running.start(
                f"worker-{n}",
                "celery",
                "worker",
                "--skip-serve-logs",
                "--celery-hostname",
                f"worker-{n}@%h",
                SJ_WORKER_NAME=f"worker-{n}",
            )
        yield running, sink, crm, sa.create_engine(store_url)
    finally:
        running.stop_all()
        sink.stop()
        crm.stop()
        running.metadata.dispose()
        with admin.connect() as conn:
            for name in databases.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        broker.flushdb()
    leftovers = [p.pid for p in running.processes.values() if p.poll() is None]
    assert leftovers == [], f"processes still running: {leftovers}"


def statuses(store: sa.Engine, route: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT status, count(*) FROM scheduled_jobs_task WHERE route = :r GROUP BY status"), {"r": route}
        ).all()
    return {status: int(count) for status, count in rows}


def delivered(sink: Sink, ids: list[str]) -> bool:
    with sink.lock:
        bodies = dict(sink.bodies)
    return {body["id"] for body in bodies.values()} >= set(ids)


def test_celery_topology_cron_two_workers_a_killed_worker_and_duplicates(
    topology: tuple[Topology, Sink, Sink, sa.Engine],
) -> None:
    running, sink, crm, store = topology
    first = drop_orders(running.base, "orders-1.json", 0, ORDERS)

    # 1. cron: the incoming job and both export jobs run by schedule, on both workers, exactly once.
    took = running.wait_for(lambda: delivered(sink, first), 240, "the first orders to reach the ERP by cron")
    print(f"phase 1: {ORDERS} orders delivered {took:.0f}s after the topology started")
    assert sink.duplicates() == {}, "a task was delivered twice"

    def scheduled_success() -> set[str]:
        query = "SELECT DISTINCT dag_id FROM dag_run WHERE run_type = 'scheduled' AND state = 'success'"
        return {row.dag_id for row in running.rows(query)}

    # Every job first runs at its next fire time, so all three start at once: one export may deliver every
    # order while the other's run is still ending. Each must end in success, by its schedule.
    running.wait_for(
        lambda: {"orders-incoming", "export-a", "export-b"} <= scheduled_success(),
        120,
        "a successful scheduled run of the incoming job and of both export jobs",
    )
    overlapping = running.rows(
        "SELECT a.hostname AS a_host, b.hostname AS b_host FROM task_instance a JOIN task_instance b"
        " ON a.dag_id = 'export-a' AND b.dag_id = 'export-b' AND a.task_id = 'export_route'"
        " AND b.task_id = 'export_route' AND a.start_date < b.end_date AND b.start_date < a.end_date"
        " AND a.hostname <> b.hostname"
    )

    def hosts() -> set[str]:
        return {
            row.hostname for row in running.rows("SELECT DISTINCT hostname FROM task_instance WHERE hostname <> ''")
        }

    running.wait_for(lambda: hosts() == {"worker-1", "worker-2"}, 120, "tasks run on both workers")
    print(f"phase 1: {len(overlapping)} pairs of exports ran at the same time on the two workers")

    # 2. kill a worker in the middle of an export: nothing queued is lost.
    # The ERP holds every request, so each running export stops inside its first claimed batch.
    sink.release.clear()
    sink.plan = lambda number, key: "hold"
    second = drop_orders(running.base, "orders-2.json", ORDERS, ORDERS)
    # What the next fire times would do, now: the incoming job, then (once it has read the file) both exports.
    trigger(running.url, running.token(), "orders-incoming")
    running.wait_for(
        lambda: sum(statuses(store, "orders-to-erp").values()) == 2 * ORDERS, 240, "the second orders read"
    )
    running.trigger("export-a", "export-b")

    victim: list[str] = []

    def every_export_holds_a_batch() -> bool:
        exports = running.rows(
            "SELECT hostname FROM task_instance WHERE task_id = 'export_route' AND state = 'running'"
            " AND dag_id IN ('export-a', 'export-b')"
        )
        with sink.lock:
            holding = sink.holding
        if exports and holding == len(exports):
            victim.append(exports[0].hostname)
            return True
        return False

    running.wait_for(every_export_holds_a_batch, 240, "a running export holding claimed tasks")
    assert statuses(store, "orders-to-erp").get("processing", 0) > 0
    (name,) = victim[-1:]
    killed = running.kill(name)
    killed_at = time.monotonic()
    running.processes[f"{name}-killed"] = running.processes.pop(name)
    print(f"phase 2: killed {name}, which was exporting, and its {len(killed) - 1} child processes")
    sink.plan = lambda number, key: "slow"
    sink.release.set()

    # The repair job hands back tasks claimed more than a minute ago (stuck_after_minutes: 1): run it by hand
    # once the killed worker's claims are that old, then an export for what it handed back.
    def claims_stuck() -> bool:
        with store.connect() as conn:
            claimed = conn.execute(
                sa.text(
                    "SELECT claimed_at FROM scheduled_jobs_task WHERE route = 'orders-to-erp' AND status = 'processing'"
                )
            ).scalars()
            cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=1, seconds=2)
            return all(at < cutoff for at in claimed)

    running.wait_for(claims_stuck, 240, "the killed worker's claims to be a minute old")
    running.trigger("repair")
    running.wait_for(
        lambda: statuses(store, "orders-to-erp").get("processing", 0) == 0, 240, "the stuck tasks handed back"
    )
    running.trigger("export-a")

    def all_finished() -> bool:
        found = statuses(store, "orders-to-erp")
        return delivered(sink, second) and found.get("finished", 0) == 2 * ORDERS and sum(found.values()) == 2 * ORDERS

    running.wait_for(all_finished, 300, "every order delivered and finished after the worker was killed")
    print(
        f"phase 2: all {ORDERS} orders delivered and finished {time.monotonic() - killed_at:.0f}s after {name} was killed"
    )
    with store.connect() as conn:
        reclaimed = conn.execute(
            sa.text("SELECT count(*) FROM scheduled_jobs_task WHERE route = 'orders-to-erp' AND attempts >= 2")
        ).scalar()
    assert reclaimed, "the killed worker's claimed tasks were repaired and exported again"
    repeated = sink.duplicates()
    print(f"phase 2: {reclaimed} tasks repaired and exported again; {len(repeated)} delivered twice")
    assert len(repeated) <= 100, "repeats stay within the killed exporter's batch in flight"

    # 3. duplicate prevention across workers: restart a second worker, then four jobs of one route at once.
    running.start(
        "worker-3",
        "celery",
        "worker",
        "--skip-serve-logs",
        "--celery-hostname",
        "worker-3@%h",
        SJ_WORKER_NAME="worker-3",
    )
    running.trigger(*(f"crm-{n}" for n in range(1, 5)))

    def crm_runs_over() -> bool:
        states = [r.state for r in running.rows("SELECT state FROM dag_run WHERE dag_id LIKE 'crm-%'")]
        return len(states) == 4 and all(s in ("success", "failed") for s in states)

    running.wait_for(crm_runs_over, 240, "the four crm runs to end")
    guards = running.rows(
        "SELECT dag_id, state, hostname FROM task_instance WHERE dag_id LIKE 'crm-%' AND task_id = 'export_route'"
    )
    states = sorted(row.state for row in guards)
    assert states == ["skipped", "skipped", "success", "success"], guards
    with store.connect() as conn:
        skipped = conn.execute(
            sa.text("SELECT count(*) FROM scheduled_jobs_skipped_run WHERE configuration = 'route:orders-to-crm'")
        ).scalar()
    assert skipped == 2
    print(f"phase 3: the guarded exports ran on {sorted({row.hostname for row in guards})}")
    assert crm.duplicates() == {}
