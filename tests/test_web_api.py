"""The plugin's app inside a real Airflow API server (Airflow's own ``create_app``, served by uvicorn on
loopback in this process): authentication on every route, the figures against the store, the webhooks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import hypothesis
import pytest
import sqlalchemy as sa
from conftest import _HOME, ROOT
from helpers import hostile
from helpers.live_api import PREFIX, Server, store_of, token_for
from hypothesis import strategies as st

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.processes import Holder, ProcessLedger
from scheduled_jobs.store.schema import tasks

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi import FastAPI
    from helpers.sink import Sink

HOUR = dt.timedelta(hours=1)


def plugin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the plugin's app serves, path parameters filled in."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from scheduled_jobs.web.plugin import LazyApp

    (mount,) = [r for r in app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert isinstance(mount.app, LazyApp)
    found = []
    for route in mount.app.get().routes:
        assert isinstance(route, APIRoute), f"{route} is not an API route: it would escape the auth dependency"
        path = re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "task_id" else "shop-orders", route.path)
        found.extend((method, PREFIX + path) for method in sorted(route.methods))
    return found


# -- authentication -------------------------------------------------------------------------------------


def test_every_route_refuses_a_request_without_a_valid_token(server: Server, project: Path) -> None:
    routes = plugin_routes(server.app)
    assert len(routes) >= 13, routes
    forged = token_for(server, "admin")[:-4] + "AAAA"
    for method, path in routes:
        bare = httpx.request(method, server.url + path, json={"id": 1}, timeout=10)
        assert bare.status_code == 401, (method, path, bare.status_code, bare.text)
        bad = httpx.request(
            method, server.url + path, json={"id": 1}, headers={"Authorization": f"Bearer {forged}"}, timeout=10
        )
        assert bad.status_code == 403, (method, path, bad.status_code, bad.text)
        cookie = httpx.request(method, server.url + path, json={"id": 1}, cookies={"_token": forged}, timeout=10)
        assert cookie.status_code == 403, (method, path, cookie.status_code, cookie.text)
    assert store_of(project).counts()["new"] == 0, "a refused webhook stored something"


def test_no_unauthenticated_openapi_or_docs(server: Server) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(server.url + PREFIX + path, timeout=10).status_code in (401, 404)


def test_a_viewer_reads_pages_but_may_not_push_to_a_webhook(
    server: Server, tokens: dict[str, str], project: Path
) -> None:
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert httpx.get(f"{server.url}{PREFIX}/jobs", headers=viewer, timeout=30).status_code == 200
    pushed = httpx.post(f"{server.url}{PREFIX}/webhooks/shop-orders", json={"id": 1}, headers=viewer, timeout=30)
    assert pushed.status_code == 403
    assert "trigger DAG runs" in pushed.json()["detail"]
    as_user = {"Authorization": f"Bearer {tokens['user']}"}
    pushed = httpx.post(f"{server.url}{PREFIX}/webhooks/shop-orders", json={"id": 1}, headers=as_user, timeout=30)
    assert pushed.status_code == 202, pushed.text


def test_the_ui_session_cookie_is_accepted(server: Server, tokens: dict[str, str], project: Path) -> None:
    answer = httpx.get(f"{server.url}{PREFIX}/jobs", cookies={"_token": tokens["viewer"]}, timeout=30)
    assert answer.status_code == 200
    assert "Orders to ERP export" in answer.text


def test_plugin_registers_its_pages_in_airflows_navigation(client: httpx.Client, server: Server) -> None:
    plugins = client.get(f"{server.url}/api/v2/plugins").json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "scheduled_jobs"]
    views = {v["name"]: (v["href"], v["url_route"]) for v in ours["external_views"]}
    assert views == {
        "Scheduled": ("scheduled-jobs/jobs", "scheduled-jobs-jobs"),  # the sidebar's one line: see NAV_LABEL
        "Cron checker": ("scheduled-jobs/cron", "scheduled-jobs-cron"),
        "Tasks": ("scheduled-jobs/tasks", "scheduled-jobs-tasks"),
        "Processes": ("scheduled-jobs/processes", "scheduled-jobs-processes"),
    }
    # Its own icon, as an image Airflow can show without a request (not the Plugins icon).
    assert {(v["icon"][:25], v["icon_dark_mode"][:25]) for v in ours["external_views"]} == {
        ("data:image/svg+xml,%3Csvg", "data:image/svg+xml,%3Csvg")
    }


# -- scheduled jobs -----------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_jobs_list_every_job_with_fire_times_in_its_timezone_and_invalid_files(
    client: httpx.Client, project: Path
) -> None:
    _write(
        project / "job_definitions" / "night.yaml",
        "name: Night repair\njob: repair_stuck_tasks\nexpression: '30 2 * * *'\ntimezone: Europe/Amsterdam\n"
        "priority: 7\n",
    )
    _write(
        project / "job_definitions" / "broken.yaml",
        "name: Broken\njob: outgoing\nroute: nope\nexpression: '61 * * * *'\n",
    )
    answer = client.get("/api/jobs").json()
    jobs = {job["identifier"]: job for job in answer["jobs"]}
    night = jobs["night-repair"]
    assert night["expression_description"] == "At 02:30"
    assert (night["priority"], night["disabled"], night["overlap"], night["job"]) == (
        7,
        False,
        None,
        "repair_stuck_tasks",
    )
    fires = [dt.datetime.fromisoformat(f["at"]) for f in night["next_fire_times"]]
    assert len(fires) == 5
    assert all(
        (f.hour, f.minute) == (2, 30) and f.utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2)) for f in fires
    )
    assert jobs["orders-to-erp-export"]["target"] == "orders-to-erp"
    assert jobs["orders-to-erp-export"]["overlap"] == "buffer_one"
    assert "broken" not in jobs
    reasons = {(p["key"], p["reason"]) for p in answer["invalid"] if p["path"].endswith("broken.yaml")}
    assert ("expression", "minute: 61 is out of range 0-59") in reasons
    assert any(key == "route" and "no route has identifier 'nope'" in reason for key, reason in reasons)


def test_the_jobs_page_counts_invalid_files_and_groups_their_problems(client: httpx.Client, project: Path) -> None:
    _write(
        project / "job_definitions" / "broken.yaml",
        "name: Broken\njob: outgoing\nroute: nope\nexpression: '61 * * * *'\ntasks_to_export: 0\n",
    )
    _write(
        project / "job_definitions" / "typo.yaml",
        "name: Typo\njob: repair_stuck_tasks\nexpression: '@daily'\nprority: 3\n",
    )
    problems = client.get("/api/jobs").json()["invalid"]
    assert len(problems) == 4  # the API keeps one entry per problem
    page = client.get("/jobs").text
    assert "<h2>Invalid definitions (2 files)</h2>" in page
    sections = re.findall(r'<section class="invalid-file">(.*?)</section>', page, re.S)
    files = {re.search(r"<code>(.*?)</code>", s).group(1): re.findall(r"<li><code>(.*?)</code>", s) for s in sections}  # type: ignore[union-attr]
    assert files == {
        str(project / "job_definitions" / "broken.yaml"): ["expression", "route", "tasks_to_export"],
        str(project / "job_definitions" / "typo.yaml"): ["prority"],
    }
    assert "3 problems" in sections[0] and "1 problem<" in sections[1]


def test_jobs_mark_dst_shifts_in_the_next_fire_times(client: httpx.Client, project: Path) -> None:
    # Every day at 02:30 in Amsterdam: on the last Sunday of March that time does not exist.
    _write(
        project / "job_definitions" / "dst.yaml",
        "name: DST job\njob: repair_stuck_tasks\nexpression: '30 2 * 3 0'\ntimezone: Europe/Amsterdam\n",
    )
    (job,) = list(client.get("/api/jobs", params={"name": "dst"}).json()["jobs"])
    notes = [f["note"] for f in job["next_fire_times"] if f["note"]]
    assert any("DST" in note and "does not exist" in note for note in notes), job["next_fire_times"]
    page = client.get("/jobs", params={"name": "dst"}).text
    assert "clocks go forward" in page


def test_jobs_filters_by_name_job_type_and_status(client: httpx.Client, project: Path) -> None:
    _write(
        project / "job_definitions" / "off.yaml",
        "name: Switched off\ndisabled: true\njob: repair_stuck_tasks\nexpression: '0 * * * *'\n",
    )

    def identifiers(**params: str) -> set[str]:
        return {job["identifier"] for job in client.get("/api/jobs", params=params).json()["jobs"]}

    everything = identifiers()
    disabled = {job["identifier"] for job in client.get("/api/jobs").json()["jobs"] if job["disabled"]}
    assert "switched-off" in disabled and len(everything) >= 5
    assert identifiers(status="disabled") == disabled
    assert identifiers(status="enabled") == everything - disabled
    assert identifiers(job="outgoing") == {j for j in everything if "export" in j}
    assert identifiers(name="ORDERS") == {j for j in everything if "orders" in j}
    page = client.get("/jobs", params={"status": "disabled"}).text
    assert 'data-identifier="switched-off"' in page
    assert 'data-identifier="orders-to-erp-export"' not in page
    assert 'href="../dags/switched-off" data-airflow' in page


def test_jobs_count_runs_skipped_as_duplicates(client: httpx.Client, project: Path) -> None:
    ledger = ProcessLedger(store_of(project).engine)
    configuration = "route:orders-to-erp"
    ledger.enter(configuration, Holder("orders-to-erp-export", "r1"), HOUR)
    ledger.enter(configuration, Holder("orders-to-erp-export", "r2"), HOUR)
    ledger.enter(configuration, Holder("orders-to-erp-export", "r3"), HOUR)
    ledger.enter(configuration, Holder("orders-to-erp-export", "r4"), HOUR)
    jobs = {job["identifier"]: job for job in client.get("/api/jobs").json()["jobs"]}
    assert jobs["orders-to-erp-export"]["skipped_duplicates"] == 2


# -- cron checker --------------------------------------------------------------------------------------


def test_cron_checker_valid_expression(client: httpx.Client) -> None:
    answer = client.get("/api/cron", params={"expression": "*/15 9-17 * * MON-FRI", "timezone": "Europe/Amsterdam"})
    body = answer.json()
    assert body["valid"] is True and body["errors"] == []
    assert body["description"] == "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"
    assert len(body["next_fire_times"]) == 10
    first = dt.datetime.fromisoformat(body["next_fire_times"][0]["at"])
    assert first.minute % 15 == 0 and 9 <= first.hour <= 17 and first.weekday() < 5


def test_cron_checker_names_the_field_and_the_reason(client: httpx.Client) -> None:
    body = client.get("/api/cron", params={"expression": "0 25 * * *", "timezone": "Europe/Amsterdm"}).json()
    assert body["valid"] is False
    assert body["errors"][0] == "expression: hour: 25 is out of range 0-23"
    assert body["errors"][1].startswith("timezone: 'Europe/Amsterdm' is not an IANA time zone name")
    assert "did you mean 'Europe/Amsterdam'" in body["errors"][1]
    page = client.get("/cron", params={"expression": "0 25 * * *", "timezone": "UTC"}).text
    assert "hour: 25 is out of range 0-23" in page and "invalid" in page


# -- tasks -----------------------------------------------------------------------------------------


def _seed_tasks(store: TaskStore) -> dict[str, list[int]]:
    """On orders-to-erp: 3 new, 2 stuck in processing, 1 processing now, 4 failed, 1 finished."""
    route = "orders-to-erp"
    records = [
        (f"order-{n}", {"id": n, "note": "<script>alert('x')</script>" if n == 1 else "plain"}) for n in range(11)
    ]
    created = store.add_entities([route], records, return_ids=True).task_ids
    stuck = store.claim(route, 2)
    fresh = store.claim(route, 1)
    failing = store.claim(route, 4)
    for number, task in enumerate(failing):
        store.fail(task, f"HTTP 500 from the ERP <b>#{number}</b>")
    (done,) = store.claim(route, 1)
    store.finish(done)
    long_ago = dt.datetime(2026, 1, 1)
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id.in_([t.id for t in stuck])).values(claimed_at=long_ago))
    return {
        "created": created,
        "stuck": [t.id for t in stuck],
        "fresh": [t.id for t in fresh],
        "failed": [t.id for t in failing],
    }


def test_tasks_figures_match_the_store(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = _seed_tasks(store)
    routes = {row["route"]: row for row in client.get("/api/routes").json()["routes"]}
    row = routes["orders-to-erp"]
    assert (
        row["counts"]
        == store.counts("orders-to-erp")
        == {"new": 3, "processing": 3, "finished": 1, "failed": 4, "skipped": 0}
    )
    assert row["stuck"] == 2
    assert row["oldest_new_age_seconds"] is not None and 0 <= row["oldest_new_age_seconds"] < 120
    assert routes["products-to-webshop"]["counts"]["new"] == 0
    stuck = client.get("/api/routes/orders-to-erp/stuck").json()
    assert [t["id"] for t in stuck["rows"]] == seeded["stuck"]
    first = client.get("/api/routes/orders-to-erp/errors", params={"size": 3}).json()
    second = client.get("/api/routes/orders-to-erp/errors", params={"size": 3, "page": 2}).json()
    assert (first["total"], first["pages"], len(first["rows"]), len(second["rows"])) == (4, 2, 3, 1)
    assert sorted(t["id"] for t in first["rows"] + second["rows"]) == sorted(seeded["failed"])
    page = client.get("/tasks", params={"route": "orders-to-erp"}).text
    assert re.search(r'data-route="orders-to-erp">.*?count-new">3<.*?count-failed">4<.*?stuck">2<', page, re.S)
    assert "&lt;b&gt;#0&lt;/b&gt;" in page and "<b>#0</b>" not in page


def test_a_tasks_payload_and_error_open_escaped(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = _seed_tasks(store)
    first = seeded["created"][1]  # entity order-1 carries a <script>; it is among the stuck tasks
    detail = client.get(f"/api/tasks/{first}").json()
    assert detail["payload"] == {"id": 1, "note": "<script>alert('x')</script>"}
    assert "claim_token" not in detail
    page = client.get(f"/tasks/{first}").text
    assert "&lt;script&gt;alert(" in page and "<script>alert" not in page
    failed = client.get(f"/tasks/{seeded['failed'][0]}").text
    assert "HTTP 500 from the ERP &lt;b&gt;#0&lt;/b&gt;" in failed
    assert client.get("/tasks/999999").status_code == 404


# -- processes -----------------------------------------------------------------------------------------


def test_processes_show_the_run_executing_waiting_and_skipped(client: httpx.Client, any_store: TaskStore) -> None:
    ledger = ProcessLedger(any_store.engine)
    configuration = "incoming:shop-orders"
    # Runs of a defined job: a hold of a job no file defines any more is not shown (tests/test_guard_inline.py).
    ledger.enter(configuration, Holder("shop-orders-incoming", "run-1"), HOUR)
    ledger.enter(configuration, Holder("shop-orders-incoming", "run-2"), HOUR)
    ledger.enter(configuration, Holder("shop-orders-incoming", "run-3"), HOUR)
    rows = {row["configuration"]: row for row in client.get("/api/processes").json()["processes"]}
    row = rows[configuration]
    assert (row["running"]["run_id"], row["waiting"]["run_id"], row["skipped"]) == ("run-1", "run-2", 1)
    assert rows["route:orders-to-erp"]["running"] is None
    (skipped,) = client.get("/api/processes/skipped", params={"configuration": configuration}).json()["rows"]
    assert skipped["duplicate_of_run_id"] == "run-2"
    assert "already has a run waiting" in skipped["reason"]
    page = client.get("/processes").text
    assert "run-1" in page and "run-2" in page and "already has a run waiting" in page


# -- webhooks ----------------------------------------------------------------------------------------


ROUTE_ASSET = "x-scheduled-jobs://routes/orders-to-erp"
REALTIME_DAG = "realtime_export.orders-to-erp"


@pytest.fixture
def dags_in_airflow(project: Path) -> None:
    """The project's DAGs parsed and stored in Airflow's metadata database, as the dag-processor does.

    Only then does Airflow know the routes' assets, so that a webhook can record an event on one.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from helpers.airflow_compat import DagBag, sync_bag_to_db

    from scheduled_jobs.factory import build_dags

    assert REALTIME_DAG in build_dags(), "the real-time route has no DAG of its own"
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(ROOT / "dags")), "dags-folder", None)


