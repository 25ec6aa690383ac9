"""The ``inline`` guard design (``[scheduled_jobs] guard_design = inline``, the default) in real DAG runs (``dag.test()``).

The work task applies the duplicate rule itself: one task instance per run instead of three. The same
rule as the ``guard`` sensor (tests/test_guard.py): a duplicate is skipped and says of which run, a
second run waits in the triggerer and executes after the first, webhooks and the switch bypass it. The
hold is freed in the work's own ``finally``, after a failed run too; the crash of its process is
tests/test_scheduler_inline_crash.py.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest
from conftest import ROOT
from helpers.airflow_compat import DagBag, dag_test

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger

if TYPE_CHECKING:
    from pathlib import Path

ROUTE = "route:orders-to-erp"
INCOMING = "incoming:shop-orders"
OTHER = Holder("nightly-erp-export", "scheduled__2026-11-24T02:00:00+00:00")
WAITER = Holder("manual-erp-export", "manual__2026-11-24T02:01:00+00:00")
LEASE = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN", "inline")


def ledger(project: Path) -> ProcessLedger:
    return ProcessLedger(TaskStore.from_url(f"sqlite:///{project / 'store.db'}").engine)


def held(project: Path) -> list[tuple[str, str, str]]:
    """What the ledger holds: (configuration, slot, dag_id)."""
    import sqlalchemy as sa

    from scheduled_jobs.store.schema import processes

    with ledger(project).engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(sa.select(processes.c.configuration, processes.c.slot, processes.c.dag_id))
        ]


def run_dag(dag_id: str, **kwargs: object) -> tuple[str, dict[str, str]]:
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id)
    run = dag_test(dag, **kwargs)
    return run.state, {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_the_work_task_is_the_guard(project: Path) -> None:
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    export = bag.get_dag("orders-to-erp-export")
    assert [t.task_id for t in export.tasks] == ["export_route"]
    work = export.get_task("export_route")
    assert (work.configuration, work.inline_guard, work.priority_weight) == (ROUTE, "buffer_one", 5)

    incoming = bag.get_dag("shop-orders-incoming")
    assert sorted(t.task_id for t in incoming.tasks) == [
        "export_orders-to-erp",
        "run_incoming_configuration",
        "watcher",
    ]
    assert incoming.get_task("run_incoming_configuration").inline_guard == "buffer_one"
    # The real-time export after it is not guarded itself: it runs outside the incoming configuration's hold.
    assert incoming.get_task("export_orders-to-erp").inline_guard is None
    assert [t.task_id for t in bag.get_dag("repair-stuck-tasks").tasks] == ["repair_stuck_tasks"]


def test_the_default_design_is_inline_and_teardown_is_a_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN")
    export = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export")
    assert [t.task_id for t in export.tasks] == ["export_route"]
    assert export.get_task("export_route").inline_guard == "buffer_one"
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN", "teardown")
    export = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export")
    assert sorted(t.task_id for t in export.tasks) == ["export_route", "guard", "release_guard"]
    assert export.get_task("export_route").inline_guard is None


def test_a_third_run_is_skipped_as_a_duplicate_and_says_of_which(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    book = ledger(project)
    book.enter(ROUTE, OTHER, LEASE)
    book.enter(ROUTE, WAITER, LEASE)
    assert run_dag("orders-to-erp-export") == ("success", {"export_route": "skipped"})
    (skipped,) = book.skipped(ROUTE)
    assert (skipped["dag_id"], skipped["duplicate_of_dag_id"], skipped["duplicate_of_run_id"]) == (
        "orders-to-erp-export",
        WAITER.dag_id,
        WAITER.run_id,
    )
    assert f"Skipped as a duplicate: route:orders-to-erp already has a run waiting ({WAITER})" in capfd.readouterr().out
    assert sorted(held(project)) == [(ROUTE, "running", OTHER.dag_id), (ROUTE, "waiting", WAITER.dag_id)]


def test_a_waiting_run_defers_and_executes_after_the_first(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    book = ledger(project)
    book.enter(ROUTE, OTHER, LEASE)
    left_at: list[dt.datetime] = []
    during: list[list[tuple[str, str, str]]] = []

    def first_run_finishes() -> None:
        # The first run leaves once the second has entered as waiting (a fixed sleep lost that race on a loaded
        # machine, before the second run had even been parsed); if it never waits, the snapshot says so.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(held(project)) < 2:
            time.sleep(0.1)
        time.sleep(1)  # and keeps its hold a while longer: the waiting run must not go on meanwhile
        during.append(held(project))  # the second run waits in its slot meanwhile
        left_at.append(dt.datetime.now(dt.UTC))
        book.leave(OTHER)

    threading.Thread(target=first_run_finishes, daemon=True).start()
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export")
    run = dag_test(dag)
    (work,) = run.get_task_instances()
    assert (run.state, work.state) == ("success", "success")
    assert during == [[(ROUTE, "running", OTHER.dag_id), (ROUTE, "waiting", "orders-to-erp-export")]]
    assert work.end_date > left_at[0]  # it executed once the first run had left
    assert book.skipped(ROUTE) == []
    assert held(project) == []  # released in its own finally


def test_a_job_disabled_while_its_run_waits_skips_when_it_resumes_and_holds_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A definition set to ``disabled: true`` while a run waits (the worker builds the task again from the
    file when it resumes): the resumed task does no work, says why, and frees the slot it was handed."""
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    book = ledger(project)
    book.enter(ROUTE, OTHER, LEASE)
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export")

    def disabled_then_first_run_finishes() -> None:
        deadline = time.monotonic() + 120
        while (ROUTE, "waiting", "orders-to-erp-export") not in held(project) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the run waits (deferred)
        dag.get_task("export_route").disabled = True  # what the worker's new parse of the edited file holds
        book.leave(OTHER)

    threading.Thread(target=disabled_then_first_run_finishes, daemon=True).start()
    run = dag_test(dag)
    (work,) = run.get_task_instances()
    assert (run.state, work.state) == ("success", "skipped")
    assert held(project) == []
    assert not (project / "data" / "outbox" / "erp-orders").exists()


