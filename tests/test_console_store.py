"""The console's store interface on SQLite and PostgreSQL: filters, keyset pages, a task's history, an
entity's tasks, retry/skip/delete and their race with a running export, prune (and its race with a claim)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.exporting import export_route
from scheduled_jobs.models.tasks import Actor, ClaimedTask
from scheduled_jobs.store import (
    Push,
    TaskFilter,
    TaskIds,
    TaskStore,
    count_tasks,
    delete_tasks,
    entity_view,
    list_tasks,
    prune_tasks,
    retry_tasks,
    skip_tasks,
    task_history,
    utcnow,
)
from scheduled_jobs.store.schema import entities, task_events, tasks

if TYPE_CHECKING:
    from pathlib import Path

USER = Actor("user", user="ada")
RUN = Actor("run", dag_id="export_orders", run_id="manual__1", task_id="export", try_number=1)
OTHER_RUN = Actor("run", dag_id="export_orders", run_id="manual__2", task_id="export", try_number=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TaskStore:
    if request.param == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    url = request.getfixturevalue("postgres_server_url")
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    return store


def _set(store: TaskStore, ids: list[int], **values: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.id.in_(ids)).values(**values))


def _ids(page_rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in page_rows]


def _status(store: TaskStore, task_id: int) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(sa.select(tasks.c.status).where(tasks.c.id == task_id)).scalar_one())


def _event_count(store: TaskStore, task_id: int | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(task_events)
    if task_id is not None:
        query = query.where(task_events.c.task_id == task_id)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _filled(store: TaskStore) -> dict[str, int]:
    """Six tasks on two routes in every status; returns their ids by a name."""
    store.add_entities(["orders"], [("SO-1", {"n": 1}), ("SO-2", {"n": 2}), ("SO-3", {"n": 3})])
    store.add_entities(["orders"], [("PO-1", {"n": 4}), ("SO-10", {"n": 5})])
    store.add_entities(["invoices"], [("SO-1", {"n": 6})])
    ids = {t["entity_key"] + "@" + t["route"]: t["id"] for t in store.list_tasks()}
    named = {
        "new": ids["SO-1@orders"],
        "finished": ids["SO-2@orders"],
        "failed": ids["SO-3@orders"],
        "will_retry": ids["PO-1@orders"],
        "skipped": ids["SO-10@orders"],
        "processing": ids["SO-1@invoices"],
    }
    _set(store, [named["finished"]], status="finished")
    _set(store, [named["failed"]], status="failed", retryable=False, last_error="400")
    _set(store, [named["will_retry"]], status="failed", retryable=True, last_error="503")
    _set(store, [named["skipped"]], status="skipped")
    _set(store, [named["processing"]], status="processing", claim_token="t")
    return named


# -- find -------------------------------------------------------------------------------------------


def test_each_status_filter_finds_its_tasks(store: TaskStore) -> None:
    named = _filled(store)
    for status in ("new", "processing", "finished", "skipped", "will_retry"):
        assert _ids(list_tasks(store.engine, TaskFilter(status=status)).rows) == [named[status]], status
    failed = list_tasks(store.engine, TaskFilter(status="failed")).rows
    assert _ids(failed) == [named["will_retry"], named["failed"]]  # will_retry is failed too; newest first
    with pytest.raises(ValueError, match="status must be one of"):
        TaskFilter(status="done")


def test_route_key_and_time_filters_alone_and_combined(store: TaskStore) -> None:
    named = _filled(store)
    engine = store.engine
    assert count_tasks(engine, TaskFilter()) == 6
    assert count_tasks(engine, TaskFilter(route="orders")) == 5
    assert _ids(list_tasks(engine, TaskFilter(entity_key="SO-1")).rows) == [named["processing"], named["new"]]
    assert _ids(list_tasks(engine, TaskFilter(route="orders", entity_key="SO-1")).rows) == [named["new"]]
    prefixed = list_tasks(engine, TaskFilter(route="orders", entity_key="SO-1", prefix=True)).rows
    assert _ids(prefixed) == [named["skipped"], named["new"]]
    assert count_tasks(engine, TaskFilter(route="orders", status="failed", entity_key="SO", prefix=True)) == 1

    base = dt.datetime(2030, 1, 1)
    _set(store, [named["finished"]], created_at=base, updated_at=base + dt.timedelta(days=2))
    _set(store, [named["failed"]], created_at=base + dt.timedelta(days=1), updated_at=base + dt.timedelta(days=1))
    window = TaskFilter(created_after=base, created_before=base + dt.timedelta(days=1))
    assert _ids(list_tasks(engine, window).rows) == [named["finished"]]  # after inclusive, before exclusive
    assert _ids(list_tasks(engine, TaskFilter(updated_after=base + dt.timedelta(days=2))).rows) == [named["finished"]]
    both = TaskFilter(route="orders", status="failed", created_after=base, updated_before=base + dt.timedelta(days=2))
    assert _ids(list_tasks(engine, both).rows) == [named["failed"]]
    aware = TaskFilter(created_after=(base - dt.timedelta(hours=2)).replace(tzinfo=dt.timezone(dt.timedelta(hours=-2))))
    assert count_tasks(engine, aware) == 2  # 22:00 at UTC-2 is 00:00 UTC: both 2030 tasks


def test_rows_carry_the_listed_columns_and_created_by(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1})])
    _set(store, [1], created_by=RUN.to_json())
    (row,) = list_tasks(store.engine, TaskFilter()).rows
    assert row["created_by"] == RUN.to_json()
    assert "payload" not in row
    assert "claim_token" not in row
    assert {"id", "route", "entity_key", "status", "attempts", "last_error", "retryable"} <= set(row)


def test_prefix_matches_like_metacharacters_literally_and_case_sensitively(store: TaskStore) -> None:
    keys = ["a%b-1", "axb-1", "a_b-1", "a\\b-1", "A%B-1", "a%", "a%b"]
    store.add_entities(["r"], [(k, {"k": k}) for k in keys])

    def found(key: str, prefix: bool = True) -> list[str]:
        rows = list_tasks(store.engine, TaskFilter(route="r", entity_key=key, prefix=prefix)).rows
        return sorted(row["entity_key"] for row in rows)

    assert found("a%b") == ["a%b", "a%b-1"]
    assert found("a_b") == ["a_b-1"]
    assert found("a\\b") == ["a\\b-1"]
    assert found("a%") == ["a%", "a%b", "a%b-1"]
    assert found("%") == []
    assert found("_") == []
    assert found("a") == sorted(k for k in keys if k.startswith("a"))
    assert found("") == sorted(keys)
    assert found("a%b", prefix=False) == ["a%b"]


def test_hostile_entity_key_filters_find_nothing_and_break_nothing(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("A" * 500, {"n": 2})])
    for key in ["A\x00", "\x00", "A" * 10_000, "A" * 501, "%", "_%_", "\\", "A\x00%"]:
        for prefix in (False, True):
            filters = TaskFilter(entity_key=key, prefix=prefix)
            assert list_tasks(store.engine, filters).rows == [], (key[:10], prefix)
            assert count_tasks(store.engine, filters) == 0
            assert retry_tasks(store.engine, filters, USER).matched == 0
    assert entity_view(store.engine, "r", "A\x00") is None
    assert entity_view(store.engine, "r", "A" * 10_000) is None
    assert count_tasks(store.engine, TaskFilter(entity_key="A" * 500)) == 1


def test_keyset_pages_have_no_overlap_no_gap_and_end(store: TaskStore) -> None:
    store.add_entities(["r"], [(f"k{i}", {"i": i}) for i in range(23)])
    store.add_entities(["other"], [(f"k{i}", {"i": i}) for i in range(7)])
    seen: list[int] = []
    before = None
    pages = 0
    while True:
        page = list_tasks(store.engine, TaskFilter(route="r"), before=before, size=5)
        seen += _ids(page.rows)
        pages += 1
        assert len(page.rows) == (5 if page.next_before is not None else 3)
        if page.next_before is None:
            break
        assert page.next_before == page.rows[-1]["id"]
        before = page.next_before
    expected = sorted((t["id"] for t in store.list_tasks("r")), reverse=True)
    assert seen == expected
    assert pages == 5
    exact = list_tasks(store.engine, TaskFilter(route="r"), before=expected[14], size=5)  # the last 5 exactly
    assert _ids(exact.rows) == expected[15:20]
    last = list_tasks(store.engine, TaskFilter(route="r"), before=expected[19], size=3)
    assert (_ids(last.rows), last.next_before) == (expected[20:], None)


def test_huge_and_negative_ids_are_harmless(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    assert len(list_tasks(store.engine, TaskFilter(), before=10**30).rows) == 2
    assert len(list_tasks(store.engine, TaskFilter(), before=2**63).rows) == 2
    assert list_tasks(store.engine, TaskFilter(), before=0).rows == []
    assert list_tasks(store.engine, TaskFilter(), before=-(10**30)).rows == []
    assert task_history(store.engine, 10**30) is None
    assert task_history(store.engine, -1) is None
    _set(store, [1, 2], status="failed")
    result = retry_tasks(store.engine, TaskIds((10**30, -5, 0, 2**63, 1, 1)), USER)
    assert (result.matched, result.changed, result.not_eligible, result.task_ids) == (1, 1, 0, [1])
    assert delete_tasks(store.engine, TaskIds((10**30,)), USER).matched == 0


def test_count_is_exact_up_to_its_cap(store: TaskStore) -> None:
    store.add_entities(["r"], [(f"k{i}", {"i": i}) for i in range(12)])
    assert count_tasks(store.engine, TaskFilter(route="r")) == 12
    assert count_tasks(store.engine, TaskFilter(route="r"), cap=12) == 12
    assert count_tasks(store.engine, TaskFilter(route="r"), cap=5) == 6
    assert count_tasks(store.engine, TaskFilter(route="none")) == 0


# -- a task, an entity ------------------------------------------------------------------------------


def test_history_starts_with_who_created_the_task_then_its_events_in_order(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1})])
    _set(store, [1], created_by=Actor("webhook", user="shop").to_json(), status="failed")
    skip_tasks(store.engine, TaskIds((1,)), USER, "not ours")
    retry_tasks(store.engine, TaskIds((1,)), Actor("user", user="bob"))
    history = task_history(store.engine, 1)
    assert history is not None
    assert [(e.kind, e.actor) for e in history] == [
        ("created", Actor("webhook", user="shop")),
        ("skipped", USER),
        ("retried", Actor("user", user="bob")),
    ]
    assert history[0].id is None
    assert history[1].detail == {"reason": "not ours"}
    assert history[2].detail == {}
    assert history[1].id is not None and history[2].id is not None and history[1].id < history[2].id
    assert history[0].at <= history[1].at <= history[2].at
    assert task_history(store.engine, 2) is None


def test_entity_view_lists_every_task_of_the_entity_and_its_last_content(store: TaskStore) -> None:
    for n in range(4):
        store.add_entities(["r", "s"], [("E", {"n": n}), ("F", {"n": n})])
    view = entity_view(store.engine, "r", "E", limit=3)
    assert view is not None
    assert (view.route, view.entity_key, view.last_payload, view.more) == ("r", "E", {"n": 3}, True)
    assert [row["entity_key"] for row in view.tasks] == ["E"] * 3
    assert {row["route"] for row in view.tasks} == {"r"}
    assert _ids(view.tasks) == sorted(_ids(view.tasks), reverse=True)
    with store.engine.connect() as conn:
        stored_hash = conn.execute(
            sa.select(entities.c.content_hash).where(entities.c.route == "r", entities.c.entity_key == "E")
        ).scalar()
    assert view.content_hash == stored_hash and view.seen_at is not None
    everything = entity_view(store.engine, "r", "E")
    assert everything is not None and len(everything.tasks) == 4 and not everything.more
    delete_tasks(store.engine, TaskFilter(route="r", entity_key="E"), USER)
    emptied = entity_view(store.engine, "r", "E")
    assert emptied is not None  # the entity row stays: the entity-key rule needs it
    assert (emptied.tasks, emptied.last_payload, emptied.content_hash) == ([], None, stored_hash)
    assert entity_view(store.engine, "r", "nobody") is None


# -- actions ----------------------------------------------------------------------------------------


def test_retry_takes_failed_and_skipped_tasks_only(store: TaskStore) -> None:
    named = _filled(store)
    _set(store, [named["failed"]], attempts=3, claim_token="old")
    result = retry_tasks(store.engine, TaskIds(tuple(named.values())), USER)
    retried = sorted([named["failed"], named["will_retry"], named["skipped"]])
    assert (result.action, result.matched, result.changed, result.not_eligible) == ("retry", 6, 3, 3)
    assert result.task_ids == retried
    for name in ("new", "finished", "processing"):
        assert _status(store, named[name]) == name
    detail = store.list_tasks()
    row = next(t for t in detail if t["id"] == named["failed"])
    assert (row["status"], row["attempts"], row["claim_token"], row["retryable"], row["last_error"]) == (
        "new",
        0,
        None,
        False,
        None,
    )
    assert _event_count(store) == 3
    assert _event_count(store, named["finished"]) == 0


def test_skip_takes_new_and_failed_tasks_only_with_a_reason(store: TaskStore) -> None:
    named = _filled(store)
    result = skip_tasks(store.engine, TaskFilter(route="orders"), USER, "wrong shop")
    assert (result.action, result.matched, result.changed, result.not_eligible) == ("skip", 5, 3, 2)
    assert sorted(result.task_ids) == sorted([named["new"], named["failed"], named["will_retry"]])
    row = next(t for t in store.list_tasks() if t["id"] == named["failed"])
    assert (row["status"], row["last_error"]) == ("skipped", "skipped by ada: wrong shop")
    assert _status(store, named["processing"]) == "processing"
    assert _status(store, named["finished"]) == "finished"


def test_skip_reason_is_stored_printable_and_capped(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    hostile = "line one\nline two\r\x1b[31mred\x00nul\x9bsep" + "x" * 5000
    skip_tasks(store.engine, TaskIds((1,)), Actor("user", user="eve\n\x1b[2J"), hostile)
    history = task_history(store.engine, 1)
    assert history is not None
    reason = history[-1].detail["reason"]
    assert len(reason) == 1000
    assert reason.startswith("line one line two [31mred nul sepxxx")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in reason)
    (row,) = [t for t in store.list_tasks() if t["id"] == 1]
    assert row["last_error"].startswith("skipped by eve [2J: line one")
    assert not any(ord(c) < 0x20 for c in row["last_error"])


def test_delete_takes_any_status_but_processing_and_removes_events(store: TaskStore) -> None:
    named = _filled(store)
    skip_tasks(store.engine, TaskIds((named["new"],)), USER, "gone")
    assert _event_count(store, named["new"]) == 1
    result = delete_tasks(store.engine, TaskFilter(), USER)
    assert (result.action, result.matched, result.changed, result.not_eligible) == ("delete", 6, 5, 1)
    assert _ids(store.list_tasks()) == [named["processing"]]
    assert _event_count(store) == 0
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar_one() == 6


def test_filter_scope_runs_in_batches_of_1000(store: TaskStore) -> None:
    store.add_entities(["r"], [(f"k{i:05d}", {"i": i}) for i in range(2500)])
    store.add_entities(["other"], [("k", {"i": 0})])
    _set(store, [2501], status="failed")
    with store.engine.begin() as conn:
        conn.execute(sa.update(tasks).where(tasks.c.route == "r", tasks.c.id % 5 != 0).values(status="failed"))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        result = retry_tasks(store.engine, TaskFilter(route="r"), USER)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert (result.matched, result.changed, result.not_eligible) == (2500, 2000, 500)
    assert len(statements) == 3
    assert len(result.task_ids) == 1000
    assert store.counts("r")["failed"] == 0
    assert store.counts("other")["failed"] == 1


# -- the race with a running export -----------------------------------------------------------------


def test_actions_leave_a_task_a_running_export_holds_alone(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1})])
    (claimed,) = store.claim("r", 10)
    for act in (
        lambda: retry_tasks(store.engine, TaskIds((1,)), USER),
        lambda: skip_tasks(store.engine, TaskIds((1,)), USER, "no"),
        lambda: delete_tasks(store.engine, TaskIds((1,)), USER),
        lambda: skip_tasks(store.engine, TaskFilter(route="r"), USER, "no"),
    ):
        result = act()
        assert (result.matched, result.changed, result.not_eligible, result.task_ids) == (1, 0, 1, [])
    assert _status(store, 1) == "processing"
    assert store.finish(claimed)
    assert _status(store, 1) == "finished"
    assert [e.kind for e in task_history(store.engine, 1) or []] == ["created", "exported"]  # no action's event


class _RetryingPublisher:
    """A publisher that, while it publishes, has a user retry (then skip) the task it is delivering."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.results: list[Any] = []

    def publish(self, task: ClaimedTask) -> None:
        self.results.append(retry_tasks(self.store.engine, TaskIds((task.id,)), USER))
        self.results.append(skip_tasks(self.store.engine, TaskIds((task.id,)), USER, "mid-flight"))
        raise DeliveryError("503 Service Unavailable", retryable=True)

    def redact(self, text: str) -> str:
        return text

    def close(self) -> None:
        pass


