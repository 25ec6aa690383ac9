"""The pages in a real browser (Debian's Chromium driven by Playwright) inside the real Airflow UI.

The README's start command runs ``airflow standalone`` with the example jobs; the test logs in as the
admin, opens each page from Airflow's navigation, and checks its figures against the task store and
Airflow's metadata database. Screenshots of each page go to ``$SCHEDULED_JOBS_SCREENSHOTS`` when set
(the README's come from there).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers.ports import free_port
from helpers.triggers import trigger

from scheduled_jobs.store import TaskStore
from scheduled_jobs.store.schema import skipped_runs
from scheduled_jobs.web.plugin import NAV_LABEL

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import FrameLocator, Page

pytestmark = pytest.mark.e2e
START_BUDGET_SECONDS = 300  # a budget, not an expectation: a 2-core machine busy with other suites starts slower
CHROMIUM = os.environ.get("SCHEDULED_JOBS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>window.__xss = 1</script><img src=x onerror='window.__xss = 2'>"


class Airflow:
    def __init__(self, home: Path, port: int, definitions: Path) -> None:
        self.home = home
        self.definitions = definitions
        self.url = f"http://localhost:{port}"

    # Made when first used: the home is not there until scripts/start.sh has made it.
    @functools.cached_property
    def store(self) -> TaskStore:
        return TaskStore.from_url(f"sqlite:///{self.home / 'scheduled_jobs_store.db'}")

    @functools.cached_property
    def metadata(self) -> sa.Engine:
        return sa.create_engine(f"sqlite:///{self.home / 'airflow.db'}")

    @property
    def password(self) -> str:
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return str(passwords["admin"])

    def token(self) -> str:
        answer = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["access_token"])

    def runs(self, dag_id: str) -> list[tuple[str, str, dt.datetime]]:
        """(run_id, state, logical date or run_after) of every run of a DAG, oldest first."""
        query = "SELECT run_id, state, run_after FROM dag_run WHERE dag_id = :dag ORDER BY id"
        with self.metadata.connect() as conn:
            return [(r.run_id, r.state, r.run_after) for r in conn.execute(sa.text(query), {"dag": dag_id})]

    def dag(self, dag_id: str) -> Any:
        query = "SELECT is_paused, is_stale FROM dag WHERE dag_id = :dag"
        with self.metadata.connect() as conn:
            return conn.execute(sa.text(query), {"dag": dag_id}).first()

    def trigger(self, dag_id: str, wait_seconds: float = 0) -> str:
        """A manual run of the DAG, as the UI's Trigger button asks for one; its run id."""
        return trigger(self.url, self.token(), dag_id, wait_seconds=wait_seconds)

    def scheduled_run_at_or_after(self, dag_id: str, moment: dt.datetime) -> bool:
        """The scheduler created a run of the DAG for a fire time at or after ``moment`` (naive UTC)."""
        return any(
            run_id.startswith("scheduled__") and _naive_utc(run_after) >= moment
            for run_id, _, run_after in self.runs(dag_id)
        )

    def last_run_states(self) -> dict[str, str]:
        query = "SELECT dag_id, state FROM dag_run WHERE id IN (SELECT max(id) FROM dag_run GROUP BY dag_id)"
        with self.metadata.connect() as conn:
            return {row.dag_id: row.state for row in conn.execute(sa.text(query))}