def asset_events(uri: str = ROUTE_ASSET) -> tuple[int, int]:
    """(events recorded on the asset, runs of its DAG queued by Airflow) in the metadata database."""
    engine = sa.create_engine(f"sqlite:///{_HOME / 'airflow.db'}")
    try:
        with engine.connect() as conn:
            events = conn.execute(
                sa.text("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = :uri"),
                {"uri": uri},
            ).scalar_one()
            queued = conn.execute(
                sa.text(
                    "SELECT count(*) FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id "
                    "WHERE a.uri = :uri AND q.target_dag_id = :dag"
                ),
                {"uri": uri, "dag": REALTIME_DAG},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(events), int(queued)


def _realtime_http_route(project: Path, timeout_seconds: int = 30) -> None:
    """Point the real-time route orders-to-erp at the loopback sink (connection ``sink``)."""
    _write(
        project / "configurations" / "outgoing" / "erp-orders-file.yaml",
        "name: ERP orders API\nidentifier: erp-orders-file\npublisher:\n  type: http\n  connection: sink\n"
        f"  endpoint: /orders\n  timeout_seconds: {timeout_seconds}\n  retry: {{attempts: 1}}\n",
    )


def test_webhook_stores_entities_and_hands_realtime_routes_to_airflow(
    client: httpx.Client, project: Path, sink: Sink, dags_in_airflow: None
) -> None:
    _realtime_http_route(project)
    events_before, _ = asset_events()
    orders = [{"id": 101, "total": 10}, {"id": 102, "total": 20}]
    answer = client.post("/webhooks/shop-orders", json=orders)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["routes"], body["realtime_routes"], body["tasks_created"]) == (["orders-to-erp"], ["orders-to-erp"], 2)
    (handed,) = body["realtime_exports"]
    assert (handed["route"], handed["dag_id"], handed["asset"]) == ("orders-to-erp", REALTIME_DAG, ROUTE_ASSET)
    assert isinstance(handed["asset_event_id"], int), handed
    store = store_of(project)
    rows = {row["id"]: row for row in store.list_tasks("orders-to-erp")}
    assert sorted(rows) == sorted(body["task_ids"])
    assert {rows[i]["entity_key"] for i in body["task_ids"]} == {"101", "102"}
    events, queued = asset_events()
    assert (events - events_before, queued) == (1, 1), "the export is Airflow's: one asset event, one run queued"
    time.sleep(1)
    assert sink.attempts == {}, "the API server itself delivered"
    assert store.counts("orders-to-erp")["new"] == 2
    again = client.post("/webhooks/shop-orders", json={"id": 101, "total": 10}).json()
    assert (again["task_ids"], again["unchanged"]) == ([], 1), "the entity-key rule: same content, no new task"
    assert again["realtime_exports"] == [], "nothing new, nothing to hand over"
    assert asset_events()[0] == events


