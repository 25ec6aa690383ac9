"""The job run history: a guarded job's work records each run (start, end, what it did, why it failed).

Real ``dag.test()`` runs against the project's SQLite store; the history must never be the reason a job fails.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers.airflow_compat import DagBag, dag_test
from helpers.live_api import store_of

from scheduled_jobs.exceptions import DeliveryError, ScheduledJobsError
from scheduled_jobs.operators.base import error_text, run_figures
from scheduled_jobs.store import job_run_ended, job_run_started, prune_job_runs, recent_job_runs

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Engine

    from scheduled_jobs.store import TaskStore


def run_dag(dag_id: str) -> tuple[Any, dict[str, str]]:
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id}"
    run = dag_test(dag)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM scheduled_jobs_job_run ORDER BY id"))]


def not_realtime(project: Path) -> None:
    route = project / "configurations" / "routes" / "orders-to-erp.yaml"
    route.write_text(route.read_text().replace("realtime: true", "realtime: false"))


def test_an_export_run_is_recorded_with_what_it_did(project: Path) -> None:
    store = store_of(project)
    store.add_entities(["orders-to-erp"], [(f"SO-{n}", {"id": f"SO-{n}"}) for n in range(3)])
    run, states = run_dag("orders-to-erp-export")
    assert run.state == "success", states
    (row,) = rows(store.engine)
    assert (row["configuration"], row["dag_id"], row["run_id"], row["task_id"], row["try_number"]) == (
        "route:orders-to-erp",
        "orders-to-erp-export",
        run.run_id,
        "export_route",
        1,
    )
    assert row["state"] == "success"
    assert row["error"] is None
    assert row["started_at"] <= row["ended_at"]
    figures = recent_job_runs(store.engine)["route:orders-to-erp"][0]["figures"]
    assert figures == {
        "route": "orders-to-erp",
        "exported": 3,
        "failed": 0,
        "left": 0,
        "requeued": 0,
        "lost_claims": 0,
    }


def test_an_incoming_run_is_recorded_under_its_guard_and_its_realtime_export_is_not(project: Path) -> None:
    run, states = run_dag("shop-orders-incoming")
    assert run.state == "success", states
    assert states["export_orders-to-erp"] == "success"
    (row,) = rows(store_of(project).engine)  # the real-time export is not the guarded work: no row
    assert (row["configuration"], row["task_id"], row["state"]) == (
        "incoming:shop-orders",
        "run_incoming_configuration",
        "success",
    )
    figures = recent_job_runs(store_of(project).engine, "incoming:shop-orders")["incoming:shop-orders"][0]["figures"]
    assert figures == {
        "incoming_configuration": "shop-orders",
        "routes": 1,
        "sources": 2,
        "entities": 5,
        "tasks_created": 4,
        "unchanged": 1,
        "rejected": 0,
    }


def test_a_failed_run_is_recorded_with_its_error(project: Path) -> None:
    not_realtime(project)
    inbox = project / "data" / "inbox" / "shop-orders"
    (inbox / "orders-0000.json").write_text('{"orders": [{"id": "SO-9"}, ', encoding="utf-8")
    os.utime(inbox / "orders-0000.json", (time.time() - 60, time.time() - 60))
    run, states = run_dag("shop-orders-incoming")
    assert (run.state, states["run_incoming_configuration"]) == ("failed", "failed")
    (row,) = rows(store_of(project).engine)
    assert row["state"] == "failed"
    assert row["ended_at"] is not None
    assert row["error"].startswith("IncomingRunError: 1 rejected"), row["error"]
    assert "orders-0000.json" in row["error"]


def test_a_skipped_run_is_recorded_with_its_reason(project: Path) -> None:
    (project / "configurations" / "routes" / "orders-to-erp.yaml").unlink()
    _, states = run_dag("shop-orders-incoming")
    assert states["run_incoming_configuration"] == "skipped", states
    (row,) = rows(store_of(project).engine)
    assert row["state"] == "skipped"
    assert row["error"].startswith("No route uses incoming configuration 'shop-orders'")


def test_an_unguarded_job_records_no_run(project: Path) -> None:
    run, _ = run_dag("repair-stuck-tasks")
    assert run.state == "success"
    assert rows(store_of(project).engine) == []


def test_a_history_that_cannot_be_written_never_fails_the_job(project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    store = store_of(project)
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE scheduled_jobs_job_run"))
    run, states = run_dag("orders-to-erp-export")
    assert (run.state, states["export_route"]) == ("success", "success")
    assert store.counts("orders-to-erp")["finished"] == 1
    output = capfd.readouterr()
    warnings = [line for line in (output.out + output.err).splitlines() if "Cannot record" in line]
    assert len(warnings) == 1, "the failed write is logged, and the end (no row to end) is not tried"
    assert "the job goes on" in warnings[0]
    assert "no such table: scheduled_jobs_job_run" in warnings[0]


def test_a_history_end_that_cannot_be_written_never_fails_the_job(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The row was written at the start, then the end's write fails (here: a check the table refuses)."""
    store = store_of(project)
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER no_end BEFORE UPDATE ON scheduled_jobs_job_run "
                "BEGIN SELECT RAISE(ABORT, 'history is read-only'); END"
            )
        )
    run, _ = run_dag("orders-to-erp-export")
    assert run.state == "success"
    (row,) = rows(store.engine)
    assert (row["state"], row["ended_at"]) == ("running", None)  # left running: the page shows Airflow's state
    output = capfd.readouterr()
    assert "Cannot record the end of this run in the job run history (the job goes on)" in output.out + output.err