def _naive_utc(moment: dt.datetime | str) -> dt.datetime:
    """A date of Airflow's metadata database (a string when read from SQLite) as a naive UTC datetime."""
    parsed = moment if isinstance(moment, dt.datetime) else dt.datetime.fromisoformat(str(moment))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _move_example_data(airflow: Airflow, running: Any, budget: float) -> None:
    """Run the example incoming job by hand, as soon as its DAG is there, until the four example orders are delivered
    (by the real-time export of orders-to-erp that follows it).

    Waiting for its schedule (each job first runs at its next fire time) takes up to a minute more;
    test_start_script's start test is the one that waits for the example data to move by the jobs' schedule.
    A scheduled run that comes meanwhile moves the data just as well.
    """
    outbox = airflow.home / "scheduled_jobs_data" / "outbox" / "erp-orders"
    deadline = time.monotonic() + budget

    def within(condition: Any, what: str) -> Any:
        """Poll ``condition`` until it holds; until then an error of a part still starting is tried again."""
        last: Exception | None = None
        while True:
            assert running.poll() is None, f"scripts/start.sh ended while waiting for {what}"
            try:
                found = condition()
            except (sa.exc.DBAPIError, httpx.HTTPError, OSError, ValueError, AssertionError) as error:
                found, last = None, error
            if found:
                return found
            if time.monotonic() >= deadline:
                log = airflow.home / "standalone.log"
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise AssertionError(f"{what}: not within {budget} s (last: {last!r})\n{tail}")
            time.sleep(1)

    def delivered() -> bool:
        return outbox.exists() and len(list(outbox.glob("*.json"))) >= 4

    within(airflow.token, "the API server")  # standalone has migrated the metadata database by then
    within(lambda: airflow.dag("shop-orders-incoming"), "the example incoming job's DAG")
    within(lambda: airflow.trigger("shop-orders-incoming"), "a run of the incoming job")
    within(delivered, "the example orders delivered")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """``scripts/start.sh`` on a fresh home, waited for until the example jobs have moved their data.

    The definitions are a copy of the repository's ``job_definitions`` (the authoring test writes to it, and
    the repository is never written); UI saving is on, and the dag-processor looks for changes every 5 s.
    """
    base = tmp_path_factory.mktemp("browser")
    home, port = base / "home", free_port()
    definitions = base / "job_definitions"
    shutil.copytree(ROOT / "job_definitions", definitions)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__API__PORT": str(port),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
            "AIRFLOW__SCHEDULED_JOBS__UI_EDITING": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    log = (base / "start.out").open("w")
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        running = Airflow(home, port, definitions)
        try:
            _move_example_data(running, process, START_BUDGET_SECONDS)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n" + (base / "start.out").read_text()[-3000:]) from None
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            for child in psutil.Process().children(recursive=True):
                child.kill()
            log.close()


@pytest.fixture(scope="module")
def seeded(airflow: Airflow) -> dict[str, Any]:
    """A webhook order whose payload is markup, and failed product tasks with markup in their errors."""
    pushed = httpx.post(
        f"{airflow.url}/scheduled-jobs/webhooks/shop-orders",
        json={"id": "SO-9001", "customer": XSS, "total": 12.5},
        headers={"Authorization": f"Bearer {airflow.token()}"},
        timeout=30,
    )
    assert pushed.status_code == 202, pushed.text
    (order_task,) = pushed.json()["task_ids"]
    # products-to-webshop has no export job in the examples, so what is put there stays as it is.
    airflow.store.add_entities(["products-to-webshop"], [(f"SKU-{n}", {"sku": f"SKU-{n}"}) for n in range(5)])
    for number, task in enumerate(airflow.store.claim("products-to-webshop", 3)):
        airflow.store.fail(task, f"HTTP 422 from the webshop: <b>price</b> missing (#{number})")
    # A skip from the past, as the guard records one (a live one would need two jobs on one route).
    with airflow.store.engine.begin() as conn:
        conn.execute(
            sa.insert(skipped_runs).values(
                configuration="route:orders-to-erp",
                dag_id="orders-to-erp-export",
                run_id="manual__2026-11-24T09:00:00+00:00",
                duplicate_of_dag_id="orders-to-erp-export",
                duplicate_of_run_id="scheduled__2026-11-24T08:59:00+00:00",
                reason="route:orders-to-erp already has a run waiting "
                "(orders-to-erp-export / scheduled__2026-11-24T08:59:00+00:00); this run is a duplicate of it",
                skipped_at=dt.datetime(2026, 11, 24, 9, 0, 1),
            )
        )
    return {"order_task": order_task}


