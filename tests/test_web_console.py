"""The operator's console in a real Airflow API server (conftest's ``server``): the task list and its
filters, a task's history, an entity's page, the actions by ids and by filter, who may act, CSRF, the
audit log, hostile input, and the history of processes. On SQLite and PostgreSQL (``any_store``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa
from conftest import _HOME
from helpers.live_api import PREFIX, Server

from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.store.schema import job_runs, skipped_runs, task_events, tasks

if TYPE_CHECKING:
    from scheduled_jobs.store import TaskStore

ROUTE = "orders-to-erp"
EXPORT = Actor(
    kind="run",
    dag_id="orders-to-erp-export",
    run_id="scheduled__2026-05-01T08:00:00+00:00",
    task_id="export_route",
    try_number=2,
)
WEBHOOK = Actor(kind="webhook", user="admin")


# -- helpers -----------------------------------------------------------------------------------------


def seed(store: TaskStore) -> dict[str, Any]:
    """On orders-to-erp, oldest first: SO-1..SO-8 and a key holding '/', '%' and '_'.

    SO-1 finished; SO-2, SO-3 failed and retryable (will be retried); SO-4 failed for good; SO-5
    processing; the rest new. Created by the export run (SO-1..SO-4) or a webhook (the rest).
    """
    keys = [f"SO-{n}" for n in range(1, 9)] + ["SO/9%_x"]
    ids = store.add_entities([ROUTE], [(k, {"id": k, "note": "<b>bold</b>"}) for k in keys], return_ids=True).task_ids
    by_key = dict(zip(keys, ids, strict=True))
    (first,) = store.claim(ROUTE, 1)
    store.finish(first)
    failing = store.claim(ROUTE, 3)
    store.fail(failing[0], "HTTP 503 from the ERP", retryable=True)
    store.fail(failing[1], "HTTP 503 from the ERP", retryable=True)
    store.fail(failing[2], "HTTP 422 from the ERP: <i>bad</i>", retryable=False)
    (processing,) = store.claim(ROUTE, 1)
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id.in_(ids[:4])).values(created_by=EXPORT.to_json()))
        conn.execute(sa.update(tasks).where(tasks.c.id.in_(ids[4:])).values(created_by=WEBHOOK.to_json()))
    return {"ids": ids, "by_key": by_key, "processing": processing.id}


def listed(client: httpx.Client, **params: Any) -> list[int]:
    answer = client.get("/api/tasks", params=params)
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["rows"]]


def statuses(store: TaskStore, ids: list[int]) -> dict[int, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(ids))).all()
    return {row.id: row.status for row in rows}


def everything(store: TaskStore) -> list[tuple[Any, ...]]:
    """Every task row and event row: to check that a refused request changed nothing."""
    with store.engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(sa.select(tasks).order_by(tasks.c.id))]
        found += [tuple(r) for r in conn.execute(sa.select(task_events).order_by(task_events.c.id))]
    return found


def audit_rows(since_id: int = 0) -> list[dict[str, Any]]:
    """Our rows in Airflow's audit log (the ``log`` table of the metadata database)."""
    engine = sa.create_engine(f"sqlite:///{_HOME / 'airflow.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, dttm, event, owner, extra FROM log WHERE event LIKE 'scheduled_jobs.%' AND id > :id ORDER BY id"
                ),
                {"id": since_id},
            ).all()
    finally:
        engine.dispose()
    return [
        {"id": r.id, "dttm": r.dttm, "event": r.event, "owner": r.owner, "extra": json.loads(r.extra)} for r in rows
    ]


def last_audit_id() -> int:
    rows = audit_rows()
    return rows[-1]["id"] if rows else 0