def test_a_retry_during_publish_cannot_resurrect_the_task_under_its_exporter(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    publisher = _RetryingPublisher(store)
    result = export_route(store, publisher, "r")  # type: ignore[arg-type]
    assert (result.failed, result.lost_claims) == (2, 0)
    assert [(r.changed, r.not_eligible) for r in publisher.results] == [(0, 1)] * 4
    assert store.counts("r") == {"new": 0, "processing": 0, "finished": 0, "failed": 2, "skipped": 0}
    # Now failed: a retry takes it.
    assert retry_tasks(store.engine, TaskFilter(route="r"), USER).changed == 2


def test_after_repair_and_retry_the_old_exporters_settle_is_fenced(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1})])
    (first,) = store.claim("r", 1)
    repaired = store.repair(dt.timedelta(0), max_attempts=1, now=utcnow() + dt.timedelta(seconds=1))
    assert repaired.failed == [1]
    assert retry_tasks(store.engine, TaskIds((1,)), USER).changed == 1
    (second,) = store.claim("r", 1)
    assert not store.fail(first, "late failure of the first exporter")
    assert _status(store, 1) == "processing"
    assert store.finish(second)
    assert _status(store, 1) == "finished"


@pytest.mark.postgres
def test_exporters_requeue_and_user_actions_running_together_never_deadlock(postgres_server_url: str) -> None:
    """Real concurrent connections: exporters claiming and settling (finished and failed), a requeue loop,
    and users retrying and skipping by filter and by ids, for a few seconds. No statement may fail (a
    deadlock victim is an error), and every task's story must hold together."""
    engine = sa.create_engine(postgres_server_url, pool_size=12, max_overflow=4)
    store = TaskStore.from_url(postgres_server_url)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    store = TaskStore(engine)
    routes = ("r1", "r2")
    store.add_entities(routes, [(f"k{i}", {"n": 0}) for i in range(400)])
    stop = threading.Event()
    errors: list[str] = []
    settled: dict[str, int] = {}

    def guarded(name: str, body: Any) -> Any:
        def loop() -> None:
            rng = random.Random(name)
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    body(rng, n)
                except Exception as exc:  # every error counts, whatever its kind
                    errors.append(f"{name}: {exc!r}"[:300])
                time.sleep(0.002)

        return threading.Thread(target=loop, name=name)

    def exporter(number: int) -> Any:
        def body(rng: random.Random, n: int) -> None:
            run = f"x{number}-{n}"
            actor = Actor("run", dag_id="export", run_id=run)
            claimed = store.claim(routes[n % 2], 25, claimed_by=actor)
            if not claimed:
                return
            time.sleep(0.003)
            finished = [c.id for c in claimed if rng.random() < 0.6]
            failures = [(c.id, "boom", rng.random() < 0.7) for c in claimed if c.id not in finished]
            rng.shuffle(finished)
            pushes = {c.id: Push(200, 1) for c in claimed}
            settled[run] = store.settle(claimed[0].claim_token, finished, failures, actor=actor, pushes=pushes)

        return guarded(f"exporter{number}", body)

    def requeuer(rng: random.Random, n: int) -> None:
        store.requeue_failed(routes[n % 2], 1000, utcnow(), actor=Actor("run", dag_id="export", run_id="rq"))

    def ingester(rng: random.Random, n: int) -> None:
        store.add_entities(routes, [(f"k{rng.randrange(400)}", {"n": n, "i": i}) for i in range(20)])
        time.sleep(0.05)

    def operator(rng: random.Random, n: int) -> None:
        user = Actor("user", user="ada")
        top = int(store.newest_new_id("r2") or 2000) + 1
        action = n % 4
        if action == 0:
            retry_tasks(engine, TaskFilter(status="failed"), user)
        elif action == 1:
            skip_tasks(engine, TaskFilter(route=routes[rng.randrange(2)], status="new"), user, "x")
        elif action == 2:
            retry_tasks(engine, TaskIds(tuple(rng.sample(range(1, top), min(top - 1, 500)))), user)
        else:
            skip_tasks(engine, TaskIds(tuple(rng.sample(range(1, top), min(top - 1, 500)))), user, "y")

    threads = [exporter(i) for i in range(4)] + [guarded("requeue", requeuer), guarded("ingest", ingester)]
    threads += [guarded(f"operator{i}", operator) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(10)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert errors == []

    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(tasks.c.id, tasks.c.status)).all())
        events: dict[int, list[Any]] = {task_id: [] for task_id in statuses}
        for event in conn.execute(sa.select(task_events).order_by(task_events.c.id)):
            events[event.task_id].append(event)
    engine.dispose()
    by_run: dict[str, int] = {}
    for story in events.values():
        for event in story:
            if event.kind in ("exported", "export_failed"):
                run = json.loads(event.actor)["run_id"]
                by_run[run] = by_run.get(run, 0) + 1
    assert sum(settled.values()) > 100  # the exporters did work
    assert {run: by_run.get(run, 0) for run in settled} == settled  # each settle's events, exactly
    exported_twice = [
        task_id
        for task_id, story in events.items()
        for before, after in itertools.pairwise(story)
        if before.kind == "exported" and after.kind != "retried"
    ]
    assert exported_twice == []  # a finished task comes back only through a user's retry
    agrees = {
        "new": {None, "retried", "requeued"},
        "processing": {None, "retried", "requeued"},
        "finished": {"exported"},
        "failed": {"export_failed"},
        "skipped": {"skipped"},
    }
    disagree = [
        (task_id, status, events[task_id][-1].kind if events[task_id] else None)
        for task_id, status in statuses.items()
        if (events[task_id][-1].kind if events[task_id] else None) not in agrees[status]
    ]
    assert disagree == []


