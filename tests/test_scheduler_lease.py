"""A long run keeps its hold, under a real scheduler (``airflow standalone``), and no trigger holds a password.

The seed's "especially when one process can take at least 1 hour", in minutes: with a lease of one
minute, an export whose destination holds it for three minutes keeps its configuration all along. A
second run waits for it (in the triggerer), a third is skipped as a duplicate of the waiting one, and
no run executes alongside it. The store is PostgreSQL behind a connection with a password: the waiting
run's row in Airflow's ``trigger`` table names the connection, never the password.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import sqlalchemy as sa
from conftest import ROOT, connection_json
from cryptography.fernet import Fernet
from helpers.ports import free_port
from helpers.sink import Sink
from test_scheduler_duplicates import BIN, dags_registered, finished_runs, metadata, trigger_all, wait_for

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import ProcessLedger

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
JOBS = ["dup-a", "dup-b", "dup-c"]
HOLD_SECONDS = 180.0
LEASE_MINUTES = 1
STORE_PASSWORD = "pw-for-the-store-only"
ROUTE = "orders-to-erp"


@pytest.fixture
def store_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL store; its URL carries a password the loopback server (trust) never checks."""
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    name = f"sj_lease_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield (
        sa.make_url(postgres_server_url)
        .set(database=name, password=STORE_PASSWORD)
        .render_as_string(hide_password=False)
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def holding_sink() -> Iterator[Sink]:
    """The first delivery is answered after HOLD_SECONDS; every later one at once."""
    sink = Sink(timeout_sleep=HOLD_SECONDS, plan=lambda number, key: "slow" if number == 1 else "ok").start()
    yield sink
    sink.stop()


@pytest.fixture
def airflow(tmp_path: Path, store_url: str, holding_sink: Sink) -> Iterator[dict[str, str]]:
    definitions, configurations = tmp_path / "job_definitions", tmp_path / "configurations"
    for kind in ("incoming", "outgoing", "routes"):
        (configurations / kind).mkdir(parents=True)
    (configurations / "incoming" / "orders.yaml").write_text(
        "name: Orders\nentity_key: id\nsubscriber: {type: file, base_folder: inbox}\n"
    )
    (configurations / "outgoing" / "erp.yaml").write_text(
        "name: ERP\npublisher:\n  type: http\n  connection: sink\n  endpoint: /orders/{id}\n  timeout_seconds: 300\n"
    )
    (configurations / "routes" / f"{ROUTE}.yaml").write_text(
        "name: Orders to ERP\nincoming_configuration: orders\noutgoing_configuration: erp\n"
    )
    definitions.mkdir()
    for job in JOBS:  # yearly: they run when triggered
        (definitions / f"{job}.yaml").write_text(
            f"name: {job}\njob: outgoing\nroute: {ROUTE}\ntasks_to_export: 1\nexpression: '0 0 1 1 *'\n"
        )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'home' / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # Their own log server ports: another instance on this machine may hold Airflow's defaults.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
            "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(configurations),
            "AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER": str(tmp_path / "data"),
            "AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS": "1",
            "AIRFLOW__SCHEDULED_JOBS__GUARD_LEASE_MINUTES": str(LEASE_MINUTES),
            "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": connection_json(store_url),
            "AIRFLOW_CONN_SINK": holding_sink.connection_env,
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "_LOG": str(tmp_path / "standalone.log"),
        }
    )
    log = (tmp_path / "standalone.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def ti_rows(env: dict[str, str]) -> dict[tuple[str, str], sa.Row[object]]:
    with metadata(env).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT dag_id, task_id, state, start_date, end_date FROM task_instance WHERE dag_id LIKE 'dup-%'")
        ).all()
    return {(r.dag_id, r.task_id): r for r in rows}


def state_of(env: dict[str, str], dag_id: str, task_id: str) -> str | None:
    row = ti_rows(env).get((dag_id, task_id))
    return None if row is None else row.state


def requests(sink: Sink) -> int:
    return sum(sink.attempts.values())


def stored_trigger_kwargs(env: dict[str, str]) -> list[str]:
    """The ``trigger`` table's kwargs, decrypted as Airflow decrypts them."""
    fernet = Fernet(env["AIRFLOW__CORE__FERNET_KEY"].encode())
    with metadata(env).connect() as conn:
        stored = conn.execute(sa.text("SELECT kwargs FROM trigger")).scalars().all()
    return [raw if raw.startswith("{") else fernet.decrypt(raw.encode()).decode() for raw in stored]


def test_a_run_longer_than_its_lease_keeps_its_hold_and_its_trigger_holds_no_password(
    airflow: dict[str, str], store_url: str, holding_sink: Sink
) -> None:
    env = airflow
    store = TaskStore.from_url(store_url)
    store.add_entities([ROUTE], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(3)])
    wait_for(dags_registered(env, len(JOBS)), 240, "the three DAGs", env)

    trigger_all(env, ["dup-a"])
    wait_for(lambda: requests(holding_sink) == 1, 240, "dup-a's delivery to be held", env)
    held_at = time.monotonic()
    trigger_all(env, ["dup-b"])
    wait_for(lambda: state_of(env, "dup-b", "guard") == "deferred", 120, "dup-b to wait in the triggerer", env)
    triggers = stored_trigger_kwargs(env)
    assert len(triggers) == 1 and '"store_conn_id"' in triggers[0], triggers
    assert STORE_PASSWORD not in triggers[0], triggers

    # dup-a's lease (one minute, from its guard) has run out; Airflow still says dup-a runs.
    time.sleep(max(0.0, held_at + 75 - time.monotonic()))
    trigger_all(env, ["dup-c"])
    wait_for(lambda: state_of(env, "dup-c", "guard") == "skipped", 120, "dup-c to be skipped", env)
    # Still held, and nothing else delivered: no run executed alongside dup-a.
    assert (requests(holding_sink), holding_sink.received) == (1, [])
    assert state_of(env, "dup-b", "guard") == "deferred"

    wait_for(finished_runs(env, len(JOBS)), HOLD_SECONDS + 240, "the three runs to finish", env)
    tasks = ti_rows(env)
    assert {job: tasks[(job, "guard")].state for job in JOBS} == {
        "dup-a": "success",
        "dup-b": "success",
        "dup-c": "skipped",
    }
    first, second = tasks[("dup-a", "export_route")], tasks[("dup-b", "export_route")]
    assert (first.state, second.state) == ("success", "success")
    assert second.start_date >= first.end_date  # the waiting run began once the long one was done
    assert requests(holding_sink) == 2 and len(holding_sink.received) == 2 and holding_sink.duplicates() == {}
    (skipped,) = ProcessLedger(store.engine).skipped(f"route:{ROUTE}")
    assert (skipped["dag_id"], skipped["duplicate_of_dag_id"]) == ("dup-c", "dup-b")