@pytest.fixture
def page(airflow: Airflow, seeded: dict[str, Any]) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/install.sh --dev installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(airflow.url + "/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", airflow.password)
        page.click("button[type=submit]")
        page.wait_for_url(airflow.url + "/")
        yield page
        browser.close()


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("SCHEDULED_JOBS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_from_navigation(page: Page, name: str) -> FrameLocator:
    """Click through Airflow's own navigation to a plugin page; its content is the iframe.

    "Scheduled jobs" is a top-level item; the other pages are under Plugins > Scheduled jobs.
    """
    if name == "Scheduled jobs":
        page.get_by_role("link", name=NAV_LABEL, exact=True).click()
    else:
        page.get_by_role("button", name="Plugins").click()
        page.get_by_role("menuitem", name="Scheduled jobs").click()
        page.get_by_role("menuitem", name=name).click()
    page.wait_for_url(re.compile(r"/plugin/scheduled-jobs-"))
    return page.frame_locator("iframe")


def test_scheduled_jobs_page_shows_every_job_with_its_last_run(page: Page, airflow: Airflow) -> None:
    frame = open_from_navigation(page, "Scheduled jobs")
    frame.locator("#jobs").wait_for()
    api = httpx.get(
        f"{airflow.url}/scheduled-jobs/api/jobs", headers={"Authorization": f"Bearer {airflow.token()}"}
    ).json()
    assert (
        frame.locator("#jobs tbody tr[data-identifier]").count() == len(api["jobs"]) == 5
    )  # the five example jobs, prune-tasks included
    for job in api["jobs"]:
        assert job["name"] in frame.locator(f'tr[data-identifier="{job["identifier"]}"]').inner_text()
    # The example export may not have reached its first fire time yet (the fixture ran the incoming job by
    # hand): a run by hand gives it a last run; the page showing it is the point, not the schedule.
    if "orders-to-erp-export" not in airflow.last_run_states():
        airflow.trigger("orders-to-erp-export", wait_seconds=60)
    # The example jobs run every minute: compare with the states read just before and just after the page.
    for _attempt in range(10):
        states = airflow.last_run_states()
        page.reload()
        shown = {
            job["identifier"]: frame.locator(f'tr[data-identifier="{job["identifier"]}"] .last-run').inner_text()
            for job in api["jobs"]
        }
        if airflow.last_run_states() == states:
            break
    assert {"shop-orders-incoming", "orders-to-erp-export"} <= set(states), states
    for identifier, text in shown.items():
        assert states.get(identifier, "never") in text, (identifier, text, states)
    repair = frame.locator('tr[data-identifier="repair-stuck-tasks"]').inner_text()
    assert "Every 15 minutes" in repair and repair.count("UTC (UTC+0000)") == 5
    screenshot(page, "scheduled-jobs")
    frame.locator("select[name=status]").select_option("disabled")
    frame.get_by_role("button", name="Filter").click()
    frame.locator("#jobs-count").filter(has_text="1 of 5").wait_for()
    assert frame.locator("#jobs tbody tr[data-identifier]").all_inner_texts()[0].startswith("Product catalog incoming")
    frame.get_by_role("link", name="Product catalog incoming").click()
    page.wait_for_url(re.compile(r"/dags/product-catalog-incoming$"))


def test_cron_checker_valid_and_invalid(page: Page) -> None:
    frame = open_from_navigation(page, "Cron checker")
    frame.locator("input[name=expression]").fill("0 25 * * *")
    frame.locator("input[name=timezone]").fill("Europe/Amsterdam")
    frame.get_by_role("button", name="Check").click()
    frame.locator("#cron-result.invalid").wait_for()
    assert "expression: hour: 25 is out of range 0-23" in frame.locator("#cron-result").inner_text()
    frame.locator("input[name=expression]").fill("*/15 9-17 * * MON-FRI")
    frame.get_by_role("button", name="Check").click()
    frame.locator("#cron-result.valid").wait_for()
    assert (
        frame.locator("#cron-description").inner_text()
        == "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"
    )
    fires = frame.locator("#cron-result ul.fires li").all_inner_texts()
    assert len(fires) == 10
    assert all(re.search(r" (09|1[0-7]):(00|15|30|45) CES?T ", fire) for fire in fires), fires
    screenshot(page, "cron-checker")


def test_tasks_page_figures_match_the_store_and_markup_stays_text(
    page: Page, airflow: Airflow, seeded: dict[str, Any]
) -> None:
    frame = open_from_navigation(page, "Tasks")
    frame.locator("#routes").wait_for()
    for route in ("orders-to-erp", "products-to-webshop"):
        counts = airflow.store.counts(route)
        row = frame.locator(f'tr[data-route="{route}"]')
        shown = {status: int(row.locator(f".count-{status}").inner_text()) for status in counts}
        if route == "orders-to-erp" and shown != counts:  # an export may have run in between: read again
            counts = airflow.store.counts(route)
            page.reload()
            shown = {status: int(row.locator(f".count-{status}").inner_text()) for status in counts}
        assert shown == counts, route
    assert airflow.store.counts("products-to-webshop") == {
        "new": 2,
        "processing": 0,
        "finished": 0,
        "failed": 3,
        "skipped": 0,
    }
    frame.get_by_role("link", name="Products to webshop").click()
    errors = frame.locator("#errors tbody tr")
    errors.first.wait_for()
    assert errors.count() == 3
    assert "HTTP 422 from the webshop: <b>price</b> missing" in errors.first.inner_text()
    screenshot(page, "tasks")
    # The webhook order's payload carries markup: it must show as text, and never run.
    frame.locator("#open-task input[name=id]").fill(str(seeded["order_task"]))
    frame.get_by_role("button", name="Open task").click()
    payload = frame.locator("#payload")
    payload.wait_for()
    assert XSS in payload.inner_text()
    assert frame.locator("#payload script, #payload img").count() == 0
    assert frame.locator("body").evaluate("() => window.__xss === undefined")
    screenshot(page, "task")


def test_processes_page_lists_every_configuration_a_job_executes(page: Page, airflow: Airflow) -> None:
    frame = open_from_navigation(page, "Processes")
    frame.locator("#processes").wait_for()
    configurations = frame.locator("#processes tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.configuration)"
    )
    assert configurations == ["incoming:product-catalog", "incoming:shop-orders", "route:orders-to-erp"]
    assert frame.locator('tr[data-configuration="route:orders-to-erp"] .skipped').inner_text() == "1"
    (skipped,) = frame.locator("#skipped tbody tr").all_inner_texts()
    assert "manual__2026-11-24T09:00:00+00:00" in skipped and "this run is a duplicate of it" in skipped
    screenshot(page, "processes")
    frame.locator('tr[data-configuration="route:orders-to-erp"] .skipped a').click()
    frame.locator("#skipped-title").filter(has_text="route:orders-to-erp").wait_for()
    open_from_navigation(page, "Scheduled jobs")
    assert frame.locator('tr[data-identifier="orders-to-erp-export"] .skipped').inner_text() == "1"


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(1)


def _status(airflow: Airflow, task_id: int) -> str | None:
    with airflow.store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM scheduled_jobs_task WHERE id = :id"), {"id": task_id}).scalar()


def test_the_console_finds_a_failed_order_retries_it_and_tells_its_whole_story(page: Page, airflow: Airflow) -> None:
    """The operator's console end to end: a webhook order fails to export (its file name is taken by a
    folder), is found by its entity key, retried, delivered by the next export, and its page tells the
    whole story with links to Airflow's runs. The export after the retry is run by hand (a scheduled one
    that comes first does the same)."""
    outbox = airflow.home / "scheduled_jobs_data" / "outbox" / "erp-orders"
    delivered = outbox / "order-SO-7001.json"
    delivered.mkdir(parents=True)  # the export cannot write the order: a folder has its name
    pushed = httpx.post(
        f"{airflow.url}/scheduled-jobs/webhooks/shop-orders",
        json={"id": "SO-7001", "customer": "Console test", "total": 70.01},
        headers={"Authorization": f"Bearer {airflow.token()}"},
        timeout=30,
    )
    assert pushed.status_code == 202, pushed.text
    (task_id,) = pushed.json()["task_ids"]
    _wait_for(lambda: _status(airflow, task_id) == "failed", 150, "the export to fail the order")
    delivered.rmdir()
    page.set_viewport_size({"width": 1024, "height": 768})  # the console is usable on a small screen
    blocked: list[str] = []  # what the pages' Content-Security-Policy refused (it allows our static scripts only)
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )

    # 1. Find it by its entity key, from the Tasks overview.
    frame = open_from_navigation(page, "Tasks")
    frame.locator("#find-tasks input[name=entity_key]").fill("SO-7001")
    frame.get_by_role("button", name="Find tasks").click()
    row = frame.locator(f'#task-list tr[data-task="{task_id}"]')
    row.wait_for()
    assert frame.locator("#task-list tbody tr[data-task]").count() == 1
    assert row.locator(".status").inner_text() == "failed"
    assert "Is a directory" in row.locator(".error").inner_text()
    wide = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert frame.locator("body").evaluate(wide) <= 1, "the task list scrolls sideways at 1024 px"
    screenshot(page, "task-list")

    # 2. Retry it ("select all" ticks and unticks every box: static/pages.js, no inline handler).
    select_all = frame.get_by_label("select all")
    select_all.check()
    assert row.locator("input[name=id]").is_checked()
    select_all.uncheck()
    assert not row.locator("input[name=id]").is_checked()
    row.locator("input[name=id]").check()
    frame.get_by_role("button", name="Retry", exact=True).click()
    outcome = frame.locator("#outcome")
    outcome.wait_for()
    assert "1 of 1 tasks retried" in outcome.inner_text()
    assert _status(airflow, task_id) in ("new", "processing", "finished")

    # 3. The next export delivers it.
    airflow.trigger("orders-to-erp-export")
    _wait_for(lambda: _status(airflow, task_id) == "finished", 150, "the next export to deliver the order")
    assert json.loads(delivered.read_text())["customer"] == "Console test"

    # 4. Its page tells the whole story, each run linked to Airflow.
    frame.get_by_role("link", name=str(task_id), exact=True).click()
    history = frame.locator("#history")
    history.wait_for()
    kinds = history.locator("li[data-kind]").evaluate_all("items => items.map(item => item.dataset.kind)")
    assert kinds[0] == "created" and kinds[-1] == "exported", kinds
    assert kinds.index("export_failed") < kinds.index("retried") < len(kinds) - 1, kinds
    entries = {kind: history.locator(f'li[data-kind="{kind}"]').last.inner_text() for kind in set(kinds)}
    assert "webhook" in entries["created"]
    assert "Is a directory" in entries["export_failed"] and "not retryable" in entries["export_failed"]
    assert "user admin" in entries["retried"]
    assert "orders-to-erp-export" in entries["exported"] and f"orders-to-erp-{task_id}" in entries["exported"]
    assert frame.locator("#status").inner_text() == "finished"
    assert frame.get_by_role("button", name="Retry").is_disabled()  # a finished task is not retried
    frame.locator("#history").scroll_into_view_if_needed()
    screenshot(page, "task-history")
    frame.locator('li[data-kind="exported"] a.log-link').last.click()
    page.wait_for_url(re.compile(r"/dags/orders-to-erp-export/runs/[^/]+/tasks/export_route"))

    # The entity's page, and the Processes page's last runs.
    frame = open_from_navigation(page, "Tasks")
    frame.locator("#find-tasks input[name=entity_key]").fill("SO-7001")
    frame.get_by_role("button", name="Find tasks").click()
    frame.get_by_role("link", name="SO-7001").click()
    frame.locator(f'#entity-tasks tr[data-task="{task_id}"]').wait_for()
    assert '"Console test"' in frame.locator("#last-payload").inner_text()
    screenshot(page, "entity")
    frame = open_from_navigation(page, "Processes")
    runs = frame.locator('table[data-history="route:orders-to-erp"] tr.job-run')
    runs.first.wait_for()
    assert "success" in runs.first.inner_text() or "running" in runs.first.inner_text()
    frame.locator('table[data-history="route:orders-to-erp"]').scroll_into_view_if_needed()
    screenshot(page, "processes-history")
    assert blocked == [], blocked