# -- prune ------------------------------------------------------------------------------------------


def _aged(store: TaskStore, days: int, ids: list[int], status: str = "finished") -> None:
    _set(store, ids, status=status, updated_at=utcnow() - dt.timedelta(days=days))


def test_prune_deletes_old_finished_and_skipped_tasks_and_their_events_but_keeps_each_entitys_newest(
    store: TaskStore,
) -> None:
    for n in range(3):
        store.add_entities(["r"], [("A", {"n": n}), ("B", {"n": n})])  # A: 1, 3, 5; B: 2, 4, 6
    store.add_entities(["s"], [("A", {"n": 0})])  # 7: the same key on another route
    _aged(store, 30, [1, 2, 3, 6, 7])
    _aged(store, 30, [4], status="skipped")
    _aged(store, 30, [5], status="failed")
    skip_tasks(store.engine, TaskIds((5,)), USER, "old")  # an event on a task prune must keep (newest of A)
    _aged(store, 30, [5], status="skipped")
    with store.engine.begin() as conn:
        conn.execute(
            task_events.insert(),
            [
                {"task_id": i, "at": utcnow(), "kind": "exported", "actor": RUN.to_json(), "detail": "{}"}
                for i in (1, 2, 4)
            ],
        )
    result = prune_tasks(store.engine, utcnow() - dt.timedelta(days=7))
    assert (result.tasks_deleted, result.events_deleted, result.batches) == (4, 3, 1)
    assert sorted(_ids(store.list_tasks())) == [5, 6, 7]  # the newest of r/A, r/B and s/A
    assert _event_count(store) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar_one() == 3
    assert prune_tasks(store.engine, utcnow() - dt.timedelta(days=7)).tasks_deleted == 0


