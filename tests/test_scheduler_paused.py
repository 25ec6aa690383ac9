"""A paused job keeps no hold, under a real scheduler (``airflow standalone``, PostgreSQL metadata, LocalExecutor).

Issue 22, item 11: dup-b was paused (Airflow's own toggle) while it waited behind dup-a. Airflow queues no
task of a paused DAG, so when dup-a was done and handed it the slot, dup-b held its configuration with
nothing running, and dup-c waited behind it. Now dup-a's release frees dup-b's hold (recorded with the
reason), the Processes data shows no hold of dup-b, dup-c runs at once, and dup-b, once unpaused, ends
skipped with that reason: it never executes what dup-c executed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
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
GUARDED = f"route:{ROUTE}"


@pytest.fixture
def sink() -> Iterator[Sink]:
    """The first delivery is held until the test releases it (at most 180 s); every later one is answered at once."""
    server = Sink(hold_seconds=180, plan=lambda number, key: "hold" if number == 1 else "ok").start()
    yield server
    server.stop()


@pytest.fixture
def airflow(tmp_path: Path, sink: Sink, airflow_metadata_url: str) -> Iterator[Standalone]:
    definitions, configurations = write_project(
        tmp_path,
        incoming=FILE_SUBSCRIBER,
        publisher="  timeout_seconds: 240\n",
        jobs=yearly_exports(JOBS, tasks_to_export=1),
    )
    with Standalone(
        tmp_path / "home",
        definitions=definitions,
        configurations=configurations,
        metadata_url=airflow_metadata_url,
        env={**QUICK, "AIRFLOW_CONN_SINK": sink.connection_env},
    ) as airflow:
        yield airflow


def state_of(airflow: Standalone, dag_id: str) -> str | None:
    row = task_rows(airflow).get((dag_id, "export_route"))
    return None if row is None else row.state


def set_paused(airflow: Standalone, token: str, dag_id: str, paused: bool) -> None:
    """Airflow's own toggle: ``PATCH /api/v2/dags/{dag_id}``."""
    answer = httpx.patch(
        f"{airflow.url}/api/v2/dags/{dag_id}",
        json={"is_paused": paused},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]


def processes(airflow: Standalone, token: str) -> list[dict[str, object]]:
    """What the Processes page shows of the holds: its JSON API."""
    answer = httpx.get(
        f"{airflow.url}/scheduled-jobs/api/processes", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text[:300]
    rows: list[dict[str, object]] = answer.json()["processes"]
    return rows


def holders_of(rows: list[dict[str, object]]) -> set[str]:
    return {
        str(holder["dag_id"]) for row in rows for holder in (row["running"], row["waiting"]) if isinstance(holder, dict)
    }


def test_a_run_paused_while_it_waits_frees_its_hold_and_the_next_run_does_not_wait_behind_it(
    airflow: Standalone, sink: Sink
) -> None:
    store = TaskStore.from_url(f"sqlite:///{airflow.store_path}")
    store.add_entities([ROUTE], [(f"SO-{i}", {"id": f"SO-{i}"}) for i in range(3)])
    airflow.wait_for(dags_registered(airflow, len(JOBS)), 240, "the three DAGs")
    admin = airflow.token("admin")

    trigger_all(airflow, ["dup-a"])
    airflow.wait_for(lambda: sink.held.is_set(), 240, "dup-a's delivery to be held")
    trigger_all(airflow, ["dup-b"])
    airflow.wait_for(lambda: state_of(airflow, "dup-b") == "deferred", 120, "dup-b to wait in the triggerer")
    set_paused(airflow, admin, "dup-b", True)
    sink.release.set()  # dup-a is done

    airflow.wait_for(lambda: state_of(airflow, "dup-a") == "success", 120, "dup-a to finish")
    airflow.wait_for(lambda: "dup-b" not in holders_of(processes(airflow, admin)), 60, "dup-b's hold to be freed")
    (freed,) = ProcessLedger(store.engine).skipped(GUARDED)
    assert freed["dag_id"] == "dup-b"
    assert "the job dup-b is paused in Airflow" in str(freed["reason"]), freed

    trigger_all(airflow, ["dup-c"])  # not behind dup-b: the configuration is free
    airflow.wait_for(lambda: state_of(airflow, "dup-c") == "success", 120, "dup-c to run")
    assert len(sink.received) == 2 and sink.duplicates() == {}

    # Airflow fails a task whose executor event (the end of the process that deferred) arrives once it is
    # queued again: unpaused within seconds, that race is Airflow's. Unpause once the scheduler has it.
    airflow.wait_for(
        lambda: (
            "Received executor event with state success for task instance TaskInstanceKey(dag_id='dup-b'"
            in airflow.log_path.read_text(errors="replace")
        ),
        120,
        "the scheduler to see dup-b's deferring process end",
    )
    set_paused(airflow, admin, "dup-b", False)  # its task runs at last: it ends skipped, and says why
    airflow.wait_for(finished_runs(airflow, len(JOBS)), 180, "the three runs to finish")
    assert {job: state_of(airflow, job) for job in JOBS} == {"dup-a": "success", "dup-b": "skipped", "dup-c": "success"}
    logs = "\n".join(
        path.read_text(errors="replace")
        for path in (airflow.home / "logs").glob("dag_id=dup-b/*/task_id=export_route/*.log")
    )
    assert "the job dup-b is paused in Airflow" in logs
    assert len(sink.received) == 2  # dup-b delivered nothing
    assert holders_of(processes(airflow, admin)) == set()
