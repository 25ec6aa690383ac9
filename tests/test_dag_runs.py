"""``dag.test()`` runs of each job type moving real files through a real task store."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from typing import TYPE_CHECKING

import pytest
from conftest import ROOT, connection_json
from helpers.airflow_compat import DagBag, dag_test

from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from pathlib import Path


def run_dag(dag_id: str) -> tuple[str, dict[str, str]]:
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id}"
    run = dag_test(dag)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    return run.state, states


def store_at(project: Path) -> TaskStore:
    return TaskStore.from_url(f"sqlite:///{project / 'store.db'}")


def outbox(project: Path) -> list[str]:
    folder = project / "data" / "outbox" / "erp-orders"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# The duplicate rule runs inside the work task (guard_design inline, the default): no tasks of its own.
GUARDED: dict[str, str] = {}
INCOMING_OK = (
    "success",
    {**GUARDED, "run_incoming_configuration": "success", "export_orders-to-erp": "success", "watcher": "skipped"},
)


def not_realtime(project: Path) -> None:
    route = project / "configurations" / "routes" / "orders-to-erp.yaml"
    route.write_text(route.read_text().replace("realtime: true", "realtime: false"))


def test_a_realtime_route_is_exported_right_after_its_incoming_run(project: Path) -> None:
    assert run_dag("shop-orders-incoming") == INCOMING_OK
    assert outbox(project) == ["order-SO-1001.json", "order-SO-1002.json", "order-SO-1003.json", "order-SO-1004.json"]


def test_incoming_then_outgoing_moves_orders_from_inbox_to_outbox(project: Path) -> None:
    not_realtime(project)
    inbox = project / "data" / "inbox" / "shop-orders"
    assert run_dag("shop-orders-incoming") == ("success", {**GUARDED, "run_incoming_configuration": "success"})
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["orders-0001.json", "orders-0002.json"]
    # SO-1002 is in both files with the same content: one task, not two.
    assert store_at(project).counts("orders-to-erp")["new"] == 4

    assert run_dag("orders-to-erp-export") == ("success", {**GUARDED, "export_route": "success"})
    assert outbox(project) == ["order-SO-1001.json", "order-SO-1002.json", "order-SO-1003.json", "order-SO-1004.json"]
    written = json.loads((project / "data" / "outbox" / "erp-orders" / "order-SO-1002.json").read_text())
    assert written["customer"] == "Café Amstel"
    assert store_at(project).counts("orders-to-erp") == {
        "new": 0,
        "processing": 0,
        "finished": 4,
        "failed": 0,
        "skipped": 0,
    }


def test_running_incoming_again_on_the_same_input_creates_no_tasks(project: Path) -> None:
    not_realtime(project)
    inbox = project / "data" / "inbox" / "shop-orders"
    run_dag("shop-orders-incoming")
    for processed in (inbox / "processed").iterdir():  # someone drops the same files again
        processed.rename(inbox / processed.name)
    assert run_dag("shop-orders-incoming")[0] == "success"
    assert store_at(project).counts("orders-to-erp")["new"] == 4


def test_export_takes_at_most_tasks_to_export_oldest_first(project: Path) -> None:
    definition = project / "job_definitions" / "orders-to-erp-export.yaml"
    definition.write_text(definition.read_text().replace("tasks_to_export: 100", "tasks_to_export: 3"))
    not_realtime(project)
    run_dag("shop-orders-incoming")
    run_dag("orders-to-erp-export")
    assert outbox(project) == ["order-SO-1001.json", "order-SO-1002.json", "order-SO-1003.json"]
    assert store_at(project).counts("orders-to-erp")["new"] == 1


def test_a_malformed_file_is_rejected_and_the_others_are_stored_and_exported_in_the_same_run(project: Path) -> None:
    inbox = project / "data" / "inbox" / "shop-orders"
    (inbox / "orders-0000.json").write_text('{"orders": [{"id": "SO-9"}, ', encoding="utf-8")
    (inbox / "orders-0003.json").write_text('{"orders": [{"number": "SO-10"}]}', encoding="utf-8")
    for dropped in ("orders-0000.json", "orders-0003.json"):  # dropped a minute ago: settled, no longer written
        os.utime(inbox / dropped, (time.time() - 60, time.time() - 60))
    state, tasks = run_dag("shop-orders-incoming")
    # The run fails, so that the rejection shows, but the real-time export has run for the good files.
    assert (state, tasks) == (
        "failed",
        {**GUARDED, "run_incoming_configuration": "failed", "export_orders-to-erp": "success", "watcher": "failed"},
    )
    assert outbox(project) == ["order-SO-1001.json", "order-SO-1002.json", "order-SO-1003.json", "order-SO-1004.json"]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["orders-0001.json", "orders-0002.json"]
    assert (
        (inbox / "rejected" / "orders-0000.json.error.txt")
        .read_text()
        .startswith("not valid JSON: Expecting value at line 1, column 29")
    )
    assert (
        inbox / "rejected" / "orders-0003.json.error.txt"
    ).read_text() == "record 0: a record has no entity key 'id'\n"
    assert store_at(project).counts("orders-to-erp")["finished"] == 4
    # The next run finds only good files and nothing new: it succeeds, and the watcher is skipped.
    assert run_dag("shop-orders-incoming") == INCOMING_OK


def test_a_duplicate_run_skips_the_realtime_export_and_the_watcher(project: Path) -> None:
    """A run skipped as a duplicate skips the export after it, though the export also runs after a failed incoming run."""
    from scheduled_jobs.store.processes import Holder, ProcessLedger

    ledger = ProcessLedger(store_at(project).engine)
    for run_id in ("scheduled__2026-11-24T02:00:00+00:00", "manual__2026-11-24T02:01:00+00:00"):
        ledger.enter("incoming:shop-orders", Holder("shop-orders-incoming-2", run_id), dt.timedelta(hours=1))
    state, tasks = run_dag("shop-orders-incoming")
    assert tasks["run_incoming_configuration"] == "skipped"
    assert (state, tasks["export_orders-to-erp"], tasks["watcher"]) == ("success", "skipped", "skipped")
    assert outbox(project) == []


def test_a_failing_destination_marks_tasks_failed_with_the_error(project: Path) -> None:
    not_realtime(project)
    run_dag("shop-orders-incoming")
    (project / "data" / "outbox").write_text("a file where the outbox folder should be")
    assert run_dag("orders-to-erp-export")[0] == "success"
    tasks = store_at(project).list_tasks("orders-to-erp")
    assert {t["status"] for t in tasks} == {"failed"}
    assert "cannot write" in tasks[0]["last_error"]


def test_repair_hands_stuck_tasks_back(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_at(project)
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    store.claim("orders-to-erp", 1)
    definition = project / "job_definitions" / "repair-stuck-tasks.yaml"
    definition.write_text(definition.read_text().replace("stuck_after_minutes: 30", "stuck_after_minutes: 1"))
    with store.engine.begin() as conn:  # the claim happened two minutes ago
        conn.exec_driver_sql("UPDATE scheduled_jobs_task SET claimed_at = datetime(claimed_at, '-2 minutes')")
    assert run_dag("repair-stuck-tasks") == ("success", {"repair_stuck_tasks": "success"})
    assert store.counts("orders-to-erp")["new"] == 1


def test_a_disabled_job_processes_nothing_and_says_why(project: Path) -> None:
    inbox = project / "data" / "inbox" / "product-catalog"
    state, tasks = run_dag("product-catalog-incoming")
    assert (state, tasks) == ("success", {**GUARDED, "run_incoming_configuration": "skipped"})
    assert (inbox / "products.csv").exists()
    assert store_at(project).counts()["new"] == 0


def test_the_store_defaults_to_sqlite_in_airflow_home(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    from pathlib import Path as P

    monkeypatch.delenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE")
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__STORE_CONN_ID", "scheduled_jobs_store_absent")
    default = P(os.environ["AIRFLOW_HOME"]) / "scheduled_jobs_store.db"
    default.unlink(missing_ok=True)
    assert run_dag("shop-orders-incoming") == INCOMING_OK
    assert TaskStore.from_url(f"sqlite:///{default}").counts("orders-to-erp")["finished"] == 4


@pytest.mark.postgres
def test_a_postgres_connection_holds_the_store(
    project: Path, monkeypatch: pytest.MonkeyPatch, postgres_server_url: str
) -> None:
    import sqlalchemy as sa

    monkeypatch.setenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE", connection_json(postgres_server_url))
    store = TaskStore.from_url(postgres_server_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity RESTART IDENTITY"))
    not_realtime(project)
    run_dag("shop-orders-incoming")
    assert store.counts("orders-to-erp")["new"] == 4
    run_dag("orders-to-erp-export")
    assert store.counts("orders-to-erp")["finished"] == 4
    assert len(outbox(project)) == 4