def test_prune_leaves_recent_new_failed_and_processing_tasks(store: TaskStore) -> None:
    for n in range(2):
        store.add_entities(["r"], [("A", {"n": n}), ("B", {"n": n}), ("C", {"n": n}), ("D", {"n": n})])
    _aged(store, 1, [1])  # finished, but recent
    _aged(store, 30, [2], status="failed")
    _aged(store, 30, [3], status="new")
    _aged(store, 30, [4], status="processing")
    assert prune_tasks(store.engine, utcnow() - dt.timedelta(days=7)).tasks_deleted == 0
    assert len(store.list_tasks()) == 8


def test_prune_runs_in_batches(store: TaskStore) -> None:
    for n in range(2):
        store.add_entities(["r"], [(f"k{i}", {"n": n}) for i in range(25)])
    _aged(store, 30, list(range(1, 51)))
    result = prune_tasks(store.engine, utcnow() - dt.timedelta(days=7), batch_size=10)
    assert (result.tasks_deleted, result.batches) == (25, 3)
    assert sorted(_ids(store.list_tasks())) == list(range(26, 51))


def test_a_claim_beside_a_long_prune_on_sqlite_gets_the_lock_between_batches(tmp_path: Path) -> None:
    """SQLite: each prune batch holds the whole database. A claim waiting meanwhile must get the lock
    between batches (prune pauses after each), and no batch may re-read the whole table."""
    path = tmp_path / "store.db"
    store = TaskStore.from_url(f"sqlite:///{path}")
    old = utcnow() - dt.timedelta(days=400)
    with store.engine.begin() as conn:
        # 20,000 old finished tasks (two per entity, so 10,000 may go) and 100,000 recent finished ones.
        conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120000) "
            "INSERT INTO scheduled_jobs_task (route, entity_key, content_hash, payload, status, attempts, "
            "created_at, updated_at) SELECT 'r', 'k' || (i / 2), 'h', '{}', 'finished', 1, "
            f"CASE WHEN i <= 20000 THEN '{old}' ELSE '{utcnow()}' END, "
            f"CASE WHEN i <= 20000 THEN '{old}' ELSE '{utcnow()}' END FROM n"
        )
    store.add_entities(["hot"], [(f"e{i}", {"i": i}) for i in range(20000)])
    claimer = TaskStore.from_url(f"sqlite:///{path}")
    waits: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def claim_loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                got = claimer.claim("hot", 10)
            except Exception as exc:  # any error is a failed claim
                failures.append(repr(exc))
                continue
            waits.append(time.monotonic() - started)
            if not got:
                failures.append("nothing left to claim")
                return
            claimer.settle(got[0].claim_token, [g.id for g in got], [])
            time.sleep(0.01)

    thread = threading.Thread(target=claim_loop)
    thread.start()
    try:
        result = prune_tasks(store.engine, utcnow() - dt.timedelta(days=30), batch_size=250)
    finally:
        stop.set()
        thread.join(120)
    assert (result.tasks_deleted, result.batches) == (10000, 40)
    assert failures == []
    assert len(waits) > 20
    assert max(waits) < 2.0