def the_one_realtime_export(client: httpx.Client, entity_id: str) -> dict[str, Any]:
    """Push one shop order; the webhook answers 202 and hands over (or not) the one real-time route."""
    answer = client.post("/webhooks/shop-orders", json={"id": entity_id})
    assert answer.status_code == 202, answer.text
    (handed,) = answer.json()["realtime_exports"]
    return dict(handed)


def test_a_webhook_to_a_paused_realtime_dag_says_no_export_was_queued(
    client: httpx.Client, project: Path, dags_in_airflow: None
) -> None:
    """Airflow queues no run for an event on the asset of a paused DAG: the 202 must not read as "handed over"."""
    engine = sa.create_engine(f"sqlite:///{_HOME / 'airflow.db'}")

    def mark_dag(is_paused: int, is_stale: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE dag SET is_paused = :paused, is_stale = :stale WHERE dag_id = :dag"),
                {"paused": is_paused, "stale": is_stale, "dag": REALTIME_DAG},
            )

    steps = [
        (
            {"is_paused": 1, "is_stale": 0},
            "paused-1",
            f"the DAG {REALTIME_DAG} is paused in Airflow, so no export run was queued; the tasks stay new "
            "until it is unpaused and a later webhook or the route's next export sends them",
        ),
        (
            # The route stopped being real-time: its DAG is gone from the files, Airflow marks it stale.
            {"is_paused": 0, "is_stale": 1},
            "gone-1",
            f"Airflow has no active DAG {REALTIME_DAG} (not parsed yet, or removed), so no export run was queued; "
            "the tasks stay new for the route's next export",
        ),
    ]
    try:
        for new_tasks, (dag_flags, entity_id, problem) in enumerate(steps, start=1):
            mark_dag(**dag_flags)
            handed = the_one_realtime_export(client, entity_id)
            assert handed.get("problem") == problem, handed
            assert store_of(project).counts("orders-to-erp")["new"] == new_tasks
    finally:
        mark_dag(is_paused=0, is_stale=0)
        engine.dispose()


