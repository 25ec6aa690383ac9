"""Cross-site requests against a real Airflow API server (conftest's ``server``): the CSRF token is bound to
the login session, not to the user.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa
from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
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