def test_a_job_made_in_the_form_runs_and_stops_when_disabled(page: Page, airflow: Airflow) -> None:
    """The seed's set-up in the UI: "+ New scheduled job", an incoming configuration from the list, a cron
    checked as it is typed; saved, the DAG appears and a run (by hand) succeeds; disabled from the jobs page,
    the DAG is paused and no run follows its next fire time."""
    frame = open_from_navigation(page, "Scheduled jobs")
    frame.locator("#new-job").click()
    frame.locator("#job-form").wait_for()
    frame.locator("#f-name").fill("Catalog every minute")
    assert frame.locator("#f-identifier").input_value() == "catalog-every-minute"
    frame.locator("#f-job").select_option("incoming")
    options = frame.locator("#f-incoming option").evaluate_all("items => items.map(item => item.value)")
    assert options == ["", "product-catalog", "shop-orders"], options
    frame.locator("#f-incoming").select_option("product-catalog")
    assert frame.locator("#f-route").is_hidden()  # a route belongs to an outgoing job
    frame.locator("#f-expression").fill("0 25 * * *")
    frame.locator('#cron-check[data-state="invalid"]').wait_for()
    assert "hour: 25 is out of range 0-23" in frame.locator("#cron-check").inner_text()
    frame.locator("#f-expression").fill("* * * * *")
    frame.locator("#f-timezone").fill("Europe/Amsterdam")
    frame.locator('#cron-check[data-state="valid"]').wait_for()
    frame.locator("#cron-check").filter(has_text="Every minute (Europe/Amsterdam)").wait_for()
    assert frame.locator("#cron-check ul.fires li").count() == 5
    frame.locator("#f-description").fill('Made in the browser test: "quotes", a colon: and # a hash')
    screenshot(page, "job-form")
    frame.locator("#save").click()
    frame.locator("#saved").wait_for()
    saved_at = time.monotonic()
    assert "appears at the next parse" in frame.locator("#next-parse").inner_text()
    written = airflow.definitions / "catalog-every-minute.yaml"
    import yaml

    assert yaml.safe_load(written.read_text())["description"] == (
        'Made in the browser test: "quotes", a colon: and # a hash'
    )

    dag_id = "catalog-every-minute"
    _wait_for(lambda: airflow.dag(dag_id) is not None, 90, "the new DAG to appear in Airflow")
    appeared = time.monotonic() - saved_at
    airflow.trigger(dag_id, wait_seconds=60)  # test_start_script's start test waits for runs by schedule
    _wait_for(lambda: any(state == "success" for _, state, _ in airflow.runs(dag_id)), 150, "a run to succeed")
    print(f"the DAG appeared {appeared:.1f} s after saving; a run succeeded {time.monotonic() - saved_at:.1f} s after")

    frame.locator("#back-to-jobs").click()  # the page's own link (the navigation's would not reload the frame)
    row = frame.locator(f'tr[data-identifier="{dag_id}"]')
    row.locator("button.toggle-job").click()
    frame.locator("#dag-pause").filter(has_text="paused in Airflow").wait_for()
    assert airflow.dag(dag_id).is_paused
    assert yaml.safe_load(written.read_text())["disabled"] is True
    disabled_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    runs_then = len(airflow.runs(dag_id))
    # The next fire time after disabling passes, and the scheduler has made the runs of that fire time (the
    # example incoming job's, also every minute, is made in the same pass): no new run.
    next_minute = disabled_at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    _wait_for(
        lambda: airflow.scheduled_run_at_or_after("shop-orders-incoming", next_minute),
        120,
        "the scheduler to make the runs of the next fire time",
    )
    time.sleep(5)  # and a few seconds more, for good measure
    assert len(airflow.runs(dag_id)) == runs_then, airflow.runs(dag_id)
    assert airflow.dag(dag_id).is_paused


