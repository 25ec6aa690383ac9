"""The pages and the API never 500 and never hang: not for a hostile definition, a cron that never fires, or a
number no database column can hold. Served by a real Airflow API server (conftest's ``server`` and ``client``).
"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import _HOME, ROOT
from helpers.hostile_yaml import BOMB_DEFINITION, BOMB_INCOMING
from helpers.live_api import PREFIX, Server, store_of

from scheduled_jobs.catalog import ScheduledJob, load_catalog
from scheduled_jobs.models.jobs import RepairJob
from scheduled_jobs.web import overview

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

    from scheduled_jobs.store import TaskStore


# -- hostile definitions ----------------------------------------------------------------------------


def test_the_catalog_answers_while_a_bomb_is_present_and_after(client: httpx.Client, project: Path) -> None:
    quick = {"timeout": 10}  # today: no answer at all, and none after the file is gone
    bombs = [
        project / "job_definitions" / "bomb.yaml",
        project / "configurations" / "incoming" / "bomb.yaml",
    ]
    bombs[0].write_text(BOMB_DEFINITION, encoding="utf-8")
    bombs[1].write_text(BOMB_INCOMING.replace("product-catalog", "bomb-catalog"), encoding="utf-8")
    answer = client.get("/api/jobs", **quick)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {job["identifier"] for job in body["jobs"]} >= {"orders-to-erp-export", "shop-orders-incoming"}
    invalid = {(p["path"], p["key"]) for p in body["invalid"]}
    assert {(str(b), "(file)") for b in bombs} <= invalid
    reasons = [p["reason"] for p in body["invalid"]]
    assert all(r.startswith("YAML anchors/aliases are not allowed") for r in reasons), reasons
    page = client.get("/jobs", **quick)
    assert page.status_code == 200 and "YAML anchors/aliases are not allowed" in page.text
    pushed = client.post("/webhooks/shop-orders", json={"id": 1}, **quick)
    assert pushed.status_code == 202, pushed.text
    for bomb in bombs:
        bomb.unlink()
    assert client.get("/api/jobs", **quick).json()["invalid"] == []


# -- a cron that never fires -----------------------------------------------------------------------

NEVER = "name: Never\njob: repair_stuck_tasks\nexpression: '0 0 30 2 *'\n"


def test_a_cron_that_never_fires_is_listed_as_invalid_and_the_other_jobs_show(
    client: httpx.Client, project: Path
) -> None:
    (project / "job_definitions" / "never.yaml").write_text(NEVER, encoding="utf-8")
    answer = client.get("/api/jobs")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "never" not in {job["identifier"] for job in body["jobs"]}
    assert all(len(job["next_fire_times"]) == 5 for job in body["jobs"] if not job["disabled"])
    (problem,) = body["invalid"]
    assert (problem["key"], problem["reason"].split(";")[0]) == (
        "expression",
        "'0 0 30 2 *' never fires (February has no 30th)",
    )
    page = client.get("/jobs")
    assert page.status_code == 200
    assert "never fires (February has no 30th)" in page.text


def test_one_jobs_fire_times_never_break_another_jobs_row(project: Path) -> None:
    # A job that reached the catalog however it did (an older validation, a clock that moved on):
    # its row says why it has no fire times, and every other row is whole.
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    never = RepairJob(name="Never", job="repair_stuck_tasks", expression="0 0 30 2 *")
    catalog.jobs["never"] = ScheduledJob("never", project / "never.yaml", never, "UTC")
    found = overview.jobs_overview(store_of(project).engine, overview.JobFilters(), catalog=catalog)
    rows = {row.identifier: row for row in found.jobs}
    assert rows["never"].next_fire_times == []
    assert rows["never"].next_fire_times_error is not None
    assert rows["never"].next_fire_times_error.startswith(
        "no fire time: '0 0 30 2 *' never fires (February has no 30th)"
    )
    assert rows["never"].model_dump(mode="json")["next_fire_times_error"] == rows["never"].next_fire_times_error
    assert len(rows["orders-to-erp-export"].next_fire_times) == 5
    assert rows["orders-to-erp-export"].next_fire_times_error is None


def test_the_cron_checker_says_why_a_cron_never_fires(client: httpx.Client) -> None:
    answer = client.get("/api/cron", params={"expression": "0 0 30 2 *"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False
    assert body["errors"][0].startswith("expression: '0 0 30 2 *' never fires (February has no 30th)")
    page = client.get("/cron", params={"expression": "0 0 30 2 *"})
    assert page.status_code == 200
    assert "never fires (February has no 30th)" in page.text


# -- numbers: every numeric parameter of every route has a range, and says it ------------------------


def numeric_parameters(app: FastAPI) -> list[tuple[str, str, str, int, int]]:
    """(method, path, where, name, low, high) of every whole-number parameter of the plugin's routes."""
    import annotated_types
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from scheduled_jobs.web.plugin import LazyApp

    (mount,) = [r for r in app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert isinstance(mount.app, LazyApp)
    found = []
    for route in mount.app.get().routes:
        assert isinstance(route, APIRoute)
        for where, params in (("query", route.dependant.query_params), ("path", route.dependant.path_params)):
            for param in params:
                if param.field_info.annotation is not int:
                    continue
                bounds = {type(m): m for m in param.field_info.metadata}
                assert annotated_types.Ge in bounds and annotated_types.Le in bounds, (route.path, param.name)
                low, high = bounds[annotated_types.Ge].ge, bounds[annotated_types.Le].le
                for method in sorted(route.methods):
                    found.append((method, route.path, where, param.name, low, high))
    return found


def _request(client: httpx.Client, method: str, path: str, where: str, name: str, value: str) -> httpx.Response:
    def fill(match: re.Match[str]) -> str:
        if match.group(1) == name:
            return value
        return "1" if match.group(1) == "task_id" else "orders-to-erp"

    url = re.sub(r"\{(\w+)\}", fill, path)
    params = {name: value} if where == "query" else {}
    if path == "/cron" or path == "/api/cron":
        params["expression"] = "* * * * *"
    return client.request(method, url, params=params, follow_redirects=False)


HOSTILE_NUMBERS = ["99999999999999999999", "-99999999999999999999", "1e20", "-1", "0", "1.5", "abc", "0x10", ""]


def test_every_numeric_parameter_answers_422_with_its_range(
    server: Server,
    client: httpx.Client,
    any_store: TaskStore,
) -> None:
    parameters = numeric_parameters(server.app)
    names = {(path, name) for _, path, _, name, _, _ in parameters}
    assert {("/api/tasks/{task_id}", "task_id"), ("/tasks/{task_id}", "task_id"), ("/jobs", "page")} <= names
    assert {("/api/jobs", "size"), ("/task", "id"), ("/tasks", "stuck_page"), ("/api/cron", "count")} <= names
    for method, path, where, name, low, high in parameters:
        for value in [*HOSTILE_NUMBERS, str(high + 1), str(low - 1)]:
            if where == "path" and value == "":
                continue  # another URL altogether
            answer = _request(client, method, path, where, name, value)
            assert answer.status_code == 422, (method, path, name, value, answer.status_code, answer.text[:200])
            detail = answer.json()["detail"]
            expected = f"{name}: must be a whole number from {low} to {high}, got {value!r}"
            assert expected in detail, (path, name, value, detail)
        for value in (str(low), str(high)):
            answer = _request(client, method, path, where, name, value)
            assert answer.status_code in (200, 303, 404), (method, path, name, value, answer.status_code, answer.text)


def test_the_largest_task_id_and_page_reach_the_database_without_error(
    client: httpx.Client,
    any_store: TaskStore,
) -> None:
    biggest = 2**63 - 1
    assert client.get(f"/api/tasks/{biggest}").status_code == 404
    assert client.get(f"/tasks/{biggest}").status_code == 404
    errors = client.get("/api/routes/orders-to-erp/errors", params={"page": 1_000_000, "size": 500})
    assert errors.status_code == 200, errors.text
    assert errors.json()["rows"] == []


def test_the_jobs_page_with_a_page_past_the_end_shows_the_last(client: httpx.Client, project: Path) -> None:
    answer = client.get("/api/jobs", params={"page": 1_000_000})
    assert answer.status_code == 200
    assert answer.json()["page"] == 1
    assert dt.datetime.fromisoformat(answer.json()["jobs"][0]["next_fire_times"][0]["at"]) > dt.datetime(
        2000, 1, 1, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("value", ["1e20", "99999999999999999999"])
def test_the_issues_examples(client: httpx.Client, project: Path, value: str) -> None:
    assert client.get("/jobs", params={"page": value}).status_code == 422
    assert client.get(f"/api/tasks/{value}").status_code == 422


# -- redirects ------------------------------------------------------------------------------------------

TRAILING_SLASHES = [
    ("GET", ""),
    ("GET", "/"),
    ("GET", "/jobs/"),
    ("GET", "/tasks/"),
    ("GET", "/tasks/1/"),
    ("GET", "/api/jobs/"),
    ("GET", "/api/tasks/1/"),
    ("POST", "/api/tasks/delete/"),
    ("POST", "/tasks/actions/"),
    ("POST", "/jobs/orders-to-erp-export/disable/"),
    ("POST", "/webhooks/shop-orders/"),
]


@pytest.mark.parametrize("signed_in", [False, True], ids=["before-login", "signed-in"])
def test_no_answer_redirects_to_the_host_the_caller_names(
    server: Server, tokens: dict[str, str], project: Path, signed_in: bool
) -> None:
    """A forged Host (or X-Forwarded-Host) never becomes a Location: a 307 keeps the method, the body and the
    webhook's secret header, and would carry them to that host."""
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Webhook-Secret": "s3cret"}
    if signed_in:
        forged["Authorization"] = f"Bearer {tokens['admin']}"
    for method, path in TRAILING_SLASHES:
        answer = httpx.request(
            method, server.url + PREFIX + path, json={"id": 1}, headers=forged, follow_redirects=False, timeout=30
        )
        location = answer.headers.get("location", "")
        assert "evil.example" not in location, (method, path, answer.status_code, location)
        assert not location.startswith(("http:", "https:", "//")), (method, path, location)
        assert answer.status_code not in (301, 302, 307, 308), (method, path, answer.status_code, location)
    assert store_of(project).counts().get("new", 0) == 0, "a push to a trailing-slash path was stored"


def test_the_open_task_form_redirects_relative(client: httpx.Client) -> None:
    answer = client.get("/task", params={"id": 7}, headers={"Host": "evil.example"}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "tasks/7")


# -- headers ----------------------------------------------------------------------------------------------


class _Markup(HTMLParser):
    """A page's scripts and event-handler attributes: what a script CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self._in_script = False
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        self.handlers += [
            f"<{tag} {name}>" for name, value in attrs if (value or "").strip().lower().startswith("javascript:")
        ]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data.strip()[:60])


def _every_get(server: Server, task_id: int) -> list[str]:
    """A URL for every GET route of the plugin's app, its parameters filled in with things that exist."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from scheduled_jobs.web.plugin import LazyApp

    (mount,) = [r for r in server.app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert isinstance(mount.app, LazyApp)
    fill = {
        "task_id": str(task_id),
        "identifier": "orders-to-erp-export",
        "route": "orders-to-erp",
        "entity_key": "SO-1",
        "name": "pages.js",
    }
    found = []
    for route in mount.app.get().routes:
        assert isinstance(route, APIRoute)
        if "GET" in route.methods:
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill[m.group(1)], route.path)
            query = {
                "/task": "?id=1",
                "/api/cron": "?expression=0+3+*+*+*",
                "/entity": "?route=orders-to-erp&entity_key=SO-1",
                "/api/entity": "?route=orders-to-erp&entity_key=SO-1",
                "/cron": "?expression=0+3+*+*+*",
            }
            found.append(PREFIX + path + query.get(route.path, ""))
    return found


def test_every_answer_says_nosniff_allows_only_our_scripts_and_keeps_out_of_caches(
    server: Server, tokens: dict[str, str], project: Path
) -> None:
    store = store_of(project)
    (task,) = store.add_entities(["orders-to-erp"], [("SO-1", {"id": "SO-1", "secret": "x"})], return_ids=True).task_ids
    urls = _every_get(server, task)
    assert len(urls) >= 20, urls
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    answers = [httpx.get(server.url + url, headers=admin, follow_redirects=False, timeout=30) for url in urls]
    answers += [httpx.get(server.url + url, follow_redirects=False, timeout=30) for url in urls]  # 401s
    answers.append(httpx.get(f"{server.url}{PREFIX}/no-such-page", headers=admin, timeout=30))
    answers.append(httpx.post(f"{server.url}{PREFIX}/webhooks/shop-orders", content=b"x", headers=admin, timeout=30))
    answers.append(httpx.get(f"{server.url}{PREFIX}/tasks/99999", headers=admin, timeout=30))
    statuses = {a.status_code for a in answers}
    assert {200, 303, 401, 404, 415} <= statuses, statuses
    for answer in answers:
        where = (answer.request.method, str(answer.request.url), answer.status_code)
        assert answer.headers.get("x-content-type-options") == "nosniff", where
        policy = {
            part.strip().split(" ", 1)[0]: part.strip().split(" ")[1:]
            for part in answer.headers.get("content-security-policy", "").split(";")
            if part.strip()
        }
        assert policy.get("script-src") == ["'self'"], (where, policy)
        assert policy.get("object-src") == ["'none'"] and policy.get("base-uri") == ["'none'"], (where, policy)
        assert policy.get("frame-ancestors") == ["'self'"], (where, policy)
        kind = answer.headers.get("content-type", "")
        if kind.startswith(("application/json", "text/html")) or answer.status_code in (303, 401, 404):
            assert "no-store" in answer.headers.get("cache-control", ""), where
    for answer in answers:
        if answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"):
            markup = _Markup()
            markup.feed(answer.text)
            where = str(answer.request.url)
            assert markup.inline == [] and markup.handlers == [], (where, markup.inline, markup.handlers)
            assert markup.scripts, f"{where}: no script at all (the page's links into Airflow need one)"
            for script in markup.scripts:
                src = script.get("src") or ""
                assert src and not src.startswith(("http:", "https:", "//")), (where, script)
                served = httpx.get(str(answer.request.url.join(src)), headers=admin, timeout=30)
                assert served.status_code == 200, (where, src, served.text)
                assert served.headers["content-type"].startswith("text/javascript"), (src, served.headers)
                assert served.headers["x-content-type-options"] == "nosniff"


def test_the_script_route_serves_only_its_own_files(server: Server, tokens: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for name in ("../app.py", "..%2Fapp.py", "%2e%2e%2fapp.py", "base.html", "pages.js%00", "PAGES.JS", "x" * 300):
        answer = httpx.get(f"{server.url}{PREFIX}/static/{name}", headers=admin, timeout=30)
        assert answer.status_code == 404, (name, answer.status_code, answer.text[:200])
        assert "import" not in answer.text and "<html" not in answer.text
    assert httpx.get(f"{server.url}{PREFIX}/static/pages.js", timeout=30).status_code == 401


def test_webhook_answers_show_no_server_path(server: Server, tokens: dict[str, str], project: Path) -> None:
    """A webhook caller (a token that may trigger runs, or only the webhook's secret) learns no folder of the server."""
    routes = project / "configurations" / "routes"
    for route in routes.glob("*.yaml"):
        route.unlink()  # no route uses shop-orders any more: the 409
    incoming = project / "configurations" / "incoming"
    (incoming / "broken.yaml").write_text("name: Broken\nsubscriber: 7\n", encoding="utf-8")
    shop = incoming / "shop-orders.yaml"
    shop.write_text(shop.read_text() + "webhook:\n  connection: shop_orders_webhook\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_SHOP_ORDERS_WEBHOOK", '{"conn_type": "generic", "password": "s3cret"}')
        callers = [{"Authorization": f"Bearer {tokens['user']}"}, {"X-Webhook-Secret": "s3cret"}]
        answers = []
        for caller in callers:
            url = f"{server.url}{PREFIX}/webhooks"
            answers.append(httpx.post(f"{url}/shop-orders", json={"id": 1}, headers=caller, timeout=30))
            answers.append(httpx.post(f"{url}/broken", json={"id": 1}, headers=caller, timeout=30))
            answers.append(httpx.post(f"{url}/nope", json={"id": 1}, headers=caller, timeout=30))
            answers.append(
                httpx.post(
                    f"{url}/shop-orders",
                    content=b"[1",
                    headers={**caller, "Content-Type": "application/json"},
                    timeout=30,
                )
            )
    assert answers[0].status_code == 409, answers[0].text
    assert answers[1].status_code == 404, answers[1].text
    assert answers[4].status_code == 409, answers[4].text
    folders = {str(project), str(project.resolve()), str(ROOT), str(_HOME), "/tmp/", "/work/"}
    for answer in answers:
        for folder in folders:
            assert folder not in answer.text, (answer.request.url, answer.status_code, answer.text)
    assert "add a route" in answers[0].json()["detail"].lower()