def test_a_webhook_to_a_realtime_route_airflow_has_not_parsed_yet_stores_and_says_so(
    client: httpx.Client, project: Path
) -> None:
    """A route made real-time a moment ago: no DAG, no asset in Airflow yet. 202, the tasks stored, a problem."""
    _write(
        project / "configurations" / "routes" / "orders-to-archive.yaml",
        "name: Orders to archive\nincoming_configuration: shop-orders\noutgoing_configuration: erp-orders-file\n"
        "realtime: true\n",
    )
    answer = client.post("/webhooks/shop-orders", json={"id": "fresh-1"})
    assert answer.status_code == 202, answer.text
    handed = {row["route"]: row for row in answer.json()["realtime_exports"]}
    fresh = handed["orders-to-archive"]
    assert fresh["asset_event_id"] is None
    assert fresh["problem"] == (
        "Airflow does not know the asset x-scheduled-jobs://routes/orders-to-archive yet (the DAG files have not "
        "been parsed since the route became real-time); the tasks stay new for the route's next export"
    )
    assert store_of(project).counts("orders-to-archive")["new"] == 1


def test_a_held_destination_and_50_webhooks_never_starve_the_api_server(
    server: Server, tokens: dict[str, str], project: Path, sink: Sink, dags_in_airflow: None
) -> None:
    """The issue's attack: a destination that never answers, and webhooks from one User, one after another."""
    _realtime_http_route(project, timeout_seconds=120)
    sink.plan = lambda number, key: "hold"
    events_before, _ = asset_events()
    user = {"Authorization": f"Bearer {tokens['user']}"}
    slowest = 0.0
    for number in range(50):
        started = time.monotonic()
        pushed = httpx.post(
            f"{server.url}{PREFIX}/webhooks/shop-orders", json={"id": f"SO-{number}"}, headers=user, timeout=10
        )
        slowest = max(slowest, time.monotonic() - started)
        assert pushed.status_code == 202, (number, pushed.text)
    assert slowest < 2, f"a webhook took {slowest:.1f} s"
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for path in ("/api/v2/version", f"{PREFIX}/api/routes", "/api/v2/version", f"{PREFIX}/api/routes"):
        started = time.monotonic()
        answer = httpx.get(server.url + path, headers=admin, timeout=10)
        took = time.monotonic() - started
        assert answer.status_code == 200, (path, answer.text)
        assert took < 2, f"{path} answered in {took:.1f} s"
    routes = {
        row["route"]: row for row in httpx.get(f"{server.url}{PREFIX}/api/routes", headers=admin).json()["routes"]
    }
    assert routes["orders-to-erp"]["counts"]["new"] == 50
    assert (sink.holding, dict(sink.attempts)) == (0, {}), "the API server pushed to the destination itself"
    events, queued = asset_events()
    assert (events - events_before, queued) == (50, 1), "50 events, coalesced into one queued run"