def test_airflows_own_pages_show_jobs_natively_at_1024_px(page: Page, airflow: Airflow) -> None:
    """The DAG list shows Names, schedules with their Timezone and "Disabled"; the sidebar entry and the
    jobs table fit a 1024 px window."""
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(airflow.url + "/dags")
    export = page.get_by_role("link", name="Orders to ERP export", exact=True)
    export.wait_for()
    listing = page.locator("body").inner_text()
    assert "* * * * * (Europe/Amsterdam)" in listing
    assert "Disabled" in listing and "Product catalog incoming" in listing
    assert "orders-to-erp-export" not in listing  # the Name, not the Identifier
    screenshot(page, "airflow-dag-list")

    entry = page.get_by_role("link", name=NAV_LABEL, exact=True)
    label = entry.get_by_text(NAV_LABEL, exact=True)
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), "the sidebar label is cut off"
    assert entry.locator("img").get_attribute("src", timeout=5_000).startswith("data:image/svg+xml,")  # type: ignore[union-attr]

    frame = open_from_navigation(page, "Scheduled jobs")
    frame.locator("#jobs").wait_for()
    widths = frame.locator(".table-wrap").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], f"the jobs table is wider than its frame: {widths}"
    name = frame.get_by_role("link", name="Product catalog incoming")
    lines = name.evaluate("e => new Set([...e.getClientRects()].map(r => Math.round(r.top))).size")
    assert lines <= 2, f"the name wraps over {lines} lines"
    screenshot(page, "scheduled-jobs-1024")