@pytest.mark.postgres
def test_a_claim_beside_a_running_prune_neither_errors_nor_waits(postgres_server_url: str) -> None:
    prune_engine = sa.create_engine(postgres_server_url)
    store = TaskStore.from_url(postgres_server_url)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    for n in range(2):
        store.add_entities(["r"], [(f"k{i}", {"n": n}) for i in range(200)])  # 1-200 old, 201-400 newest
    _aged(store, 30, list(range(1, 201)))
    store.add_entities(["r"], [(f"new{i}", {"n": 0}) for i in range(50)])

    @sa.event.listens_for(store.engine, "connect")
    def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")

    store.engine.dispose()
    locked, release = threading.Event(), threading.Event()

    @sa.event.listens_for(prune_engine, "after_cursor_execute")
    def _hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE" in statement and not locked.is_set():
            locked.set()
            release.wait(30)  # prune's first batch holds its row locks, mid-transaction

    outcome: list[Any] = []
    pruner = threading.Thread(
        target=lambda: outcome.append(prune_tasks(prune_engine, utcnow() - dt.timedelta(days=7), batch_size=100))
    )
    pruner.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        claimed = store.claim("r", 300)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        pruner.join(60)
    assert elapsed < 1.5
    assert len(claimed) == 250  # 200 newest entity tasks still "new" and the 50 new ones
    assert outcome and (outcome[0].tasks_deleted, outcome[0].batches) == (200, 2)

    # The other way round: a claim's transaction holding its rows does not hold prune up.
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity, scheduled_jobs_task_event RESTART IDENTITY")
        )
    for n in range(2):
        store.add_entities(["r"], [(f"k{i}", {"n": n}) for i in range(20)])
    _aged(store, 30, list(range(1, 21)))
    # A real claim of the newest tasks (21-40), held open after its statement: prune keeps those tasks
    # FOR KEY SHARE, which a claim's lock (FOR NO KEY UPDATE) does not conflict with.
    claimer = TaskStore.from_url(postgres_server_url)
    claiming, done = threading.Event(), threading.Event()

    @sa.event.listens_for(claimer.engine, "after_cursor_execute")
    def _hold_claim(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "WITH")) and not claiming.is_set():
            claiming.set()
            done.wait(30)

    claims: list[Any] = []
    holder = threading.Thread(target=lambda: claims.append(claimer.claim("r", 100)))
    holder.start()
    try:
        assert claiming.wait(30)
        started = time.monotonic()
        pruned = prune_tasks(store.engine, utcnow() - dt.timedelta(days=7))
        assert time.monotonic() - started < 1.5
    finally:
        done.set()
        holder.join(30)
    assert pruned.tasks_deleted == 20
    assert claims and len(claims[0]) == 20
    claimer.engine.dispose()
    prune_engine.dispose()


