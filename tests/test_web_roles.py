"""Each of Airflow's roles (Viewer, User, Op, Admin, with the Simple auth manager) on every route of the plugin's
app, in a real API server: a Viewer reads every page and JSON route, payloads included, and changes nothing; a
User, an Op and an Admin may act (README, Security: "Who can do what").

The matrix is keyed by the app's own routes: ``test_the_matrix_covers_every_route_of_the_app`` fails when a
route is added without a line here, so a new route cannot be missed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from helpers.live_api import PREFIX, Server, store_of, token_for

from scheduled_jobs.store.schema import tasks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

ROLES = ("viewer", "user", "op", "admin")
PASSWORDS = {role: f"{role}-pw" for role in ROLES}
ROUTE, KEY, JOB, INCOMING = "orders-to-erp", "order-1", "prune-tasks", "shop-orders"
PAYLOAD = {"order": "payload-marker-7731"}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    from conftest import _HOME

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{r}:{r}" for r in ROLES))
        passwords = _HOME / "web-roles-passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        from airflow.api_fastapi.app import create_app, purge_cached_app

        try:
            with Server(create_app()) as running:
                yield running
        finally:
            purge_cached_app()


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    return {name: token_for(server, name, password) for name, password in PASSWORDS.items()}


@pytest.fixture
def seeded(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """UI editing on; one task on the route (``new``) and one failed (for retry)."""
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    store = store_of(project)
    added = store.add_entities([ROUTE], [(KEY, PAYLOAD), ("order-2", {"order": 2})], return_ids=True)
    first, failed = added.task_ids
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id == failed).values(status="failed", last_error="boom"))
    return {"task": first, "failed": failed}


# -- the matrix ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    """A state-changing request: its body, what a role that may act gets, and how to see it changed."""

    body: Callable[[Path, dict[str, int]], dict[str, Any]]
    allowed: int
    changed: Callable[[Path, dict[str, int]], bool]
    prepare: Callable[[Path], None] = lambda project: None
    kind: str = "form"


def _status(project: Path, task_id: int) -> str | None:
    with store_of(project).engine.connect() as conn:
        found = conn.execute(sa.select(tasks.c.status).where(tasks.c.id == task_id)).scalar()
    return None if found is None else str(found)


def _job_text(project: Path, name: str = JOB) -> str:
    return (project / "job_definitions" / f"{name}.yaml").read_text()


def _version(project: Path) -> str:
    return hashlib.sha256((project / "job_definitions" / f"{JOB}.yaml").read_bytes()).hexdigest()


def _disable_on_disk(project: Path) -> None:
    path = project / "job_definitions" / f"{JOB}.yaml"
    path.write_text(path.read_text() + "disabled: true\n")


NEW_JOB = {"name": "Role check", "job": "prune_tasks", "retention_days": "3", "expression": "@daily"}
EDIT = {"name": "Prune tasks", "job": "prune_tasks", "retention_days": "9", "expression": "@daily"}

ACTIONS: dict[tuple[str, str], Act] = {
    ("POST", "/jobs/new"): Act(
        lambda p, ids: {**NEW_JOB, "do": "save"},
        201,
        lambda p, ids: (p / "job_definitions" / "role-check.yaml").exists(),
    ),
    ("POST", "/jobs/{identifier}/edit"): Act(
        lambda p, ids: {**EDIT, "version": _version(p), "do": "save"},
        200,
        lambda p, ids: "retention_days: 9" in _job_text(p),
    ),
    ("POST", "/jobs/{identifier}/disable"): Act(
        lambda p, ids: {}, 200, lambda p, ids: "disabled: true" in _job_text(p)
    ),
    ("POST", "/jobs/{identifier}/enable"): Act(
        lambda p, ids: {}, 200, lambda p, ids: "disabled: false" in _job_text(p), _disable_on_disk
    ),
    ("POST", "/tasks/actions"): Act(
        lambda p, ids: {"do": "delete-selected", "id": str(ids["task"])},
        200,
        lambda p, ids: _status(p, ids["task"]) is None,
    ),
    ("POST", "/api/tasks/retry"): Act(
        lambda p, ids: {"ids": [ids["failed"]]}, 200, lambda p, ids: _status(p, ids["failed"]) == "new", kind="json"
    ),
    ("POST", "/api/tasks/skip"): Act(
        lambda p, ids: {"ids": [ids["task"], ids["failed"]], "reason": "role check"},
        200,
        lambda p, ids: _status(p, ids["task"]) == "skipped",
        kind="json",
    ),
    ("POST", "/api/tasks/delete"): Act(
        lambda p, ids: {"ids": [ids["task"]]}, 200, lambda p, ids: _status(p, ids["task"]) is None, kind="json"
    ),
    ("POST", "/webhooks/{incoming_configuration}"): Act(
        lambda p, ids: {"id": "role-push-1", "status": "new"},
        202,
        lambda p, ids: store_of(p).counts()["new"] > 1,
        kind="json",
    ),
}
"""Every state-changing route: a Viewer gets 403 and nothing changes; User, Op and Admin change it."""

READS: dict[tuple[str, str], tuple[dict[str, Any], int, bool]] = {
    ("GET", "/jobs"): ({}, 200, False),
    ("GET", "/static/{name}"): ({}, 200, False),
    ("GET", "/cron"): ({"expression": "0 2 * * *"}, 200, False),
    ("GET", "/tasks"): ({}, 200, False),
    ("GET", "/task"): ({"id": "{task}"}, 303, False),
    ("GET", "/tasks/list"): ({"route": ROUTE}, 200, False),
    ("GET", "/tasks/{task_id}"): ({}, 200, True),
    ("GET", "/entity"): ({"route": ROUTE, "entity_key": KEY}, 200, True),
    ("GET", "/processes"): ({}, 200, False),
    ("GET", "/jobs/new"): ({}, 200, False),
    ("GET", "/jobs/{identifier}/edit"): ({}, 200, False),
    ("GET", "/api/jobs"): ({}, 200, False),
    ("GET", "/api/cron"): ({"expression": "0 2 * * *"}, 200, False),
    ("GET", "/api/routes"): ({}, 200, False),
    ("GET", "/api/routes/{route}/stuck"): ({}, 200, False),
    ("GET", "/api/routes/{route}/errors"): ({}, 200, False),
    ("GET", "/api/tasks"): ({"route": ROUTE}, 200, False),
    ("GET", "/api/tasks/count"): ({}, 200, False),
    ("GET", "/api/tasks/{task_id}"): ({}, 200, True),
    ("GET", "/api/entities/{route}/{entity_key:path}"): ({}, 200, True),
    ("GET", "/api/entity"): ({"route": ROUTE, "entity_key": KEY}, 200, True),
    ("GET", "/api/csrf-token"): ({}, 200, False),
    ("GET", "/api/processes"): ({}, 200, False),
    ("GET", "/api/processes/history"): ({}, 200, False),
    ("GET", "/api/processes/skipped"): ({}, 200, False),
}
"""Every read: (query, status for every role, whether the answer shows the task's payload)."""

PREVIEWS = {("POST", "/jobs/new"): NEW_JOB, ("POST", "/jobs/{identifier}/edit"): EDIT}
"""Forms whose "Show the YAML" writes nothing: every role, the Viewer too, gets the YAML."""


def _path(template: str, ids: dict[str, int]) -> str:
    filled = {
        "{identifier}": JOB,
        "{task_id}": str(ids["task"]),
        "{route}": ROUTE,
        "{entity_key:path}": KEY,
        "{incoming_configuration}": INCOMING,
        "{name}": "pages.js",
    }
    for name, value in filled.items():
        template = template.replace(name, value)
    assert "{" not in template, template
    return PREFIX + template


def _send(server: Server, token: str, method: str, path: str, kind: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}  # a bearer token: CSRF is not what is tested here
    if kind == "json":
        return httpx.request(method, server.url + path, json=body, headers=headers, timeout=30)
    return httpx.request(method, server.url + path, data=body, headers=headers, timeout=30, follow_redirects=False)


def test_the_matrix_covers_every_route_of_the_app() -> None:
    from fastapi.routing import APIRoute

    from scheduled_jobs.web.app import create_app

    served = {
        (method, route.path) for route in create_app().routes if isinstance(route, APIRoute) for method in route.methods
    }
    listed = set(ACTIONS) | set(READS)
    assert served == listed, {"not in the matrix": sorted(served - listed), "gone": sorted(listed - served)}
    assert all(method != "GET" for method, _ in ACTIONS) and all(method == "GET" for method, _ in READS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ACTIONS), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_role_on_each_state_changing_route(
    server: Server, tokens: dict[str, str], project: Path, seeded: dict[str, int], route: tuple[str, str], role: str
) -> None:
    act = ACTIONS[route]
    act.prepare(project)
    before = {p.name: p.read_bytes() for p in (project / "job_definitions").iterdir()}
    answer = _send(server, tokens[role], route[0], _path(route[1], seeded), act.kind, act.body(project, seeded))
    if role == "viewer":
        assert answer.status_code == 403, (route, answer.status_code, answer.text[:500])
        assert not act.changed(project, seeded), f"a Viewer changed something through {route}"
        assert {p.name: p.read_bytes() for p in (project / "job_definitions").iterdir()} == before
        assert (_status(project, seeded["task"]), _status(project, seeded["failed"])) == ("new", "failed")
    else:
        assert answer.status_code == act.allowed, (route, role, answer.status_code, answer.text[:800])
        assert act.changed(project, seeded), f"{role} got {answer.status_code} from {route} and nothing changed"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(PREVIEWS), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_role_may_show_the_yaml_and_it_writes_nothing(
    server: Server, tokens: dict[str, str], project: Path, seeded: dict[str, int], route: tuple[str, str], role: str
) -> None:
    before = {p.name: p.read_bytes() for p in (project / "job_definitions").iterdir()}
    answer = _send(
        server,
        tokens[role],
        route[0],
        _path(route[1], seeded),
        "form",
        {**PREVIEWS[route], "version": _version(project), "do": "preview"},
    )
    assert answer.status_code == 200, (route, role, answer.text[:500])
    assert 'id="yaml"' in answer.text
    assert {p.name: p.read_bytes() for p in (project / "job_definitions").iterdir()} == before


def test_each_role_reads_every_page_and_json_route_with_payloads(
    server: Server, tokens: dict[str, str], project: Path, seeded: dict[str, int]
) -> None:
    for role in ROLES:
        for (method, template), (query, expected, shows_payload) in READS.items():
            params = {k: str(v).format(**seeded) for k, v in query.items()}
            answer = httpx.request(
                method,
                server.url + _path(template, seeded),
                params=params,
                headers={"Authorization": f"Bearer {tokens[role]}"},
                timeout=30,
                follow_redirects=False,
            )
            assert answer.status_code == expected, (role, template, answer.status_code, answer.text[:500])
            if shows_payload:
                assert PAYLOAD["order"] in answer.text, (role, template)
    assert (_status(project, seeded["task"]), _status(project, seeded["failed"])) == ("new", "failed")
