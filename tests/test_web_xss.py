"""Stored XSS through every field a page shows: a job's name and description, an entity key, a payload, a
destination's error, a skip reason, and the search parameters echoed back. Each holds a ``<script>`` and a
``"><img onerror>`` marker; every page that shows it is rendered by a real API server, and the marker must
arrive escaped (as text), never as markup.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from helpers.live_api import PREFIX, Server, store_of
from markupsafe import escape

from scheduled_jobs.store.schema import tasks

if TYPE_CHECKING:
    from pathlib import Path

ROUTE = "orders-to-erp"


def marker(field: str) -> str:
    return f'"><img src=x onerror=alert("{field}")><script>alert("{field}")</script>'


RAW = ("<script>alert(", "<img src=x")
"""What would be markup if any marker arrived unescaped (``onerror=`` alone is text once ``<`` is escaped)."""


def _shown_escaped(page: str, field: str) -> bool:
    text = marker(field)
    as_json = json.dumps(text)[1:-1]  # a payload is shown as JSON: its quotes are backslash-escaped
    return any(str(escape(form)) in page or html.escape(form, quote=False) in page for form in (text, as_json))


@pytest.fixture
def stored(project: Path) -> dict[str, int]:
    """A job whose name and description, and a task whose key, payload, error and skip reason hold markers."""
    (project / "job_definitions" / "xss-job.yaml").write_text(
        f"name: '{marker('name')}'\n"
        "identifier: xss-job\n"
        f"description: '{marker('description')}'\n"
        "job: prune_tasks\nretention_days: 3\nexpression: '@daily'\n",
        encoding="utf-8",
    )
    store = store_of(project)
    added = store.add_entities(
        [ROUTE], [(marker("key"), {"note": marker("payload")}), ("plain", {"n": 1})], return_ids=True
    )
    task, failed = added.task_ids
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id == failed).values(status="failed", last_error=marker("error")))
    return {"task": task, "failed": failed}


def _get(server: Server, token: str, path: str, **params: str) -> httpx.Response:
    answer = httpx.get(
        server.url + PREFIX + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200, (path, params, answer.status_code, answer.text[:500])
    return answer


def _assert_no_markup(page: str, where: str) -> None:
    for raw in RAW:
        assert raw not in page, f"{where}: {raw!r} arrived as markup"


def test_every_stored_field_arrives_escaped_on_every_page(
    server: Server, tokens: dict[str, str], stored: dict[str, int]
) -> None:
    admin = tokens["admin"]
    skipped = httpx.post(
        f"{server.url}{PREFIX}/api/tasks/skip",
        json={"ids": [stored["task"]], "reason": marker("reason")},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert skipped.status_code == 200, skipped.text
    pages = {
        "/jobs": ("name", "description"),
        "/jobs/xss-job/edit": ("name", "description"),
        "/tasks": (),
        "/tasks/list": ("key",),
        f"/tasks/{stored['task']}": ("key", "payload", "reason"),
        f"/tasks/{stored['failed']}": ("error",),
        "/processes": (),
    }
    for path, fields in pages.items():
        page = _get(server, admin, path).text
        _assert_no_markup(page, path)
        for field in fields:
            assert _shown_escaped(page, field), f"{path} does not show the {field} (escaped)"
    entity = _get(server, admin, "/entity", route=ROUTE, entity_key=marker("key")).text
    _assert_no_markup(entity, "/entity")
    assert _shown_escaped(entity, "key") and _shown_escaped(entity, "payload")
    listed = _get(server, admin, "/tasks/list", route=ROUTE, status="failed").text
    _assert_no_markup(listed, "/tasks/list?status=failed")
    assert _shown_escaped(listed, "error"), "the task list does not show the destination's error (escaped)"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/jobs", "name"),
        ("/tasks/list", "entity_key"),
        ("/tasks/list", "route"),
        ("/tasks/list", "q"),
        ("/cron", "expression"),
        ("/cron", "timezone"),
        ("/entity", "entity_key"),
        ("/entity", "route"),
    ],
)
def test_a_search_parameter_is_echoed_escaped(
    server: Server, tokens: dict[str, str], project: Path, path: str, parameter: str
) -> None:
    params = {"route": ROUTE} if path == "/entity" else {}
    params[parameter] = marker(parameter)
    answer = httpx.get(
        server.url + PREFIX + path,
        params=params,
        headers={"Authorization": f"Bearer {tokens['admin']}"},
        timeout=30,
    )
    assert answer.status_code in (200, 404, 422), (path, parameter, answer.status_code)
    if answer.headers["content-type"].startswith("text/html"):
        _assert_no_markup(answer.text, f"{path}?{parameter}=")
    else:  # a refusal as JSON is no page: a browser never renders it as markup
        assert answer.headers["content-type"].startswith("application/json"), answer.headers["content-type"]