# -- events the queue records -----------------------------------------------------------------------


def _http_publisher() -> Any:
    from scheduled_jobs.connectors.http import HttpPublisher
    from scheduled_jobs.models.connectors.http import HttpPublisherSettings

    settings = {
        "type": "http",
        "connection": "sink",
        "endpoint": "/orders/{entity_key}",
        "timeout_seconds": 1,
        "retry": {"attempts": 1, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2},
    }
    return HttpPublisher(HttpPublisherSettings.model_validate(settings))


def test_created_by_and_claimed_by_are_kept_in_their_columns(store: TaskStore) -> None:
    store.add_entities(["r", "s"], [("A", {"n": 1}), ("B", {"n": 2})], created_by=RUN)
    store.add_entities(["r"], [("C", {"n": 3})])
    store.claim("r", 1, claimed_by=OTHER_RUN)
    by_id = {t["id"]: t for t in store.list_tasks()}
    assert [by_id[i]["created_by"] for i in (1, 2, 3, 4, 5)] == [RUN.to_json()] * 4 + [None]
    assert by_id[1]["claimed_by"] == OTHER_RUN.to_json()
    assert by_id[3]["claimed_by"] is None
    history = task_history(store.engine, 1)
    assert history is not None and [(e.kind, e.actor) for e in history] == [("created", RUN)]