def page_token(server: Server, token: str, path: str = "/tasks/list") -> str:
    """The CSRF token a page's forms carry for the user signed in by the ``_token`` cookie."""
    answer = httpx.get(f"{server.url}{PREFIX}{path}", cookies={"_token": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
    assert found, "the page has no CSRF token"
    return found.group(1)


def form_post(server: Server, token: str, fields: list[tuple[str, str]], **headers: str) -> httpx.Response:
    """A form POST as the browser sends it, signed in by the session cookie only."""
    return httpx.post(
        f"{server.url}{PREFIX}/tasks/actions",
        content=urlencode(fields),
        cookies={"_token": token},
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        timeout=30,
    )


# -- find ------------------------------------------------------------------------------------------------


def test_the_task_list_filters_newest_first_and_pages_by_keyset(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = seed(store)
    ids, by_key = seeded["ids"], seeded["by_key"]
    assert listed(client) == sorted(ids, reverse=True)
    # Keyset: size 2 from the newest, each next page older than the last id; every task exactly once.
    pages, before = [], None
    while True:
        params: dict[str, Any] = {"size": 2, **({"before": before} if before else {})}
        body = client.get("/api/tasks", params=params).json()
        pages.append([row["id"] for row in body["rows"]])
        before = body["next_before"]
        if before is None:
            break
    assert [i for page in pages for i in page] == sorted(ids, reverse=True)
    assert len(pages) == 5 and pages[-1] == [ids[0]]
    # Status filters, "will be retried" included.
    failed = [by_key["SO-4"], by_key["SO-3"], by_key["SO-2"]]
    assert listed(client, status="failed") == failed
    assert listed(client, status="will_retry") == [by_key["SO-3"], by_key["SO-2"]]
    assert listed(client, status="processing") == [seeded["processing"]]
    assert listed(client, status="finished") == [by_key["SO-1"]]
    assert listed(client, route="products-to-webshop") == []
    # Entity key: exact, or a prefix where % and _ are plain characters.
    assert listed(client, entity_key="SO-1") == [by_key["SO-1"]]
    assert listed(client, entity_key="SO", prefix="true") == sorted(
        [i for k, i in by_key.items() if k.startswith("SO")], reverse=True
    )
    assert listed(client, entity_key="SO/9%", prefix="true") == [by_key["SO/9%_x"]]
    assert listed(client, entity_key="SO/9_%", prefix="true") == []
    assert listed(client, entity_key="%", prefix="true") == []
    # Created and updated ranges (naive = UTC; an offset is converted).
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(tasks).where(tasks.c.id == by_key["SO-6"]).values(created_at=dt.datetime(2026, 1, 1, 12))
        )
        conn.execute(
            sa.update(tasks).where(tasks.c.id == by_key["SO-7"]).values(updated_at=dt.datetime(2026, 1, 2, 12))
        )
    assert listed(client, created_after="2026-01-01T11:00", created_before="2026-01-01T13:00") == [by_key["SO-6"]]
    assert listed(client, created_after="2026-01-01T13:30+02:00", created_before="2026-01-01T12:00:01Z") == [
        by_key["SO-6"]
    ]
    assert listed(client, updated_after="2026-01-02", updated_before="2026-01-03") == [by_key["SO-7"]]
    assert by_key["SO-6"] not in listed(client, created_after="2026-01-02")
    # The page: the same rows, the label, the keyset links, the filter kept.
    html = client.get("/tasks/list", params={"route": ROUTE, "status": "will_retry"}).text
    assert re.findall(r'<tr data-task="(\d+)"', html) == [str(by_key["SO-3"]), str(by_key["SO-2"])]
    assert "failed, will be retried" in html
    html = client.get("/tasks/list").text
    assert len(re.findall(r'<tr data-task="', html)) == len(ids) and 'id="older"' not in html
    many = [(f"bulk-{n:03}", {"n": n}) for n in range(55)]
    bulk = store.add_entities(["products-to-webshop"], many, return_ids=True).task_ids
    html = client.get("/tasks/list", params={"route": "products-to-webshop"}).text
    shown = [int(i) for i in re.findall(r'<tr data-task="(\d+)"', html)]
    assert shown == sorted(bulk, reverse=True)[:50]
    older = re.search(r'href="../tasks/list\?([^"]+)" id="older"', html)
    assert older is not None
    assert older.group(1).replace("&amp;", "&") == f"route=products-to-webshop&before={shown[-1]}"
    html = client.get(f"/tasks/list?{older.group(1).replace('&amp;', '&')}").text
    assert [int(i) for i in re.findall(r'<tr data-task="(\d+)"', html)] == sorted(bulk, reverse=True)[50:]
    assert 'id="newest"' in html and 'id="older"' not in html
    # The overview links into the filtered list.
    overview = client.get("/tasks").text
    assert f'href="tasks/list?route={ROUTE}&amp;status=failed"' in overview


def test_a_tasks_page_tells_its_whole_history_with_links_to_airflow(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = seed(store)
    task_id = seeded["by_key"]["SO-2"]
    repair = Actor(
        kind="run",
        dag_id="repair-stuck-tasks",
        run_id="scheduled__2026-05-01T08:15:00+00:00",
        task_id="repair_stuck_tasks",
        try_number=1,
    )
    at = dt.datetime(2026, 5, 1, 8, 0, 5)
    events = [
        (
            "export_failed",
            EXPORT,
            {
                "status_code": 503,
                "duration_ms": 812,
                "idempotency_key": f"{ROUTE}-{task_id}",
                "attempt": 1,
                "error": "HTTP 503 <b>down</b>",
                "retryable": True,
            },
        ),
        ("repaired", repair, {"to": "new", "claimed_by": EXPORT.to_json(), "stuck_after_minutes": 30}),
        ("requeued", EXPORT, {"attempts": 1}),
        (
            "exported",
            EXPORT,
            {"status_code": 201, "duration_ms": 95, "idempotency_key": f"{ROUTE}-{task_id}", "attempt": 2},
        ),
        ("retried", Actor(kind="user", user="admin"), {}),
        ("skipped", Actor(kind="user", user="user"), {"reason": "never <b>goes</b>"}),
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(task_events).where(task_events.c.task_id == task_id))  # the seed's own fail
        for n, (kind, actor, detail) in enumerate(events):
            conn.execute(
                sa.insert(task_events).values(
                    task_id=task_id,
                    at=at + dt.timedelta(minutes=n),
                    kind=kind,
                    actor=actor.to_json(),
                    detail=json.dumps(detail),
                )
            )
        conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(claimed_by=EXPORT.to_json()))
    detail = client.get(f"/api/tasks/{task_id}").json()
    history = detail["history"]
    assert [e["kind"] for e in history] == ["created", *[k for k, _, _ in events]]
    assert history[0]["actor"]["label"] == EXPORT.label()
    assert (
        history[0]["actor"]["run_path"] == "dags/orders-to-erp-export/runs/scheduled__2026-05-01T08%3A00%3A00%2B00%3A00"
    )
    assert history[0]["actor"]["log_path"] == history[0]["actor"]["run_path"] + "/tasks/export_route?try_number=2"
    assert history[1]["detail"]["status_code"] == 503 and history[2]["claimed_by"]["run_id"] == EXPORT.run_id
    assert history[6]["actor"]["user"] == "user" and history[6]["detail"]["reason"] == "never <b>goes</b>"
    assert detail["claimed_by_actor"]["dag_id"] == "orders-to-erp-export"
    html = client.get(f"/tasks/{task_id}").text
    run_link = (
        '<a href="../../dags/orders-to-erp-export/runs/scheduled__2026-05-01T08%3A00%3A00%2B00%3A00" data-airflow'
    )
    assert run_link in html
    assert (
        'href="../../dags/orders-to-erp-export/runs/scheduled__2026-05-01T08%3A00%3A00%2B00%3A00/tasks/export_route?try_number=2" data-airflow'
        in html
    )
    assert 'href="../../dags/repair-stuck-tasks/runs/' in html
    kinds = re.findall(r'<li class="event event-\w+" data-kind="(\w+)"', html)
    assert kinds == ["created", "export_failed", "repaired", "requeued", "exported", "retried", "skipped"]
    for shown in (
        "HTTP 503",
        "812 ms",
        "HTTP 201",
        f"{ROUTE}-{task_id}",
        "Repaired as stuck",
        "back to <strong>new</strong>",
        "Requeued by retry_failed_tasks",
        "user admin",
        "user user",
        "never &lt;b&gt;goes&lt;/b&gt;",
        "HTTP 503 &lt;b&gt;down",
    ):
        assert shown in html, shown
    assert "<b>goes</b>" not in html and "<b>down</b>" not in html
    # A webhook's task says so.
    webhook_task = seeded["by_key"]["SO-7"]
    assert client.get(f"/api/tasks/{webhook_task}").json()["history"][0]["actor"]["label"] == "webhook (admin)"
    assert client.get("/api/tasks/999999").status_code == 404


def test_an_entitys_page_lists_every_task_and_its_last_content(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seed(store)
    first = store.add_entities([ROUTE], [("a/b c", {"v": 1})], return_ids=True).task_ids
    second = store.add_entities([ROUTE], [("a/b c", {"v": 2, "x": "<script>x</script>"})], return_ids=True).task_ids
    for path in (f"/api/entities/{ROUTE}/a/b c", f"/api/entities/{ROUTE}/a%2Fb%20c"):
        body = client.get(path).json()
        assert [t["id"] for t in body["tasks"]] == second + first, (path, body)
        assert body["last_payload"] == {"v": 2, "x": "<script>x</script>"} and body["more"] is False
        assert body["content_hash"] and body["seen_at"]
    assert client.get("/api/entity", params={"route": ROUTE, "entity_key": "a/b c"}).json()["entity_key"] == "a/b c"
    html = client.get("/entity", params={"route": ROUTE, "entity_key": "a/b c"}).text
    assert re.findall(r'<tr data-task="(\d+)"', html) == [str(second[0]), str(first[0])]
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html
    assert client.get("/api/entity", params={"route": ROUTE, "entity_key": "nobody"}).status_code == 404
    assert client.get("/entity", params={"route": ROUTE, "entity_key": "nobody"}).status_code == 404
    # The task list links every row to its entity.
    assert "entity?route=orders-to-erp&amp;entity_key=a/b%20c" in client.get("/tasks/list").text


# -- act -------------------------------------------------------------------------------------------------


def test_actions_by_ids_change_only_eligible_tasks_and_are_audited(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = seed(store)
    by_key, processing = seeded["by_key"], seeded["processing"]
    since = last_audit_id()
    retry = client.post("/api/tasks/retry", json={"ids": [by_key["SO-2"], by_key["SO-4"], processing, by_key["SO-1"]]})
    assert retry.status_code == 200, retry.text
    body = retry.json()
    assert (body["action"], body["matched"], body["changed"], body["not_eligible"]) == ("retry", 4, 2, 2)
    assert sorted(body["task_ids"]) == sorted([by_key["SO-2"], by_key["SO-4"]])
    assert statuses(store, [by_key["SO-2"], by_key["SO-4"], processing, by_key["SO-1"]]) == {
        by_key["SO-2"]: "new",
        by_key["SO-4"]: "new",
        processing: "processing",
        by_key["SO-1"]: "finished",
    }
    skip = client.post("/api/tasks/skip", json={"ids": [by_key["SO-6"]], "reason": "a test order"})
    assert skip.status_code == 200 and skip.json()["changed"] == 1
    delete = client.post("/api/tasks/delete", json={"ids": [by_key["SO-8"], processing]})
    assert (delete.json()["changed"], delete.json()["not_eligible"]) == (1, 1)
    assert by_key["SO-8"] not in statuses(store, [by_key["SO-8"]])
    # The task's own history: who retried, who skipped and why.
    history = client.get(f"/api/tasks/{by_key['SO-2']}").json()["history"]
    assert history[-1]["kind"] == "retried" and history[-1]["actor"]["user"] == "admin"
    history = client.get(f"/api/tasks/{by_key['SO-6']}").json()["history"]
    assert (history[-1]["kind"], history[-1]["detail"]["reason"], history[-1]["actor"]["user"]) == (
        "skipped",
        "a test order",
        "admin",
    )
    # Airflow's audit log: who, when, what, how many.
    rows = audit_rows(since)
    assert [r["event"] for r in rows] == [
        "scheduled_jobs.tasks.retry",
        "scheduled_jobs.tasks.skip",
        "scheduled_jobs.tasks.delete",
    ]
    assert all(r["owner"] == "admin" and r["dttm"] is not None for r in rows)
    assert rows[0]["extra"]["ids"] == [by_key["SO-2"], by_key["SO-4"], processing, by_key["SO-1"]]
    assert (rows[0]["extra"]["matched"], rows[0]["extra"]["changed"], rows[0]["extra"]["not_eligible"]) == (4, 2, 2)
    assert rows[1]["extra"]["reason"] == "a test order"
    assert rows[2]["extra"]["task_ids"] == [by_key["SO-8"]]
    assert body["audit_log_id"] == rows[0]["id"]


def test_an_action_on_a_filter_needs_the_count_the_caller_confirmed(client: httpx.Client, any_store: TaskStore) -> None:
    store = any_store
    seeded = seed(store)
    by_key = seeded["by_key"]
    failed = {"route": ROUTE, "status": "failed"}
    count = client.get("/api/tasks/count", params=failed).json()
    assert count == {"count": 3, "cap": 100_000, "more_than_cap": False}
    before = everything(store)
    missing = client.post("/api/tasks/retry", json={"filter": failed})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("confirm_count: is required")
    stale = client.post("/api/tasks/retry", json={"filter": failed, "confirm_count": 2})
    assert stale.status_code == 409, stale.text
    assert stale.json()["count"] == 3 and "now matches 3 tasks, not the 2 confirmed" in stale.json()["detail"]
    assert everything(store) == before
    done = client.post("/api/tasks/retry", json={"filter": failed, "confirm_count": 3})
    assert done.status_code == 200, done.text
    assert done.json()["changed"] == 3
    assert set(statuses(store, [by_key["SO-2"], by_key["SO-3"], by_key["SO-4"]]).values()) == {"new"}
    prefix = {"entity_key": "SO-", "prefix": True, "status": "new"}
    n = client.get("/api/tasks/count", params={**prefix, "prefix": "true"}).json()["count"]
    assert n == 6
    skipped = client.post("/api/tasks/skip", json={"filter": prefix, "confirm_count": n, "reason": "ERP retired"})
    assert skipped.json()["changed"] == 6
    assert client.get("/api/tasks/count", params={"status": "skipped"}).json()["count"] == 6
    gone = client.post("/api/tasks/delete", json={"filter": {"status": "skipped"}, "confirm_count": 6})
    assert gone.json()["changed"] == 6
    assert audit_rows()[-1]["extra"]["filter"] == {"status": "skipped"}


def test_page_actions_on_a_selection_and_on_everything_matching_after_a_confirmation(
    server: Server, tokens: dict[str, str], any_store: TaskStore
) -> None:
    store = any_store
    seeded = seed(store)
    by_key = seeded["by_key"]
    token = tokens["user"]
    csrf = page_token(server, token)
    selected = form_post(
        server,
        token,
        [("csrf_token", csrf), ("do", "retry-selected"), ("id", str(by_key["SO-4"])), ("id", str(by_key["SO-1"]))],
    )
    assert selected.status_code == 200, selected.text
    assert 'data-changed="1"' in selected.text and "1 of 2 tasks retried" in selected.text
    assert statuses(store, [by_key["SO-4"]]) == {by_key["SO-4"]: "new"}
    # Everything matching: first the count and a confirmation, nothing changed yet.
    matching = [
        ("csrf_token", csrf),
        ("route", ROUTE),
        ("status", "will_retry"),
        ("do", "skip-matching"),
        ("reason", "duplicate orders"),
    ]
    before = everything(store)
    asked = form_post(server, token, matching)
    assert asked.status_code == 200, asked.text
    assert re.search(r'id="confirm-count">2<', asked.text) and 'name="confirm_count" value="2"' in asked.text
    assert everything(store) == before
    # A count that changed meanwhile is shown again, changing nothing.
    store.fail(store.claim(ROUTE, 1)[0], "HTTP 503", retryable=True)
    again = form_post(server, token, [*matching, ("confirm_count", "2")])
    assert (
        again.status_code == 409
        and 'id="count-changed"' in again.text
        and re.search(r'id="confirm-count">3<', again.text)
    )
    done = form_post(server, token, [*matching, ("confirm_count", "3")])
    assert done.status_code == 200 and 'data-changed="3"' in done.text, done.text
    assert client_free_count(store, "skipped") == 3
    # From a task's own page: its form carries the task and a way back.
    task_page = httpx.get(f"{server.url}{PREFIX}/tasks/{by_key['SO-7']}", cookies={"_token": token}, timeout=30).text
    assert 'id="task-actions"' in task_page
    deleted = form_post(
        server,
        token,
        [("csrf_token", csrf), ("do", "delete-selected"), ("id", str(by_key["SO-7"])), ("back", str(by_key["SO-7"]))],
    )
    assert deleted.status_code == 200 and by_key["SO-7"] not in statuses(store, [by_key["SO-7"]])
    # A skip without a reason is refused on the page, naming it.
    refused = form_post(server, token, [("csrf_token", csrf), ("do", "skip-selected"), ("id", str(by_key["SO-8"]))])
    assert refused.status_code == 422 and "reason: is required to skip" in refused.text
    assert [r["owner"] for r in audit_rows()[-3:]] == ["user", "user", "user"]


def client_free_count(store: TaskStore, status: str) -> int:
    return store.counts(ROUTE)[status]


# -- rights and CSRF -------------------------------------------------------------------------------------


def test_a_viewer_gets_403_on_every_action_and_a_user_may_act(
    server: Server, tokens: dict[str, str], any_store: TaskStore
) -> None:
    store = any_store
    seeded = seed(store)
    failed = seeded["by_key"]["SO-4"]
    before = everything(store)
    audited = last_audit_id()
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    bodies = {"retry": {"ids": [failed]}, "skip": {"ids": [failed], "reason": "x"}, "delete": {"ids": [failed]}}
    for action, body in bodies.items():
        answer = httpx.post(f"{server.url}{PREFIX}/api/tasks/{action}", json=body, headers=viewer, timeout=30)
        assert answer.status_code == 403, (action, answer.text)
        assert "needs the right to edit DAGs" in answer.json()["detail"]
        filtered = {"filter": {"status": "failed"}, "confirm_count": 3, "reason": "x"}
        answer = httpx.post(f"{server.url}{PREFIX}/api/tasks/{action}", json=filtered, headers=viewer, timeout=30)
        assert answer.status_code == 403
    csrf = page_token(server, tokens["viewer"])
    html = httpx.get(f"{server.url}{PREFIX}/tasks/list", cookies={"_token": tokens["viewer"]}, timeout=30).text
    assert 'value="retry-selected"' not in html and "need the right to edit DAGs" in html
    for do in ("retry-selected", "skip-selected", "delete-selected", "retry-matching"):
        answer = form_post(
            server, tokens["viewer"], [("csrf_token", csrf), ("do", do), ("id", str(failed)), ("reason", "x")]
        )
        assert answer.status_code == 403, (do, answer.text)
    assert everything(store) == before and last_audit_id() == audited
    as_user = httpx.post(
        f"{server.url}{PREFIX}/api/tasks/retry",
        json={"ids": [failed]},
        headers={"Authorization": f"Bearer {tokens['user']}"},
        timeout=30,
    )
    assert as_user.status_code == 200 and as_user.json()["changed"] == 1


def test_a_cross_site_post_with_the_session_cookie_is_refused_and_a_valid_token_accepted(
    server: Server, tokens: dict[str, str], any_store: TaskStore
) -> None:
    store = any_store
    seeded = seed(store)
    failed = str(seeded["by_key"]["SO-4"])
    admin = tokens["admin"]
    foreign = {"Origin": "http://evil.example", "Referer": "http://evil.example/page"}
    before = everything(store)
    audited = last_audit_id()
    valid = page_token(server, admin)
    other_users = page_token(server, tokens["user"])
    forged = [
        [],  # no token at all
        [("csrf_token", "")],
        [("csrf_token", "1.deadbeef")],
        [("csrf_token", valid[:-2] + ("00" if not valid.endswith("00") else "11"))],
        [("csrf_token", other_users)],  # another user's token does not sign this user's request
        [("csrf_token", f"{int(time.time()) - 13 * 3600}.{valid.partition('.')[2]}")],  # an old time on a valid MAC
    ]
    for fields in forged:
        answer = form_post(server, admin, [*fields, ("do", "delete-selected"), ("id", failed)], **foreign)
        assert answer.status_code == 403, (fields, answer.text)
        assert "CSRF token" in answer.json()["detail"]
        api = httpx.post(
            f"{server.url}{PREFIX}/api/tasks/delete",
            json={"ids": [int(failed)]},
            cookies={"_token": admin},
            headers={**foreign, **({"X-CSRF-Token": fields[0][1]} if fields else {})},
            timeout=30,
        )
        assert api.status_code == 403, (fields, api.text)
    assert everything(store) == before and last_audit_id() == audited
    # The same request with the page's token is the user's own: accepted.
    accepted = form_post(server, admin, [("csrf_token", valid), ("do", "retry-selected"), ("id", failed)])
    assert accepted.status_code == 200 and 'data-changed="1"' in accepted.text
    token_api = httpx.get(f"{server.url}{PREFIX}/api/csrf-token", cookies={"_token": admin}, timeout=30).json()
    assert token_api["header"] == "X-CSRF-Token"
    api = httpx.post(
        f"{server.url}{PREFIX}/api/tasks/skip",
        json={"ids": [int(failed)], "reason": "by script"},
        cookies={"_token": admin},
        headers={"X-CSRF-Token": token_api["token"]},
        timeout=30,
    )
    assert api.status_code == 200 and api.json()["changed"] == 1
    # A bearer token is never sent by a browser on its own: no CSRF token needed.
    bearer = httpx.post(
        f"{server.url}{PREFIX}/api/tasks/retry",
        json={"ids": [int(failed)]},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert bearer.status_code == 200 and bearer.json()["changed"] == 1


# -- hostile input ---------------------------------------------------------------------------------------

BAD_PARAMETERS = [
    ({"created_after": "abc"}, "created_after: must be a date and time in ISO 8601"),
    ({"created_before": "2026-13-45"}, "created_before: must be a date and time"),
    ({"updated_after": "9" * 5000}, "updated_after: must be a date and time"),
    ({"updated_before": "2026-01-01\x00"}, "updated_before: must be a date and time"),
    ({"status": "will retry"}, "status: must be one of new, processing, finished, failed, will_retry, skipped"),
    ({"entity_key": "SO\x001"}, "entity_key: holds a NUL character"),
    ({"entity_key": "k" * 10_000}, "entity_key: is at most 500 characters, got 10000"),
    ({"route": "r\x00"}, "route: holds a NUL character"),
    ({"route": "r" * 201}, "route: is at most 200 characters"),
    ({"before": "-1"}, "before: must be a whole number from 1 to 9223372036854775807"),
    ({"before": "1e20"}, "before: must be a whole number from 1 to 9223372036854775807"),
    ({"before": "99999999999999999999"}, "before: must be a whole number from 1"),
    ({"before": "abc"}, "before: must be a whole number from 1"),
    ({"prefix": "maybe"}, "prefix:"),
]


def test_hostile_query_parameters_are_422s_naming_them(client: httpx.Client, any_store: TaskStore) -> None:
    seed(any_store)
    for params, expected in BAD_PARAMETERS:
        for path in ("/api/tasks", "/tasks/list", "/api/tasks/count"):
            if path == "/api/tasks/count" and "before" in params:
                continue
            answer = client.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.status_code, answer.text[:300])
            assert expected in answer.json()["detail"], (path, params, answer.json())
    for size in ("0", "501", "1e3", "-5"):
        answer = client.get("/api/tasks", params={"size": size})
        assert answer.status_code == 422 and "size: must be a whole number from 1 to 500" in answer.json()["detail"]
    for path in ("/api/entity", "/entity"):
        assert client.get(path, params={"route": ROUTE, "entity_key": "a\x00b"}).status_code == 422
        assert client.get(path, params={"route": ROUTE, "entity_key": "k" * 10_000}).status_code == 422
        assert client.get(path, params={"route": ROUTE, "entity_key": "%"}).status_code == 404
        assert client.get(path, params={"route": "", "entity_key": "x"}).status_code == 422
    assert client.get(f"/api/entities/{ROUTE}/a%00b").status_code == 422
    assert client.get("/api/processes/history", params={"configuration": "x\x00"}).status_code == 422
    # The largest id and key the columns hold reach the database without error.
    assert client.get("/api/tasks", params={"before": str(2**63 - 1), "entity_key": "k" * 500}).json()["rows"] == []


def test_hostile_action_bodies_are_refused_naming_what_and_change_nothing(
    client: httpx.Client, any_store: TaskStore
) -> None:
    store = any_store
    seed(store)
    before = everything(store)
    cases: list[tuple[str, Any, int, str]] = [
        ("retry", {"ids": list(range(1, 1002))}, 413, "ids: at most 1000 task ids in one request, got 1001"),
        ("retry", {"ids": ["1"]}, 422, "ids.0: Input should be a valid integer"),
        ("retry", {"ids": [True]}, 422, "ids.0: Input should be a valid integer"),
        ("retry", {"ids": [1.5]}, 422, "ids.0:"),
        ("retry", {"ids": [-1]}, 422, "ids.0: must be a whole number from 1 to 9223372036854775807, got -1"),
        ("retry", {"ids": [2**64]}, 422, "ids.0: must be a whole number from 1 to"),
        ("retry", {"ids": []}, 422, "ids: is empty"),
        ("retry", {"ids": 5}, 422, "ids:"),
        ("retry", [1, 2], 422, "body: must be a JSON object"),
        ("retry", {}, 422, "body: name the tasks either by ids or by filter"),
        (
            "retry",
            {"ids": [1], "filter": {}, "confirm_count": 1},
            422,
            "body: name the tasks either by ids or by filter",
        ),
        ("retry", {"ids": [1], "extra": 1}, 422, "extra: Extra inputs are not permitted"),
        ("retry", {"filter": {"status": "nope"}, "confirm_count": 1}, 422, "status: must be one of"),
        ("retry", {"filter": {"entity_key": "a\x00"}, "confirm_count": 1}, 422, "entity_key: holds a NUL character"),
        (
            "retry",
            {"filter": {"created_after": "yesterday"}, "confirm_count": 1},
            422,
            "created_after: must be a date and time",
        ),
        ("retry", {"filter": {"route": 7}, "confirm_count": 1}, 422, "filter.route: Input should be a valid string"),
        ("retry", {"filter": {}, "confirm_count": -1}, 422, "confirm_count:"),
        ("retry", {"filter": {}, "confirm_count": "3"}, 422, "confirm_count:"),
        ("skip", {"ids": [1]}, 422, "reason: is required to skip"),
        ("skip", {"ids": [1], "reason": "   "}, 422, "reason: is required to skip"),
        ("skip", {"ids": [1], "reason": "a\x00b"}, 422, "reason: holds a NUL character"),
        ("skip", {"ids": [1], "reason": "r" * 10_000}, 422, "reason: is at most 1000 characters, got 10000"),
        ("skip", {"ids": [1], "reason": ["x"]}, 422, "reason: Input should be a valid string"),
    ]
    for action, body, status, expected in cases:
        answer = client.post(f"/api/tasks/{action}", json=body)
        assert answer.status_code == status, (
            action,
            body if len(str(body)) < 200 else "...",
            answer.status_code,
            answer.text[:300],
        )
        assert expected in answer.json()["detail"], (body if len(str(body)) < 200 else "...", answer.json())
    raw = [
        (b"not json", 422, "body: is not JSON"),
        (b"[" * 100_000, 422, "body: is not JSON"),
        (b'{"ids": [' + b"1," * 200_000 + b"1]}", 413, "body: is more than 262144 bytes"),
        (b"", 422, "body: must be a JSON object"),
        (b'{"ids": [1], "reason": "\\udcff"}', 422, "reason: is not valid text"),
        (
            b'{"filter": {"entity_key": "\\ud800"}, "confirm_count": 0, "reason": "r"}',
            422,
            "entity_key: is not valid text",
        ),
        ('{"ids": [1], "reason": "\udcff"}'.encode("utf-8", "surrogatepass"), 422, "body"),
    ]
    for content, status, expected in raw:
        answer = client.post("/api/tasks/skip", content=content, headers={"Content-Type": "application/json"})
        assert answer.status_code == status, (content[:40], answer.status_code, answer.text[:300])
        assert expected in answer.json()["detail"]
    assert everything(store) == before
    # Forms: too many ids, a bad id, an unknown action; never a 500.
    csrf_free = {"Authorization": client.headers["Authorization"]}
    for fields, status in [
        ([("do", "retry-selected")] + [("id", str(n)) for n in range(1, 1002)], 413),
        ([("do", "retry-selected"), ("id", "1e5")], 422),
        ([("do", "retry-selected"), ("id", "99999999999999999999")], 422),
        ([("do", "retry-selected")], 422),
        ([("do", "explode-selected"), ("id", "1")], 422),
        ([("do", "retry-matching"), ("created_after", "nope")], 422),
        ([("do", "retry-matching"), ("confirm_count", "9" * 50)], 200),
    ]:
        answer = httpx.post(
            str(client.base_url).rstrip("/") + "/tasks/actions",
            content=urlencode(fields),
            headers={**csrf_free, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert answer.status_code == status, (fields[:3], answer.status_code, answer.text[:300])
    assert everything(store) == before


# -- the history of processes ------------------------------------------------------------------------


def test_processes_show_the_last_runs_with_state_duration_figures_and_skips(
    client: httpx.Client, any_store: TaskStore
) -> None:
    store = any_store
    configuration = "route:orders-to-erp"
    start = dt.datetime(2026, 5, 1, 8, 0, 0)
    rows = [
        {
            "run_id": "scheduled__1",
            "state": "success",
            "ended": start + dt.timedelta(seconds=42),
            "figures": {"exported": 12, "failed": 1, "left": 0},
        },
        {
            "run_id": "scheduled__2",
            "state": "failed",
            "ended": start + dt.timedelta(minutes=3),
            "figures": {"exported": 0},
            "error": "ERP down <b>!</b>",
        },
    ]
    with store.engine.begin() as conn:
        for n, row in enumerate(rows):
            conn.execute(
                sa.insert(job_runs).values(
                    configuration=configuration,
                    dag_id="orders-to-erp-export",
                    run_id=row["run_id"],
                    task_id="export_route",
                    try_number=1,
                    started_at=start + dt.timedelta(minutes=n),
                    ended_at=row["ended"],
                    state=row["state"],
                    figures=json.dumps(row["figures"]),
                    error=row.get("error"),
                )
            )
        conn.execute(
            sa.insert(skipped_runs).values(
                configuration=configuration,
                dag_id="orders-to-erp-export",
                run_id="manual__3",
                duplicate_of_dag_id="orders-to-erp-export",
                duplicate_of_run_id="scheduled__2",
                reason="route:orders-to-erp already has a run waiting",
                skipped_at=start,
            )
        )
    history = client.get("/api/processes/history").json()["configurations"]
    runs = history[configuration]
    assert [r["run_id"] for r in runs] == ["scheduled__2", "scheduled__1"]
    assert (runs[1]["state"], runs[1]["duration_seconds"], runs[1]["figures"]) == (
        "success",
        42.0,
        {"exported": 12, "failed": 1, "left": 0},
    )
    assert (
        runs[0]["error"] == "ERP down <b>!</b>" and runs[0]["run_path"] == "dags/orders-to-erp-export/runs/scheduled__2"
    )
    one = client.get("/api/processes/history", params={"configuration": configuration, "per_configuration": 1}).json()
    assert [r["run_id"] for r in one["configurations"][configuration]] == ["scheduled__2"]
    html = client.get("/processes").text
    section = html[html.index(f'data-history="{configuration}"') :]
    section = section[: section.index("</table>")]
    assert 'href="../dags/orders-to-erp-export/runs/scheduled__1" data-airflow' in section
    assert "exported: <strong>12</strong>" in section and "42.0 s" in section and "2 min 0 s" in section
    assert "ERP down &lt;b&gt;!&lt;/b&gt;" in section and "<b>!</b>" not in section
    assert "manual__3" in section and "already has a run waiting" in section


def test_a_run_our_history_left_running_shows_airflows_state_once_it_is_over(
    client: httpx.Client, project: Any, any_store: TaskStore
) -> None:
    from conftest import ROOT
    from helpers.airflow_compat import DagBag, dag_test

    run = dag_test(DagBag(dag_folder=str(ROOT / "dags")).get_dag("repair-stuck-tasks"))
    assert str(run.state).endswith("success")
    with any_store.engine.begin() as conn:
        conn.execute(sa.delete(job_runs))
        conn.execute(
            sa.insert(job_runs).values(
                configuration="repair",
                dag_id=run.dag_id,
                run_id=run.run_id,
                task_id="repair_stuck_tasks",
                try_number=1,
                started_at=dt.datetime(2026, 5, 1),
                state="running",
            )
        )
    (shown,) = client.get("/api/processes/history").json()["configurations"]["repair"]
    assert (shown["state"], shown["recorded_state"]) == ("success", "running")


# -- the hostile review's findings -------------------------------------------------------------------------


def test_a_filter_action_over_the_action_cap_is_refused_whole(
    server: Server, tokens: dict[str, str], client: httpx.Client, any_store: TaskStore, monkeypatch: Any
) -> None:
    """A confirmed count must bound what is done: "more than N" confirmed once must not act on everything."""
    from scheduled_jobs.web import console

    store = any_store
    seed(store)
    monkeypatch.setattr(console, "ACTION_CAP", 2)
    failed = {"route": ROUTE, "status": "failed"}
    before = everything(store)
    api = client.post("/api/tasks/delete", json={"filter": failed, "confirm_count": 3})
    assert api.status_code == 409, api.text
    assert "more than the 2 one action from a page or the API takes" in api.json()["detail"]
    token = tokens["user"]
    page = form_post(
        server,
        token,
        [("csrf_token", page_token(server, token)), ("route", ROUTE), ("status", "failed"), ("do", "delete-matching")],
    )
    assert page.status_code == 409 and "narrow the filter" in page.text
    page = form_post(
        server,
        token,
        [
            ("csrf_token", page_token(server, token)),
            ("route", ROUTE),
            ("status", "failed"),
            ("do", "delete-matching"),
            ("confirm_count", "3"),
        ],
    )
    assert page.status_code == 409 and "nothing was changed" in page.text
    assert everything(store) == before


def test_enter_in_the_reason_box_never_retries(server: Server, tokens: dict[str, str], any_store: TaskStore) -> None:
    """Implicit submission presses the form's first button (Retry): a reason given says the person meant Skip."""
    store = any_store
    seeded = seed(store)
    failed = str(seeded["by_key"]["SO-4"])
    token = tokens["user"]
    before = everything(store)
    for do in ("retry-selected", "delete-selected"):
        answer = form_post(
            server,
            token,
            [("csrf_token", page_token(server, token)), ("do", do), ("id", failed), ("reason", "customer cancelled")],
        )
        assert answer.status_code == 422 and "reason: goes with Skip" in answer.text, answer.text
    assert everything(store) == before


def test_pages_may_be_framed_only_by_airflows_own_ui(client: httpx.Client, any_store: TaskStore) -> None:
    seeded = seed(any_store)
    for path in ("/tasks/list", f"/tasks/{seeded['ids'][0]}", "/jobs", "/api/tasks"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        policy = [part.strip() for part in answer.headers["content-security-policy"].split(";")]
        assert "frame-ancestors 'self'" in policy, policy
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"
        assert answer.headers["cache-control"] == "no-store"


def test_digits_of_other_scripts_are_no_numbers(server: Server, tokens: dict[str, str], any_store: TaskStore) -> None:
    """str.isdigit() takes a superscript two (int() then raises: a 500) and an Arabic-Indic one (int() reads 1)."""
    store = any_store
    seed(store)
    token = tokens["user"]
    csrf = page_token(server, token)
    before = everything(store)
    for fields in (
        [("csrf_token", csrf), ("do", "retry-selected"), ("id", "\u00b2")],
        [("csrf_token", csrf), ("do", "retry-selected"), ("id", "\u0661")],
        [("csrf_token", csrf), ("route", ROUTE), ("do", "retry-matching"), ("confirm_count", "\u00b2")],
    ):
        answer = form_post(server, token, fields)
        assert answer.status_code in (200, 422), (fields, answer.status_code, answer.text)
        assert "Internal Server Error" not in answer.text
    for forged in ("\u00b2.abc", "\u0661.abc"):
        answer = form_post(server, token, [("csrf_token", forged), ("do", "retry-selected"), ("id", "1")])
        assert answer.status_code == 403, (forged, answer.text)
    assert everything(store) == before


def test_nul_in_the_older_parameters_is_a_422(client: httpx.Client, any_store: TaskStore) -> None:
    for path in (
        "/processes?configuration=%00",
        "/tasks?route=%00",
        "/api/routes/%00/errors",
        "/api/routes/%00/stuck",
        "/api/processes/skipped?configuration=%00",
    ):
        answer = client.get(path)
        assert answer.status_code == 422, (path, answer.status_code, answer.text)
        assert "NUL" in answer.json()["detail"]
