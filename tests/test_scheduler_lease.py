"""A long run keeps its hold, under a real scheduler (``airflow standalone``), and no trigger holds a password.

The seed's "especially when one process can take at least 1 hour", in minutes: with a lease of one
minute, an export whose destination holds it well past its lease (until the test has seen more than a
lease go by; at most three minutes) keeps its configuration all along. A
second run waits for it (in the triggerer), a third is skipped as a duplicate of the waiting one, and
no run executes alongside it. The store is PostgreSQL behind a connection with a password: the waiting
run's row in Airflow's ``trigger`` table names the connection, never the password.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import connection_json
from cryptography.fernet import Fernet
from helpers.databases import fresh_database
from helpers.orders_to_erp import FILE_SUBSCRIBER, ROUTE, write_project, yearly_exports
from helpers.scheduler import QUICK, dags_registered, finished_runs, task_rows, trigger_all
from helpers.sink import Sink
from helpers.standalone import Standalone

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import ProcessLedger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
JOBS = ["dup-a", "dup-b", "dup-c"]
HOLD_SECONDS = 180.0  # the longest the destination holds the first delivery: the test releases it sooner
LEASE_MINUTES = 1
STORE_PASSWORD = "pw-for-the-store-only"


@pytest.fixture
def store_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL store; its URL carries a password the loopback server (trust) never checks."""
    with fresh_database(postgres_server_url, "sj_lease") as url:
        yield url.set(password=STORE_PASSWORD).render_as_string(hide_password=False)


@pytest.fixture
def holding_sink() -> Iterator[Sink]:
    """The first delivery is held until the test releases it (at most HOLD_SECONDS); every later one is answered at once."""
    sink = Sink(hold_seconds=HOLD_SECONDS, plan=lambda number, key: "hold" if number == 1 else "ok").start()
    yield sink
    sink.stop()


@pytest.fixture
def airflow(tmp_path: Path, store_url: str, holding_sink: Sink, airflow_metadata_url: str) -> Iterator[Standalone]:
    definitions, configurations = write_project(
        tmp_path,
        incoming=FILE_SUBSCRIBER,
        publisher="  timeout_seconds: 300\n",
        jobs=yearly_exports(JOBS, tasks_to_export=1),
    )
    with Standalone(
        tmp_path / "home",
        definitions=definitions,
        configurations=configurations,
        metadata_url=airflow_metadata_url,
        env={
            **QUICK,
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__SCHEDULED_JOBS__GUARD_LEASE_MINUTES": str(LEASE_MINUTES),
            "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": connection_json(store_url),
            "AIRFLOW_CONN_SINK": holding_sink.connection_env,
        },
    ) as airflow:
        yield airflow


def state_of(airflow: Standalone, dag_id: str, task_id: str) -> str | None:
    row = task_rows(airflow).get((dag_id, task_id))
    return None if row is None else row.state


def requests(sink: Sink) -> int:
    return sum(sink.attempts.values())


def stored_trigger_kwargs(airflow: Standalone) -> list[str]:
    """The ``trigger`` table's kwargs, decrypted as Airflow decrypts them."""
    fernet = Fernet(airflow.env["AIRFLOW__CORE__FERNET_KEY"].encode())
    with airflow.metadata().connect() as conn:
        stored = conn.execute(sa.text("SELECT kwargs FROM trigger")).scalars().all()
    return [raw if raw.startswith("{") else fernet.decrypt(raw.encode()).decode() for raw in stored]


def test_a_run_longer_than_its_lease_keeps_its_hold_and_its_trigger_holds_no_password(
    airflow: Standalone, store_url: str, holding_sink: Sink
) -> None:
    store = TaskStore.from_url(store_url)
    store.add_entities([ROUTE], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(3)])
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 240, "the three DAGs")

    trigger_all(airflow, ["dup-a"])
    airflow.wait_for(lambda: requests(holding_sink) == 1, 240, "dup-a's delivery to be held")
    held_at = time.monotonic()
    trigger_all(airflow, ["dup-b"])
    airflow.wait_for(
        lambda: state_of(airflow, "dup-b", "export_route") == "deferred", 120, "dup-b to wait in the triggerer"
    )
    triggers = stored_trigger_kwargs(airflow)
    assert len(triggers) == 1 and '"store_conn_id"' in triggers[0], triggers
    assert STORE_PASSWORD not in triggers[0], triggers

    # dup-a's lease (one minute, from its guard) has run out; Airflow still says dup-a runs.
    time.sleep(max(0.0, held_at + 75 - time.monotonic()))
    trigger_all(airflow, ["dup-c"])
    airflow.wait_for(lambda: state_of(airflow, "dup-c", "export_route") == "skipped", 120, "dup-c to be skipped")
    # Still held, and nothing else delivered: no run executed alongside dup-a.
    assert (requests(holding_sink), holding_sink.received) == (1, [])
    assert state_of(airflow, "dup-b", "export_route") == "deferred"
    holding_sink.release.set()  # the destination answers dup-a at last (it held it beyond its lease)

    airflow.wait_for(finished_runs(airflow, len(JOBS)), HOLD_SECONDS + 240, "the three runs to finish")
    tasks = task_rows(airflow)
    # The duplicate rule runs inside the export task (guard_design inline, the default).
    assert {job: tasks[(job, "export_route")].state for job in JOBS} == {
        "dup-a": "success",
        "dup-b": "success",
        "dup-c": "skipped",
    }
    # dup-b's task started (and deferred) while dup-a worked: its work's own record says when the work began.
    with store.engine.connect() as conn:
        worked = {
            row.dag_id: (row.started_at, row.ended_at)
            for row in conn.execute(sa.text("SELECT dag_id, started_at, ended_at FROM scheduled_jobs_job_run"))
        }
    assert worked["dup-b"][0] >= worked["dup-a"][1]  # the waiting run began once the long one was done
    assert requests(holding_sink) == 2 and len(holding_sink.received) == 2 and holding_sink.duplicates() == {}
    (skipped,) = ProcessLedger(store.engine).skipped(f"route:{ROUTE}")
    assert (skipped["dag_id"], skipped["duplicate_of_dag_id"]) == ("dup-c", "dup-b")