def test_an_export_records_each_push_with_status_code_duration_key_and_attempt(store: TaskStore, sink: Any) -> None:
    sink.plan = lambda number, key: "400" if key.endswith("-2") else ("500" if key.endswith("-3") else "ok")
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2}), ("C", {"n": 3})], created_by=RUN)
    result = export_route(store, _http_publisher(), "r", actor=OTHER_RUN)
    assert (result.exported, result.failed) == (1, 2)
    timelines = {i: task_history(store.engine, i) or [] for i in (1, 2, 3)}
    assert [[e.kind for e in timelines[i]] for i in (1, 2, 3)] == [
        ["created", "exported"],
        ["created", "export_failed"],
        ["created", "export_failed"],
    ]
    exported, refused, broken = (timelines[i][1] for i in (1, 2, 3))
    assert {exported.actor, refused.actor, broken.actor} == {OTHER_RUN}
    assert {k: v for k, v in exported.detail.items() if k != "duration_ms"} == {
        "status_code": 201,
        "idempotency_key": "r-1",
        "attempt": 1,
    }
    assert isinstance(exported.detail["duration_ms"], int) and 0 <= exported.detail["duration_ms"] < 10_000
    assert (refused.detail["status_code"], refused.detail["retryable"], refused.detail["idempotency_key"]) == (
        400,
        False,
        "r-2",
    )
    assert refused.detail["error"].startswith("HTTP 400 from POST")
    assert (broken.detail["status_code"], broken.detail["retryable"], broken.detail["attempt"]) == (500, True, 1)
    row = next(t for t in store.list_tasks() if t["id"] == 2)
    assert row["claimed_by"] == OTHER_RUN.to_json()
    assert refused.detail["error"] == row["last_error"]


class _ReturningPublisher:
    """A publisher that answers what it is told: a status code, None, a refusal, or a bug."""

    def __init__(self, answers: dict[int, Any]) -> None:
        self.answers = answers

    def publish(self, task: ClaimedTask) -> int | None:
        answer = self.answers[task.id]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    def redact(self, text: str) -> str:
        return text.replace("s3cret", "***")

    def close(self) -> None:
        pass


def test_push_detail_for_publishers_without_status_codes_and_for_connector_bugs(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2}), ("C", {"n": 3})])
    answers = {1: None, 2: DeliveryError("refused", retryable=True), 3: RuntimeError("bug with s3cret")}
    export_route(store, _ReturningPublisher(answers), "r")  # type: ignore[arg-type]
    details = [(task_history(store.engine, i) or [])[-1] for i in (1, 2, 3)]
    assert [(e.kind, e.actor, e.detail["status_code"]) for e in details] == [
        ("exported", None, None),
        ("export_failed", None, None),
        ("export_failed", None, None),
    ]
    assert (details[1].detail["error"], details[1].detail["retryable"]) == ("refused", True)
    assert details[2].detail["error"] == "unexpected RuntimeError: bug with ***"


