"""The guard in real DAG runs (``dag.test()``): duplicates skipped, waiting deferred, the exemptions."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING

import pytest
from airflow.dag_processing.dagbag import DagBag
from conftest import ROOT

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger
from scheduled_jobs.triggers.guard import GuardTrigger

if TYPE_CHECKING:
    from pathlib import Path

ROUTE = "route:orders-to-erp"
OTHER = Holder("nightly-erp-export", "scheduled__2026-11-24T02:00:00+00:00")
WAITER = Holder("manual-erp-export", "manual__2026-11-24T02:01:00+00:00")


def ledger(project: Path) -> ProcessLedger:
    return ProcessLedger(TaskStore.from_url(f"sqlite:///{project / 'store.db'}").engine)


def run_dag(dag_id: str, **kwargs: object) -> tuple[str, dict[str, str]]:
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id)
    run = dag.test(**kwargs)
    return run.state, {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_a_third_run_is_skipped_as_a_duplicate_and_says_of_which(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    book = ledger(project)
    book.enter(ROUTE, OTHER, dt.timedelta(hours=1))
    book.enter(ROUTE, WAITER, dt.timedelta(hours=1))
    state, tasks = run_dag("orders-to-erp-export")
    assert (state, tasks) == ("success", {"guard": "skipped", "export_route": "skipped", "release_guard": "skipped"})
    (skipped,) = book.skipped(ROUTE)
    assert (skipped["dag_id"], skipped["duplicate_of_dag_id"], skipped["duplicate_of_run_id"]) == (
        "orders-to-erp-export",
        WAITER.dag_id,
        WAITER.run_id,
    )
    assert f"Skipped as a duplicate: route:orders-to-erp already has a run waiting ({WAITER})" in capfd.readouterr().out


def test_a_waiting_run_defers_and_runs_after_the_first(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    book = ledger(project)
    book.enter(ROUTE, OTHER, dt.timedelta(hours=1))
    left_at: list[dt.datetime] = []

    def first_run_finishes() -> None:
        time.sleep(3)
        left_at.append(dt.datetime.now(dt.UTC))
        book.leave(OTHER)

    threading.Thread(target=first_run_finishes, daemon=True).start()
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export")
    run = dag.test()
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {k: ti.state for k, ti in instances.items()} == {
        "guard": "success",
        "export_route": "success",
        "release_guard": "success",
    }
    assert instances["export_route"].start_date > left_at[0]  # it waited for the first run to leave
    assert book.skipped(ROUTE) == []
    assert ledger(project).enter(ROUTE, WAITER, dt.timedelta(hours=1)).action == "run"  # released at the end


@pytest.mark.parametrize(
    ("setting", "conf"),
    [
        ({"AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES": "false"}, None),
        ({}, {"trigger": "webhook"}),
    ],
)
def test_the_switch_and_webhooks_bypass_the_guard(
    project: Path, monkeypatch: pytest.MonkeyPatch, setting: dict[str, str], conf: dict[str, str] | None
) -> None:
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    book = ledger(project)
    book.enter(ROUTE, OTHER, dt.timedelta(hours=1))
    book.enter(ROUTE, WAITER, dt.timedelta(hours=1))
    state, tasks = run_dag("orders-to-erp-export", run_conf=conf)
    assert (state, tasks["guard"], tasks["export_route"]) == ("success", "success", "success")
    assert book.skipped(ROUTE) == []


def test_overlap_skip_and_allow(project: Path) -> None:
    definition = project / "job_definitions" / "orders-to-erp-export.yaml"
    book = ledger(project)
    book.enter(ROUTE, OTHER, dt.timedelta(hours=1))
    definition.write_text(definition.read_text() + "overlap: skip\n")
    assert run_dag("orders-to-erp-export")[1]["guard"] == "skipped"
    assert "overlap: skip drops this run" in book.skipped(ROUTE)[0]["reason"]
    definition.write_text(definition.read_text().replace("overlap: skip", "overlap: allow"))
    assert run_dag("orders-to-erp-export")[1]["export_route"] == "success"


def test_guard_trigger_serialize_round_trips() -> None:
    trigger = GuardTrigger(
        configuration=ROUTE,
        dag_id="d",
        run_id="r",
        store_url="postgresql://u:secret@h/db",
        lease_seconds=3600,
        poll_seconds=2,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "scheduled_jobs.triggers.guard.GuardTrigger"
    again = GuardTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert "secret" not in repr(again)
