"""Cross-site requests against a real Airflow API server (conftest's ``server``): the CSRF token is bound to
the login session, not to the user.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
from conftest import _HOME, ROOT
from helpers.live_api import PREFIX, Server, store_of, token_for

from scheduled_jobs.store.schema import task_events, tasks

if TYPE_CHECKING:
    from pathlib import Path

    from scheduled_jobs.store import TaskStore

ROUTE = "orders-to-erp"
FOREIGN = {"Origin": "http://evil.example", "Referer": "http://evil.example/page"}


def everything(store: TaskStore) -> list[tuple[Any, ...]]:
    """Every task row and event row: to check that a refused request changed nothing."""
    with store.engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(sa.select(tasks).order_by(tasks.c.id))]
        found += [tuple(r) for r in conn.execute(sa.select(task_events).order_by(task_events.c.id))]
    return found


def page_token(server: Server, session: str, path: str = "/tasks/list") -> str:
    """The CSRF token a page's forms carry in the browser session signed in by the ``_token`` cookie ``session``."""
    answer = httpx.get(f"{server.url}{PREFIX}{path}", cookies={"_token": session}, timeout=30)
    assert answer.status_code == 200, answer.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
    assert found, "the page has no CSRF token"
    return found.group(1)


def form_post(server: Server, session: str, path: str, fields: list[tuple[str, str]]) -> httpx.Response:
    """A form POST as a browser sends it, signed in by the session cookie only."""
    return httpx.post(
        f"{server.url}{PREFIX}{path}",
        content=urlencode(fields),
        cookies={"_token": session},
        headers={"Content-Type": "application/x-www-form-urlencoded", **FOREIGN},
        timeout=30,
    )


def logout(server: Server, session: str) -> None:
    answer = httpx.get(f"{server.url}/api/v2/auth/logout", cookies={"_token": session}, timeout=30)
    assert answer.status_code in (302, 303, 307), answer.text


# -- the token is the session's -------------------------------------------------------------------------


def test_a_csrf_token_read_in_an_earlier_session_is_refused_in_the_next(server: Server, project: Path) -> None:
    store = store_of(project)
    (failed,) = store.add_entities([ROUTE], [("SO-1", {"id": "SO-1"})], return_ids=True).task_ids
    (claimed,) = store.claim(ROUTE, 1)
    store.fail(claimed, "HTTP 422 from the ERP", retryable=False)
    first = token_for(server, "admin")
    old_token = page_token(server, first)
    old_api_token = httpx.get(f"{server.url}{PREFIX}/api/csrf-token", cookies={"_token": first}, timeout=30).json()
    logout(server, first)
    if hasattr(BaseAuthManager, "revoke_token"):  # Airflow 3.2 and up end the JWT at logout; 3.1 does not
        ended = httpx.get(f"{server.url}{PREFIX}/api/csrf-token", cookies={"_token": first}, timeout=30)
        assert ended.status_code in (401, 403), ended.text
    second = token_for(server, "admin")  # the same user signs in again: a new JWT, a new session
    assert second != first
    before = everything(store)
    for token in (old_token, old_api_token["token"]):
        refused = [
            form_post(
                server,
                second,
                "/tasks/actions",
                [("csrf_token", token), ("do", "delete-selected"), ("id", str(failed))],
            ),
            form_post(server, second, "/jobs/prune-tasks/disable", [("csrf_token", token)]),
            httpx.post(
                f"{server.url}{PREFIX}/api/tasks/delete",
                json={"ids": [failed]},
                cookies={"_token": second},
                headers={"X-CSRF-Token": token, **FOREIGN},
                timeout=30,
            ),
        ]
        for answer in refused:
            assert answer.status_code == 403, (answer.request.url, answer.text)
            assert "CSRF token" in answer.json()["detail"]
    assert everything(store) == before
    assert "disabled: true" not in (project / "job_definitions" / "prune-tasks.yaml").read_text(encoding="utf-8")
    # The new session's own token signs its requests.
    new_token = page_token(server, second)
    assert new_token != old_token
    accepted = form_post(
        server, second, "/tasks/actions", [("csrf_token", new_token), ("do", "retry-selected"), ("id", str(failed))]
    )
    assert accepted.status_code == 200 and 'data-changed="1"' in accepted.text, accepted.text
    api = httpx.post(
        f"{server.url}{PREFIX}/api/tasks/skip",
        json={"ids": [failed], "reason": "not needed"},
        cookies={"_token": second},
        headers={"X-CSRF-Token": new_token},
        timeout=30,
    )
    assert api.status_code == 200 and api.json()["changed"] == 1, api.text


def test_two_sessions_of_one_user_at_once_do_not_share_a_token(server: Server, project: Path) -> None:
    """Two browsers of one user: a token one of them shows signs nothing in the other."""
    store = store_of(project)
    (task,) = store.add_entities([ROUTE], [("SO-2", {"id": "SO-2"})], return_ids=True).task_ids
    laptop, phone = token_for(server, "admin"), token_for(server, "admin")
    laptop_token = page_token(server, laptop)
    before = everything(store)
    stolen = form_post(
        server, phone, "/tasks/actions", [("csrf_token", laptop_token), ("do", "delete-selected"), ("id", str(task))]
    )
    assert stolen.status_code == 403, stolen.text
    assert everything(store) == before
    own = form_post(
        server, laptop, "/tasks/actions", [("csrf_token", laptop_token), ("do", "delete-selected"), ("id", str(task))]
    )
    assert own.status_code == 200 and 'data-changed="1"' in own.text, own.text