def test_a_settle_after_losing_the_claim_writes_no_event(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    first = store.claim("r", 2, claimed_by=RUN)
    repair_run = Actor("run", dag_id="repair", run_id="scheduled__1", task_id="repair", try_number=2)
    repaired = store.repair(dt.timedelta(minutes=30), 3, now=utcnow() + dt.timedelta(hours=1), actor=repair_run)
    assert repaired.reset == [1, 2]
    second = store.claim("r", 1, claimed_by=OTHER_RUN)
    assert store.settle(first[0].claim_token, [1], [(2, "late", True)], actor=RUN) == 0
    assert store.settle(second[0].claim_token, [1], [], actor=OTHER_RUN) == 1
    history = task_history(store.engine, 1)
    assert history is not None
    assert [(e.kind, e.actor) for e in history] == [
        ("created", None),
        ("repaired", repair_run),
        ("exported", OTHER_RUN),
    ]
    assert history[1].detail == {
        "to": "new",
        "claimed_by": {"kind": "run", **_run_fields(RUN)},
        "stuck_after_minutes": 30,
    }
    assert history[2].detail["attempt"] == 2
    assert [e.kind for e in task_history(store.engine, 2) or []] == ["created", "repaired"]
    assert store.counts("r")["new"] == 1


def _run_fields(actor: Actor) -> dict[str, Any]:
    return {"dag_id": actor.dag_id, "run_id": actor.run_id, "task_id": actor.task_id, "try_number": actor.try_number}


def test_repair_to_failed_and_requeue_write_their_events(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    (a,) = store.claim("r", 1, claimed_by=RUN)
    store.repair(dt.timedelta(minutes=5), 1, now=utcnow() + dt.timedelta(hours=1), actor=OTHER_RUN)
    (b,) = store.claim("r", 1)
    assert store.fail(b, "503", retryable=True)
    requeued = store.requeue_failed("r", 3, utcnow() + dt.timedelta(seconds=1), actor=OTHER_RUN)
    assert requeued == 1
    history_a = task_history(store.engine, a.id) or []
    assert [(e.kind, e.detail.get("to")) for e in history_a] == [("created", None), ("repaired", "failed")]
    assert history_a[1].detail["claimed_by"]["run_id"] == RUN.run_id
    history_b = task_history(store.engine, b.id) or []
    assert [(e.kind, e.actor) for e in history_b] == [
        ("created", None),
        ("export_failed", None),
        ("requeued", OTHER_RUN),
    ]
    assert history_b[2].detail == {"attempts": 1}


def test_the_operators_run_actor_names_the_task_try() -> None:
    from types import SimpleNamespace

    from scheduled_jobs.operators.base import run_actor

    ti = SimpleNamespace(dag_id="export_orders", run_id="manual__1", task_id="export", try_number=3)
    assert run_actor({"ti": ti}) == Actor(  # type: ignore[arg-type]
        "run", dag_id="export_orders", run_id="manual__1", task_id="export", try_number=3
    )


def test_a_webhook_task_says_who_pushed_it() -> None:
    from types import SimpleNamespace

    from scheduled_jobs.web.webhooks import webhook_actor

    incoming = SimpleNamespace(model=SimpleNamespace(webhook=SimpleNamespace(connection="shop_webhook")))
    assert webhook_actor(incoming, "ada") == Actor("webhook", user="ada")  # type: ignore[arg-type]
    assert webhook_actor(incoming, None) == Actor("webhook", user="secret of shop_webhook")  # type: ignore[arg-type]
    assert webhook_actor(incoming, None).label() == "webhook (secret of shop_webhook)"  # type: ignore[arg-type]


def test_a_webhook_push_records_the_user_or_the_secret_as_created_by(
    client: Any, server: Any, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import httpx
    from helpers.live_api import PREFIX, store_of

    by_token = client.post("/webhooks/shop-orders", json={"id": 1})
    assert by_token.status_code == 202, by_token.text
    path = project / "configurations" / "incoming" / "shop-orders.yaml"
    path.write_text(path.read_text() + "webhook:\n  connection: shop_orders_webhook\n", encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_ORDERS_WEBHOOK", json.dumps({"conn_type": "generic", "password": "s3cret"}))
    by_secret = httpx.post(
        f"{server.url}{PREFIX}/webhooks/shop-orders", json={"id": 2}, headers={"X-Webhook-Secret": "s3cret"}, timeout=30
    )
    assert by_secret.status_code == 202, by_secret.text
    rows = {row["entity_key"]: row for row in store_of(project).list_tasks()}
    assert Actor.from_json(rows["1"]["created_by"]) == Actor("webhook", user="admin")
    assert Actor.from_json(rows["2"]["created_by"]) == Actor("webhook", user="secret of shop_orders_webhook")


def test_settling_a_task_twice_counts_and_records_it_once(store: TaskStore) -> None:
    store.add_entities(["r"], [("A", {"n": 1}), ("B", {"n": 2})])
    a, b = store.claim("r", 2)
    assert store.fail(a, "first")
    assert not store.fail(a, "again")
    assert store.finish(b)
    assert not store.finish(b)
    assert not store.fail(b, "after finishing")
    assert [e.kind for e in task_history(store.engine, a.id) or []] == ["created", "export_failed"]
    assert [e.kind for e in task_history(store.engine, b.id) or []] == ["created", "exported"]
    (row,) = [t for t in store.list_tasks() if t["id"] == a.id]
    assert row["last_error"] == "first"


def test_a_time_ranged_list_goes_by_that_time_and_pages_without_gap_or_overlap(store: TaskStore) -> None:
    """With an updated range the list is newest-updated first (the (updated_at, id) index serves it); the
    keyset cursor stays a task id."""
    ids = store.add_entities(["r"], [(f"k{i}", {"i": i}) for i in range(12)], return_ids=True).task_ids
    base = dt.datetime(2026, 3, 1, 12, 0)
    # Updated in an order unlike the ids: two tasks share a time, one is outside the range.
    moments = [base + dt.timedelta(minutes=(7 * n) % 12) for n in range(12)]
    moments[3] = moments[4]
    moments[11] = base - dt.timedelta(days=1)
    with store.engine.begin() as conn:
        for task_id, moment in zip(ids, moments, strict=True):
            conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(updated_at=moment))
    wanted = TaskFilter(route="r", updated_after=base)
    seen: list[int] = []
    before = None
    while True:
        page = list_tasks(store.engine, wanted, before=before, size=4)
        seen += _ids(page.rows)
        if page.next_before is None:
            break
        before = page.next_before
    expected = [i for _, i in sorted(zip(moments[:11], ids[:11], strict=True), reverse=True)]
    assert seen == expected
    assert count_tasks(store.engine, wanted) == 11
    # A cursor whose task was deleted meanwhile still ends the walk (by id, as near as it can).
    assert list_tasks(store.engine, wanted, before=ids[-1] + 1000, size=50).rows