def test_a_waiting_run_whose_hold_was_freed_skips_with_the_reason_and_takes_no_slot(
    project: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 22, items 1 and 11: a run's worker freed the waiting run's hold (its job was paused), then the
    running run left. The waiting run's trigger must not take the free slot: the task ends skipped, says why,
    and executes nothing."""
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    book = ledger(project)
    book.enter(ROUTE, OTHER, LEASE)
    me = "orders-to-erp-export"

    def paused_then_first_run_finishes() -> None:
        deadline = time.monotonic() + 120
        while (ROUTE, "waiting", me) not in held(project) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the run waits (deferred)
        book.clear_stale(
            ROUTE,
            lambda dag_id, run_id: True,
            lambda dag_id, run_id: f"the job {me} is paused in Airflow" if dag_id == me else None,
        )
        book.leave(OTHER)

    threading.Thread(target=paused_then_first_run_finishes, daemon=True).start()
    state, tasks = run_dag(me)
    assert (state, tasks["export_route"]) == ("success", "skipped")
    assert f"was freed: the job {me} is paused in Airflow" in capfd.readouterr().out
    assert held(project) == []
    assert not (project / "data" / "outbox" / "erp-orders").exists()
    (freed,) = book.skipped(ROUTE)
    assert freed["dag_id"] == me


def test_the_hold_is_released_after_a_failed_work_and_the_realtime_export_still_runs(project: Path) -> None:
    inbox = project / "data" / "inbox" / "shop-orders"
    (inbox / "orders-0000.json").write_text('{"orders": [{"id": "SO-9"}, ', encoding="utf-8")
    os.utime(inbox / "orders-0000.json", (time.time() - 60, time.time() - 60))  # settled: no longer written
    state, tasks = run_dag("shop-orders-incoming")
    assert (state, tasks) == (
        "failed",
        {"run_incoming_configuration": "failed", "export_orders-to-erp": "success", "watcher": "failed"},
    )
    assert held(project) == []
    assert ledger(project).enter(INCOMING, WAITER, LEASE).action == "run"


def test_a_duplicate_incoming_run_skips_its_realtime_export_and_the_watcher(project: Path) -> None:
    book = ledger(project)
    book.enter(INCOMING, OTHER, LEASE)
    book.enter(INCOMING, WAITER, LEASE)
    assert run_dag("shop-orders-incoming") == (
        "success",
        {"run_incoming_configuration": "skipped", "export_orders-to-erp": "skipped", "watcher": "skipped"},
    )
    assert not (project / "data" / "outbox" / "erp-orders").exists()


@pytest.mark.parametrize(
    ("setting", "conf"),
    [({"AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES": "false"}, None), ({}, {"trigger": "webhook"})],
)
def test_the_switch_and_webhooks_bypass_the_rule(
    project: Path, monkeypatch: pytest.MonkeyPatch, setting: dict[str, str], conf: dict[str, str] | None
) -> None:
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    book = ledger(project)
    book.enter(ROUTE, OTHER, LEASE)
    book.enter(ROUTE, WAITER, LEASE)
    assert run_dag("orders-to-erp-export", run_conf=conf) == ("success", {"export_route": "success"})
    assert book.skipped(ROUTE) == []
    assert len(held(project)) == 2  # the others' holds stay as they were


def test_a_disabled_job_skips_before_it_takes_anything(project: Path) -> None:
    definition = project / "job_definitions" / "orders-to-erp-export.yaml"
    definition.write_text(definition.read_text() + "disabled: true\n")
    assert run_dag("orders-to-erp-export") == ("success", {"export_route": "skipped"})
    assert held(project) == []
    assert ledger(project).skipped(ROUTE) == []


@pytest.mark.parametrize(
    ("try_number", "max_tries", "failure", "kept"),
    [
        (1, 0, RuntimeError("destination down"), False),  # no retries: the run is over
        (1, 2, RuntimeError("destination down"), True),  # Airflow tries again: the retry finds its hold
        (3, 2, RuntimeError("destination down"), False),  # the last try
        (3, 4, RuntimeError("destination down"), True),  # a user cleared the failed task: max_tries grew
        (1, 2, None, False),  # success
    ],
)
def test_a_failed_try_keeps_its_hold_exactly_when_airflow_will_try_again(
    project: Path, try_number: int, max_tries: int, failure: Exception | None, kept: bool
) -> None:
    """Airflow's own rule (``try_number <= max_tries``), not the operator's ``retries``, which a clear does
    not raise."""
    from types import SimpleNamespace

    book = ledger(project)
    me = Holder("orders-to-erp-export", "manual__2026-12-06T00:00:00+00:00")
    book.enter(ROUTE, me, LEASE)
    task = DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-erp-export").get_task("export_route")
    task.retries = 2  # what the operator says; Airflow's max_tries decides
    context = {
        "dag": SimpleNamespace(dag_id=me.dag_id),
        "run_id": me.run_id,
        "ti": SimpleNamespace(try_number=try_number, max_tries=max_tries),
    }
    task._release(context, may_retry=failure is not None)
    assert held(project) == ([(ROUTE, "running", me.dag_id)] if kept else [])


SECOND = "orders-to-erp-second"
SECOND_YAML = """name: Orders to ERP second
identifier: orders-to-erp-second
job: outgoing
route: orders-to-erp
expression: "0 3 * * *"
"""


@pytest.mark.timeout(180)  # before the fix the next run waited with no end: Airflow still had the holder running
@pytest.mark.parametrize("change", ["deleted", "renamed", "disabled"])
def test_the_hold_of_a_run_whose_job_was_deleted_renamed_or_disabled_is_freed(
    project: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Issue 22, item 1: a run of another job of the same route keeps its hold (Airflow has it running, its
    task waiting for a retry, so nothing of it is queued or running). Then its job's file is deleted, its
    identifier changed, or it is disabled: Airflow queues no task of it any more, so its hold must not keep
    the route. The next run of the route executes at once, and the freed hold is recorded with the reason.
    Before the fix the next run waited for the lease (60 s here) and the record said nothing of the job."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    definition = project / "job_definitions" / f"{SECOND}.yaml"
    definition.write_text(SECOND_YAML)
    run = dag_test(DagBag(dag_folder=str(ROOT / "dags")).get_dag(SECOND))
    assert run.state == "success"
    with create_session() as session:  # as if its task failed and waits for a retry: the run still runs
        session.query(DagRun).filter_by(dag_id=SECOND, run_id=run.run_id).update({"state": "running"})
        session.query(TaskInstance).filter_by(dag_id=SECOND, run_id=run.run_id).update({"state": "up_for_retry"})
    book = ledger(project)
    book.enter(ROUTE, Holder(SECOND, run.run_id), dt.timedelta(seconds=60))
    assert shown_on_the_processes_page(book) == [SECOND]  # a job that may still retry keeps its hold there
    if change == "deleted":
        definition.unlink()
        reason = f"the job {SECOND} is no longer defined"
    elif change == "renamed":
        definition.write_text(SECOND_YAML.replace(f"identifier: {SECOND}", "identifier: orders-to-erp-third"))
        reason = f"the job {SECOND} is no longer defined"
    else:
        definition.write_text(SECOND_YAML + "disabled: true\n")
        reason = f"the job {SECOND} is disabled"
    assert shown_on_the_processes_page(book) == []  # its hold keeps nothing: the page shows none
    started = time.monotonic()
    assert run_dag("orders-to-erp-export") == ("success", {"export_route": "success"})
    assert time.monotonic() - started < 45, "the run waited for the lease instead"
    assert held(project) == []
    (freed,) = book.skipped(ROUTE)
    assert freed["dag_id"] == SECOND and reason in str(freed["reason"]), freed


def shown_on_the_processes_page(book: ProcessLedger) -> list[str]:
    """The DAG ids of the holds the Processes page shows for the route (its rows, as the page builds them)."""
    from scheduled_jobs.catalog import load_catalog
    from scheduled_jobs.web.overview import process_rows

    (row,) = [row for row in process_rows(book.engine, load_catalog()) if row.configuration == ROUTE]
    return [holder.dag_id for holder in (row.running, row.waiting) if holder is not None]