def test_webhook_caps_the_records_of_one_request(
    client: httpx.Client, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduled_jobs import settings

    store = store_of(project)
    assert settings.webhook_max_records() == 10_000
    many = [{"id": n} for n in range(10_001)]
    refused = client.post("/webhooks/shop-orders", json=many)
    assert refused.status_code == 413, refused.text[:300]
    assert refused.json()["detail"] == (
        "too many records: more than 10000 in one request ([scheduled_jobs] webhook_max_records); "
        "split them over several requests; nothing was stored"
    )
    assert sum(store.counts().values()) == 0
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__WEBHOOK_MAX_RECORDS", "5")
    assert client.post("/webhooks/shop-orders", json=many[:6]).status_code == 413
    assert client.post("/webhooks/shop-orders", json=many[:5]).status_code == 202
    assert store.counts("orders-to-erp")["new"] == 5


def test_webhook_counts_records_while_reading_so_the_rest_of_the_body_is_never_parsed(
    client: httpx.Client, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the body is not read on: a tail that is not even JSON still gets the 413, not a 400."""
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__WEBHOOK_MAX_RECORDS", "2")
    body = b'[{"id": 1}, {"id": 2}, {"id": 3}, ' + b"{" * 50_000
    refused = client.post("/webhooks/shop-orders", content=body, headers={"Content-Type": "application/json"})
    assert (refused.status_code, refused.json()["detail"]) == (
        413,
        "too many records: more than 2 in one request ([scheduled_jobs] webhook_max_records); "
        "split them over several requests; nothing was stored",
    )
    assert sum(store_of(project).counts().values()) == 0


def test_webhook_refuses_bad_input_and_stores_nothing(
    client: httpx.Client, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_of(project)
    cases: list[tuple[Any, int, str]] = [
        (
            b'{"id": 1,',
            400,
            "body refused: not valid JSON: Expecting property name enclosed in double quotes at line 1, column 10; "
            "nothing was stored",
        ),
        (b"", 400, "body is empty: send one JSON object or a list of JSON objects"),
        (b"[1, 2]", 400, "item 0 of the list is a JSON number; each entity must be a JSON object"),
        (b'[{"id": 1}, {"number": 2}]', 400, "record 1: a record has no entity key 'id'; nothing was stored"),
        (b'{"id": {"nested": true}}', 400, "record 0: a record's entity key 'id' is {'nested': True}"),
    ]
    for body, status, message in cases:
        answer = client.post("/webhooks/shop-orders", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["detail"].startswith(message), answer.json()
    missing = client.post("/webhooks/nope", json={"id": 1})
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no incoming configuration has identifier 'nope' (known: ")
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__WEBHOOK_MAX_BYTES", "1000")
    big = [{"id": n, "filler": "x" * 100} for n in range(20)]
    declared = client.post("/webhooks/shop-orders", json=big)
    assert declared.status_code == 413
    assert declared.json()["detail"].startswith(
        "body too large: the limit is 1000 bytes ([scheduled_jobs] webhook_max_bytes)"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield json.dumps(big).encode()

    streamed = client.post("/webhooks/shop-orders", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert sum(store.counts().values()) == 0, "a refused request stored something"
    assert client.post("/webhooks/shop-orders", json=big[:2]).status_code == 202
    assert sum(store.counts("orders-to-erp").values()) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "body refused: nested more than 100 levels deep"),
        (b'{"id": 1, "total": ' + b"9" * 5000 + b"}", "body refused: a number has more than 4300 digits"),
        (b'{"id": 1, "price": NaN}', "body refused: NaN is not a JSON number"),
        (b'[{"id": 1}, {"id": 2, "price": Infinity}]', "body refused: Infinity is not a JSON number"),
        (b'[{"id": 1}, {"id": 2, "price": 1e400}]', "entity '2': a number is NaN or infinite, which JSON cannot hold"),
        (b'{"id": 1, "name": "\\ud800"}', "entity '1': a text holds a lone UTF-16 surrogate"),
        (b'[{"id": 1}, {"id": "' + b"k" * 600 + b'"}]', "record 1: a record's entity key 'id' is 600 characters long"),
        (
            b'[{"id": 1}, {"id": "SO-\\u00001"}]',
            "record 1: a record's entity key 'id' holds the control character U+0000",
        ),
        (b'{"id": true}', "record 0: a record's entity key 'id' is True (a bool)"),
        (b'{"id": 1, "name": "\xff"}', "body refused: not UTF-8 text: invalid start byte at byte 19"),
        (b'[{"id": 1}, {"id": 2, "id": 3}]', "body refused: an object names the key 'id' twice"),
    ],
)
def test_webhook_answers_a_poison_body_with_400_naming_the_record(
    client: httpx.Client, any_store: TaskStore, body: bytes, reason: str
) -> None:
    answer = client.post("/webhooks/shop-orders", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(reason), detail
    assert detail.endswith("nothing was stored") and len(detail) < 300, detail
    assert sum(any_store.counts().values()) == 0, "a refused body stored something"
    assert client.post("/webhooks/shop-orders", json=[{"id": 1}, {"id": 2}]).status_code == 202, "the webhook goes on"


def test_webhook_secret_from_an_airflow_connection(
    server: Server, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project / "configurations" / "incoming" / "shop-orders.yaml"
    _write(path, path.read_text() + "webhook:\n  connection: shop_orders_webhook\n")
    url = f"{server.url}{PREFIX}/webhooks/shop-orders"

    def push(secret: str, target: str = url) -> httpx.Response:
        return httpx.post(target, json={"id": 7}, headers={"X-Webhook-Secret": secret}, timeout=30)

    assert push("s3cret").status_code == 403, "a missing connection refuses, never lets through"
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_ORDERS_WEBHOOK", json.dumps({"conn_type": "generic", "password": "s3cret"}))
    assert push("wrong").status_code == 403
    assert push("s3cret").status_code == 202
    other = f"{server.url}{PREFIX}/webhooks/product-catalog"
    refused = push("s3cret", other)
    assert refused.status_code == 403, "the secret of one webhook does not open another"
    unknown = push("s3cret", f"{server.url}{PREFIX}/webhooks/nope")
    assert (unknown.status_code, unknown.json()["detail"]) == (403, "Forbidden: wrong webhook secret")


def test_an_anonymous_caller_learns_nothing_about_which_webhooks_exist(
    server: Server, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authentication is decided before existence: no token, an empty or a wrong secret get one answer."""
    path = project / "configurations" / "incoming" / "shop-orders.yaml"
    _write(path, path.read_text() + "webhook:\n  connection: shop_orders_webhook\n")
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_ORDERS_WEBHOOK", json.dumps({"conn_type": "generic", "password": "s3cret"}))
    targets = ("shop-orders", "product-catalog", "nope")  # with a secret, without one, not there at all
    for headers in ({}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": "S3CRET"}):
        answers = {}
        for target in targets:
            answer = httpx.post(f"{server.url}{PREFIX}/webhooks/{target}", json={"id": 1}, headers=headers, timeout=30)
            answers[target] = (answer.status_code, answer.text)
        assert len(set(answers.values())) == 1, (headers, answers)
        status, text = answers["nope"]
        assert status in (401, 403), (headers, answers)
        assert not any(name in text for name in ("shop-orders", "product-catalog", "nope", "known")), text
    assert sum(store_of(project).counts().values()) == 0


def test_a_changed_definition_shows_on_the_next_request(client: httpx.Client, project: Path) -> None:
    path = project / "job_definitions" / "later.yaml"
    _write(path, "name: Later\njob: repair_stuck_tasks\nexpression: '0 * * * *'\n")
    assert "later" in {job["identifier"] for job in client.get("/api/jobs").json()["jobs"]}
    _write(path, "name: Later\nidentifier: later\njob: repair_stuck_tasks\nexpression: '0 * * * *'\npriority: 3\n")
    jobs = {job["identifier"]: job for job in client.get("/api/jobs").json()["jobs"]}
    assert jobs["later"]["priority"] == 3
    path.unlink()
    assert "later" not in {job["identifier"] for job in client.get("/api/jobs").json()["jobs"]}


# -- fuzz: whatever a webhook is sent, it is stored whole or refused with a reason, never a 500 ---------


@hypothesis.settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(data=st.data())
def test_fuzz_a_webhook_stores_a_body_whole_or_refuses_it(client: httpx.Client, project: Path, data: Any) -> None:
    store = store_of(project)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
        conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))
    entities = data.draw(st.one_of(hostile.records(), st.lists(hostile.records(), min_size=1, max_size=5)))
    text = hostile.dumps(entities)
    body = data.draw(hostile.mangled(text))
    answer = client.post("/webhooks/shop-orders", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code in (202, 400), (answer.status_code, answer.text[:300])
    hypothesis.event(f"HTTP {answer.status_code}")
    stored = {task["entity_key"]: json.loads(task["payload"]) for task in store.list_tasks("orders-to-erp")}
    if answer.status_code == 400:
        detail = answer.json()["detail"]
        assert detail.endswith("nothing was stored") and len(detail) < 300, detail
        assert stored == {}, "a refused body stored something"
        sent_plain = body == text.encode("utf-8", "surrogatepass")
        listed = entities if isinstance(entities, list) else [entities]
        assert not (sent_plain and all(hostile.plain(record) for record in listed)), (
            f"a plain body was refused: {detail}"
        )
        return
    listed = json.loads(body) if isinstance(json.loads(body), list) else [json.loads(body)]
    expected = {str(record[hostile.KEY]): record for record in listed}  # the last record of an entity stands
    assert stored == expected, "a body was not stored whole"