# -- a cross-origin POST signed in by the cookie alone ---------------------------------------------------


def asset_events() -> int:
    """Every event on any asset in Airflow's metadata database: a real-time export handed over is one."""
    engine = sa.create_engine(f"sqlite:///{_HOME / 'airflow.db'}")
    try:
        with engine.connect() as conn:
            found: int = conn.execute(sa.text("SELECT count(*) FROM asset_event")).scalar_one()
    finally:
        engine.dispose()
    return found


@pytest.fixture
def dags_in_airflow(project: Path) -> None:
    """The project's DAGs in Airflow's metadata database, so that a webhook could hand a real-time route over."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from helpers.airflow_compat import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(ROOT / "dags")), "dags-folder", None)


def state_changing_routes(server: Server) -> list[tuple[str, str]]:
    """(method, path) of every POST, PUT, PATCH and DELETE route of the plugin's app, parameters filled in."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from scheduled_jobs.web.plugin import LazyApp

    (mount,) = [r for r in server.app.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert isinstance(mount.app, LazyApp)
    fill = {"identifier": "orders-to-erp-export", "incoming_configuration": "shop-orders", "task_id": "1"}
    found = []
    for route in mount.app.get().routes:
        assert isinstance(route, APIRoute), route
        for method in sorted(route.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill[m.group(1)], route.path)
            found.append((method, PREFIX + path))
    return found


def files_of(project: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for folder in ("job_definitions", "configurations")
        for p in (project / folder).rglob("*")
        if p.is_file()
    }


def test_a_cross_origin_text_plain_post_with_only_the_cookie_changes_nothing_on_any_route(
    server: Server, tokens: dict[str, str], project: Path, dags_in_airflow: None
) -> None:
    """What a plain HTML form (enctype text/plain) or a no-cors fetch from another site sends: the browser adds
    the ``_token`` cookie, and nothing else of the user's. Its body is crafted to parse as the route expects."""
    store = store_of(project)
    (task,) = store.add_entities([ROUTE], [("SO-1", {"id": "SO-1"})], return_ids=True).task_ids
    routes = state_changing_routes(server)
    assert {p for _, p in routes} >= {
        f"{PREFIX}/webhooks/shop-orders",
        f"{PREFIX}/tasks/actions",
        f"{PREFIX}/api/tasks/delete",
        f"{PREFIX}/jobs/new",
        f"{PREFIX}/jobs/orders-to-erp-export/disable",
    }, routes
    before, files, events = everything(store), files_of(project), asset_events()
    for method, path in routes:
        if "/webhooks/" in path or "/api/" in path:
            body = f'[{{"id": "SO-9", "ids": [{task}], "reason": "x", "pad": "="}}]'
            if "/api/" in path:
                body = f'{{"ids": [{task}], "reason": "x", "pad": "="}}'
        else:
            body = f"do=delete-selected&id={task}&name=Evil&job=repair_stuck_tasks&expression=0+*+*+*+*&save=1"
        answer = httpx.request(
            method,
            server.url + path,
            content=body,
            cookies={"_token": tokens["admin"]},
            headers={"Content-Type": "text/plain", **FOREIGN},
            timeout=30,
        )
        assert answer.status_code in (403, 415), (method, path, answer.status_code, answer.text)
    assert everything(store) == before, "a cross-origin POST changed the store"
    assert files_of(project) == files, "a cross-origin POST changed a definition"
    assert asset_events() == events, "a cross-origin POST handed an export to Airflow"


def test_the_webhook_signed_in_by_the_cookie_needs_the_csrf_header(
    server: Server, tokens: dict[str, str], project: Path
) -> None:
    store = store_of(project)
    session = tokens["admin"]
    url = f"{server.url}{PREFIX}/webhooks/shop-orders"
    json_type = {"Content-Type": "application/json"}
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": "1.deadbeef"}):
        refused = httpx.post(
            url, content=b'{"id": "C-1"}', cookies={"_token": session}, headers={**json_type, **headers}, timeout=30
        )
        assert refused.status_code == 403, refused.text
        assert "CSRF token" in refused.json()["detail"]
    assert store.counts()["new"] == 0
    token = page_token(server, session)
    accepted = httpx.post(
        url,
        content=b'{"id": "C-1"}',
        cookies={"_token": session},
        headers={**json_type, "X-CSRF-Token": token},
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    assert store.counts()["new"] == 1


def test_the_webhook_takes_only_json_bodies(server: Server, tokens: dict[str, str], project: Path) -> None:
    store = store_of(project)
    url = f"{server.url}{PREFIX}/webhooks/shop-orders"
    bearer = {"Authorization": f"Bearer {tokens['user']}"}
    for content_type in (
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
        "application/json-seq",
        "text/plain; application/json",
    ):
        headers = {**bearer, **({"Content-Type": content_type} if content_type else {})}
        refused = httpx.post(url, content=b'{"id": "T-1"}', headers=headers, timeout=30)
        assert refused.status_code == 415, (content_type, refused.text)
        detail = refused.json()["detail"]
        assert "application/json" in detail and "nothing was stored" in detail, detail
    assert store.counts()["new"] == 0
    for n, content_type in enumerate(
        ("application/json", "application/json; charset=utf-8", "Application/JSON ; charset=UTF-8")
    ):
        accepted = httpx.post(
            url, content=f'{{"id": "J-{n}"}}'.encode(), headers={**bearer, "Content-Type": content_type}, timeout=30
        )
        assert accepted.status_code == 202, (content_type, accepted.text)
    assert store.counts()["new"] == 3