# -- what a row holds ------------------------------------------------------------------------------------


def test_error_text_keeps_our_messages_and_only_the_class_of_anything_else() -> None:
    ours = DeliveryError("POST https://erp:hunter2@erp.example/orders failed: 503")
    assert error_text(ours) == "DeliveryError: POST https://***@erp.example/orders failed: 503"
    theirs = RuntimeError("could not connect to postgresql://store:s3cr3t@db/store; token=abc123")
    assert error_text(theirs) == "RuntimeError (see the task log)"
    long = ScheduledJobsError("x" * 5000 + "\n\x1b[31mred")
    text = error_text(long)
    assert len(text) < 1100
    assert text.endswith("... (cut)")
    assert "\x1b" not in error_text(ScheduledJobsError("a\x1b[2Jb\nc"))


def test_run_figures_are_small_and_json_safe() -> None:
    result = {
        "reset": list(range(5000)),
        "failed": [1, 2],
        "exported": 3,
        "retryable": True,
        "route": "r\x1b[31m" + "y" * 500,
        "nested": {"a": 1},
        "when": dt.datetime(2026, 1, 1),
    }
    figures = run_figures(result)
    assert figures == {"reset": 5000, "failed": 2, "exported": 3, "retryable": True, "route": "r [31m" + "y" * 194}
    assert run_figures(None) is None
    assert run_figures([1, 2]) is None


def test_recent_job_runs_are_the_newest_per_configuration(any_store: TaskStore) -> None:
    engine = any_store.engine
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_job_run"))
    ids = [job_run_started(engine, "route:a", "dag-a", f"run-{n}", "export_route", 1) for n in range(12)]
    other = job_run_started(engine, "incoming:b", "dag-b", "run-x", "run_incoming_configuration", 2)
    job_run_ended(engine, ids[-1], "success", {"exported": 4}, None)
    job_run_ended(engine, other, "failed", None, "SourceError: broken")
    runs = recent_job_runs(engine)
    assert list(runs) == ["incoming:b", "route:a"]
    assert [r["id"] for r in runs["route:a"]] == ids[::-1][:10]
    newest = runs["route:a"][0]
    assert (newest["state"], newest["figures"], newest["ended_at"] is not None) == ("success", {"exported": 4}, True)
    assert runs["route:a"][1]["state"] == "running"
    assert runs["incoming:b"][0]["error"] == "SourceError: broken"
    assert list(recent_job_runs(engine, "route:a", per_configuration=3)) == ["route:a"]
    assert len(recent_job_runs(engine, "route:a", per_configuration=3)["route:a"]) == 3
    assert recent_job_runs(engine, "route:none") == {}
    with pytest.raises(ValueError, match="success, failed or skipped"):
        job_run_ended(engine, other, "running", None, None)


def test_oversized_figures_and_errors_are_cut(any_store: TaskStore) -> None:
    engine = any_store.engine
    row = job_run_started(engine, "route:a", "dag-a", "run-1", "export_route", 1)
    job_run_ended(engine, row, "failed", {f"k{n}": "v" * 100 for n in range(100)}, "e" * 10_000)
    (run,) = recent_job_runs(engine, "route:a", per_configuration=1)["route:a"]
    assert run["figures"] == {"note": "figures of 10891 characters left out"}
    assert len(run["error"]) == 2000 + len("... (cut)")


def test_prune_job_runs_keeps_the_newest_of_each_configuration_and_running_ones(any_store: TaskStore) -> None:
    engine = any_store.engine
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_job_run"))
    old = [job_run_started(engine, "route:a", "dag-a", f"run-{n}", "export_route", 1) for n in range(15)]
    for row in old[1:]:
        job_run_ended(engine, row, "success", None, None)
    few = [job_run_started(engine, "route:b", "dag-b", f"run-{n}", "export_route", 1) for n in range(3)]
    long_ago = dt.datetime(2000, 1, 1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE scheduled_jobs_job_run SET started_at = :t"), {"t": long_ago})
    assert prune_job_runs(engine, dt.datetime(2001, 1, 1), keep=10, batch_size=2) == 4
    left = {r["id"] for r in rows(engine)}
    assert left == {old[0], *old[5:], *few}, "the newest 10 of a, the one still running, and all of b stay"
    assert prune_job_runs(engine, long_ago, keep=10) == 0, "nothing started before the cut-off"
