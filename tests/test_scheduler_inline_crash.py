"""Crash safety of the ``inline`` guard design under a real scheduler (``airflow standalone``, LocalExecutor).

In that design the work task frees its hold in its own ``finally``, and there is no teardown. A task
process killed outright (SIGKILL, mid-delivery) never gets there: its hold stays in the ledger until
Airflow says the run is over. Then the next run clears it and executes: nothing stays held.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import psutil
import pytest
import sqlalchemy as sa
from helpers.orders_to_erp import FILE_SUBSCRIBER, ROUTE, write_project, yearly_exports
from helpers.scheduler import QUICK, dags_registered, task_rows, trigger_all
from helpers.sink import Sink
from helpers.standalone import Standalone

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import ProcessLedger
from scheduled_jobs.store.schema import processes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
JOBS = ["dup-a", "dup-b"]


@pytest.fixture
def sink() -> Iterator[Sink]:
    """The first delivery is held (until the sink stops, or 30 s); every later one is answered at once."""
    server = Sink(plan=lambda number, key: "hold" if number == 1 else "ok").start()
    yield server
    server.stop()


@pytest.fixture
def airflow(tmp_path: Path, sink: Sink, airflow_metadata_url: str) -> Iterator[Standalone]:
    definitions, configurations = write_project(
        tmp_path,
        incoming=FILE_SUBSCRIBER,
        publisher="  timeout_seconds: 120\n",
        jobs=yearly_exports(JOBS, tasks_to_export=1),
    )
    with Standalone(
        tmp_path / "home",
        definitions=definitions,
        configurations=configurations,
        metadata_url=airflow_metadata_url,
        env={**QUICK, "AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN": "inline", "AIRFLOW_CONN_SINK": sink.connection_env},
    ) as airflow:
        yield airflow


def holders(store: TaskStore) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.select(processes.c.configuration, processes.c.slot, processes.c.dag_id))
        ]


def run_state(airflow: Standalone, dag_id: str) -> str | None:
    with airflow.metadata().connect() as conn:
        return conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d"), {"d": dag_id}).scalar()


def test_a_killed_work_task_leaves_nothing_held_once_airflow_says_its_run_is_over(
    airflow: Standalone, sink: Sink
) -> None:
    store = TaskStore.from_url(f"sqlite:///{airflow.store_path}")
    store.add_entities([ROUTE], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(2)])
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 240, "the two DAGs")
    guarded = f"route:{ROUTE}"

    trigger_all(airflow, ["dup-a"])
    airflow.wait_for(lambda: sink.held.is_set(), 240, "dup-a's delivery to be under way")
    assert holders(store) == [(guarded, "running", "dup-a")]
    (work,) = [row for (dag_id, _), row in task_rows(airflow).items() if dag_id == "dup-a"]
    assert (work.task_id, work.state) == ("export_route", "running")  # one task: the work is the guard
    with airflow.metadata().connect() as conn:
        pid = conn.execute(sa.text("SELECT pid FROM task_instance WHERE dag_id = 'dup-a'")).scalar()
    assert pid and "airflow" in " ".join(psutil.Process(pid).cmdline()), pid  # the task's own process
    os.kill(pid, signal.SIGKILL)  # no finally, no teardown: the process is simply gone

    airflow.wait_for(lambda: run_state(airflow, "dup-a") == "failed", 300, "Airflow to fail dup-a's run")
    assert task_rows(airflow)[("dup-a", "export_route")].state == "failed"
    assert holders(store) == [(guarded, "running", "dup-a")]  # nobody released it: the ledger still says so

    trigger_all(airflow, ["dup-b"])
    airflow.wait_for(lambda: run_state(airflow, "dup-b") in ("success", "failed"), 300, "dup-b's run to end")
    assert task_rows(airflow)[("dup-b", "export_route")].state == "success"  # it entered: not skipped, no wait
    assert sink.received == ["orders-to-erp-2"]  # SO-1 delivered; SO-0 waits for repair (processing)
    assert holders(store) == []  # dup-b released its own hold; dup-a's was cleared as over
    assert ProcessLedger(store.engine).skipped(guarded) == []
