"""The ``teardown`` guard design in real DAG runs (``dag.test()``): duplicates skipped, waiting deferred, the
exemptions. The default, ``inline``, is tested the same way in test_guard_inline.py."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from airflow.sdk.definitions import dag as dag_module
from conftest import ROOT, connection_json
from helpers.airflow_compat import DagBag, dag_test
from helpers.databases import fresh_database
from helpers.sink import Sink

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger
from scheduled_jobs.store.schema import processes
from scheduled_jobs.triggers.guard import GuardTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ROUTE = "route:orders-to-erp"
OTHER = Holder("nightly-erp-export", "scheduled__2026-11-24T02:00:00+00:00")
WAITER = Holder("manual-erp-export", "manual__2026-11-24T02:01:00+00:00")
STORE_PASSWORD = "pw-that-must-stay-in-the-connection"


@pytest.fixture(autouse=True)
def teardown_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN", "teardown")


def ledger(project: Path) -> ProcessLedger:
    return ProcessLedger(TaskStore.from_url(f"sqlite:///{project / 'store.db'}").engine)


def run_dag(dag_id: str, **kwargs: object) -> tuple[str, dict[str, str]]:
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id)
    run = dag_test(dag, **kwargs)
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
    run = dag_test(dag)
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {k: ti.state for k, ti in instances.items()} == {
        "guard": "success",
        "export_route": "success",
        "release_guard": "success",
    }
    assert instances["export_route"].start_date > left_at[0]  # it waited for the first run to leave
    assert book.skipped(ROUTE) == []
    assert ledger(project).enter(ROUTE, WAITER, dt.timedelta(hours=1)).action == "run"  # released at the end


def test_an_executing_run_renews_its_hold_while_its_destination_holds_it(project: Path, sink: Sink) -> None:
    (project / "configurations" / "outgoing" / "erp-orders-file.yaml").write_text(
        "name: ERP orders file\npublisher:\n  type: http\n  connection: sink\n  endpoint: /orders/{id}\n  timeout_seconds: 60\n"
    )
    store = TaskStore.from_url(f"sqlite:///{project / 'store.db'}")
    store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1"})])
    sink.plan = lambda number, key: "hold"
    during: list[sa.Row[object]] = []

    def look_while_held() -> None:
        sink.held.wait(120)
        with store.engine.connect() as conn:
            during.extend(conn.execute(sa.select(processes)).all())
        sink.release.set()

    threading.Thread(target=look_while_held, daemon=True).start()
    state, tasks = run_dag("orders-to-erp-export")
    assert (state, tasks["export_route"]) == ("success", "success")
    ((row,),) = [during]
    assert row.dag_id == "orders-to-erp-export"
    # The guard took a 60-minute lease; the export renewed it when it began, so it now ends later.
    assert row.lease_expires_at - row.acquired_at > dt.timedelta(minutes=60), row


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
        store_conn_id="scheduled_jobs_store",
        lease_seconds=3600,
        poll_seconds=2,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "scheduled_jobs.triggers.guard.GuardTrigger"
    again = GuardTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


@pytest.fixture
def password_pg_store(postgres_server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.URL]:
    """A fresh PostgreSQL store behind ``scheduled_jobs_store``, whose connection carries a password.

    The server trusts loopback, so the password is never checked: it is only there to be leaked.
    """
    with fresh_database(postgres_server_url, "sj_guard") as database:
        url = database.set(password=STORE_PASSWORD)
        monkeypatch.setenv(
            "AIRFLOW_CONN_SCHEDULED_JOBS_STORE", connection_json(url.render_as_string(hide_password=False))
        )
        yield url


@pytest.mark.postgres
def test_a_waiting_runs_trigger_carries_the_connection_id_never_the_password(
    project: Path, password_pg_store: sa.URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS", "0.2")
    book = ProcessLedger(TaskStore.from_url(password_pg_store).engine)
    book.enter(ROUTE, OTHER, dt.timedelta(hours=1))
    serialized: list[tuple[str, dict[str, object]]] = []
    run_inline = dag_module._run_inline_trigger

    def record(trigger: GuardTrigger, ti: object) -> object:
        # The trigger as Airflow rebuilt it from the deferral: what the trigger table would hold.
        serialized.append(trigger.serialize())
        book.leave(OTHER)  # the running run ends: the trigger resolves the store and hands over the slot
        return run_inline(trigger, ti)

    monkeypatch.setattr(dag_module, "_run_inline_trigger", record)
    state, tasks = run_dag("orders-to-erp-export")
    assert (state, tasks["guard"], tasks["export_route"]) == ("success", "success", "success")
    ((classpath, kwargs),) = serialized
    assert classpath == "scheduled_jobs.triggers.guard.GuardTrigger"
    assert STORE_PASSWORD not in json.dumps(kwargs)
    assert kwargs["store_conn_id"] == "scheduled_jobs_store"
