"""The operator's console over the task store: find tasks, read a task's history and an entity's tasks,
retry/skip/delete tasks, and prune old ones.

Lists are keyset pages (``WHERE id < before ORDER BY id DESC LIMIT size``), so a page deep in the list
costs what the first costs; the indexes (route, status, id) and (route, entity_key, id) serve the
filters. Actions are conditional statements fenced by status (``... AND status IN (...)``), the same
fencing a settle relies on: a task a claim took first (``processing``) is left alone and counted as not
eligible, and an exporter that still holds it settles it as usual. Work over "everything matching a
filter" and prune run in keyset batches of short transactions.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, exists, false, func, select, true, tuple_, update

from scheduled_jobs.models.tasks import Actor, TaskStatus
from scheduled_jobs.redaction import printable
from scheduled_jobs.store.reports import ROW_COLUMNS
from scheduled_jobs.store.schema import entities, task_events, tasks
from scheduled_jobs.store.tasks import lock_tasks, utcnow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql import ColumnElement, Select

STATUS_FILTERS = ("new", "processing", "finished", "failed", "will_retry", "skipped")
ACTION_BATCH = 1000
"""Ids per transaction when an action runs over everything matching a filter."""
REASON_CHARACTERS = 1000
MAX_ID = 2**63 - 1
"""The largest id a task can have (PostgreSQL's bigint); larger ones name no task."""
SQLITE_PRUNE_PAUSE = 0.1
"""Seconds prune leaves SQLite's lock free after each batch: a waiting writer's busy handler polls at up
to 100 ms intervals, so a shorter gap would pass unseen."""
_KEY_CHARACTERS = 500  # the entity_key column; ingest refuses longer keys and control characters

LISTED = (*ROW_COLUMNS, tasks.c.created_by)


@dataclass(frozen=True)
class TaskFilter:
    route: str | None = None
    status: str | None = None
    """One of ``STATUS_FILTERS``; ``will_retry`` is failed and retryable."""
    entity_key: str | None = None
    prefix: bool = False
    """``entity_key`` as a prefix (``%``, ``_`` and ``\\`` in it match themselves)."""
    created_after: dt.datetime | None = None
    """Naive UTC, inclusive (as every ``*_after``)."""
    created_before: dt.datetime | None = None
    """Exclusive (as every ``*_before``)."""
    updated_after: dt.datetime | None = None
    updated_before: dt.datetime | None = None
    routes: frozenset[str] | None = None
    """The routes the caller may see (``web.access``); None: every route. Never from the caller's input."""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}")


@dataclass(frozen=True)
class TaskIds:
    ids: tuple[int, ...]
    routes: frozenset[str] | None = None
    """As ``TaskFilter.routes``: a named task on another route is as if it did not exist."""


Selection = TaskIds | TaskFilter


@dataclass(frozen=True)
class TaskListPage:
    rows: list[dict[str, Any]]
    """``LISTED`` columns; ``created_by`` as its raw JSON text."""
    next_before: int | None
    """Pass as ``before=`` for the next (older) page; None on the last page."""
    size: int


@dataclass(frozen=True)
class TaskEvent:
    id: int | None
    """None for the synthetic "created" entry."""
    at: dt.datetime
    kind: str
    actor: Actor | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class EntityView:
    route: str
    entity_key: str
    content_hash: str | None
    seen_at: dt.datetime | None
    last_payload: Any
    """The payload of the entity's newest task; None when none is left."""
    tasks: list[dict[str, Any]]
    """Newest first, at most ``limit``."""
    more: bool


@dataclass
class ActionResult:
    action: str
    matched: int = 0
    """Tasks the selection named (and that exist) or matched."""
    changed: int = 0
    not_eligible: int = 0
    """Matched, but in a status the action does not take (e.g. processing), or busy (PostgreSQL: held by
    another transaction at that moment, so skipped rather than waited for)."""
    task_ids: list[int] = field(default_factory=list)
    """The changed ones, the first 1,000."""

    def _add(self, matched: int, changed: Sequence[int]) -> None:
        self.matched += matched
        self.changed += len(changed)
        self.not_eligible += matched - len(changed)
        self.task_ids.extend(list(changed)[: max(0, ACTION_BATCH - len(self.task_ids))])


@dataclass
class PruneResult:
    tasks_deleted: int = 0
    events_deleted: int = 0
    batches: int = 0


# -- filters --------------------------------------------------------------------------------------


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _successor(prefix: str) -> str | None:
    """The least text greater than every text starting with ``prefix`` (in code point order), if any."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1 if not 0xD800 <= last + 1 <= 0xDFFF else 0xE000
    return prefix[:-1] + chr(following)


def _key_condition(filters: TaskFilter, dialect: str) -> ColumnElement[bool]:
    key = filters.entity_key or ""
    if len(key) > _KEY_CHARACTERS or ("\x00" in key and dialect == "postgresql"):
        return false()  # no stored key is longer; PostgreSQL's text holds no NUL (and refuses one as a parameter)
    column = tasks.c.entity_key
    if not filters.prefix:
        return column == key
    if not key:
        return true()
    if dialect == "postgresql":
        # Without an ESCAPE clause: PostgreSQL's default escape is the backslash, and a plain prefix
        # pattern lets the planner use an index (a C-collated or pattern_ops one) for the prefix.
        return column.like(_escape_like(key) + "%")
    # SQLite's LIKE ignores ASCII case; a range in code point order (its BINARY collation) is exact
    # and is served by the (route, entity_key, id) index.
    upper = _successor(key)
    bounded = column >= key if upper is None else and_(column >= key, column < upper)
    return and_(bounded, func.substr(column, 1, len(key)) == key)


def _route_scope(selection: TaskFilter | TaskIds) -> list[ColumnElement[bool]]:
    if selection.routes is None:
        return []
    return [tasks.c.route.in_(sorted(selection.routes))] if selection.routes else [false()]


def _conditions(filters: TaskFilter, dialect: str) -> list[ColumnElement[bool]]:
    found = _route_scope(filters)
    if filters.route is not None:
        found.append(tasks.c.route == filters.route)
    if filters.status == "will_retry":
        found += [tasks.c.status == TaskStatus.FAILED.value, tasks.c.retryable.is_(True)]
    elif filters.status is not None:
        found.append(tasks.c.status == filters.status)
    if filters.entity_key is not None:
        found.append(_key_condition(filters, dialect))
    for column, after, before in (
        (tasks.c.created_at, filters.created_after, filters.created_before),
        (tasks.c.updated_at, filters.updated_after, filters.updated_before),
    ):
        if after is not None:
            found.append(column >= _naive_utc(after))
        if before is not None:
            found.append(column < _naive_utc(before))
    return found


def _before(query: Select[Any], before: int | None) -> Select[Any]:
    if before is None or before > MAX_ID:
        return query
    return query.where(tasks.c.id < before) if before > 0 else query.where(false())


def _valid_ids(ids: Sequence[int]) -> list[int]:
    return sorted({int(i) for i in ids if 0 < int(i) <= MAX_ID})


# -- reading --------------------------------------------------------------------------------------


PREFIX_SORT_CAP = 20_000
"""Up to this many matches, a prefix's tasks are read through the key index and sorted (see ``list_tasks``)."""


def _time_order(filters: TaskFilter) -> Any:
    """The time column a filter ranges over, which then orders the list; None: the list goes by id."""
    if filters.created_after is not None or filters.created_before is not None:
        return tasks.c.created_at
    if filters.updated_after is not None or filters.updated_before is not None:
        return tasks.c.updated_at
    return None


def list_tasks(engine: Engine, filters: TaskFilter, *, before: int | None = None, size: int = 50) -> TaskListPage:
    """One page of tasks, newest first, older than the task ``before`` (the previous page's ``next_before``).

    With a created or updated range the list goes by that time, newest first (then by id), through the
    (time, id) index: by id the database would walk back from the newest task to the range, 250-350 ms
    at 1,000,000 tasks (``bench/store_scale.py``), against about 1 ms. ``before`` stays a task id: the
    page goes on after that task's (time, id).
    """
    size = max(1, min(size, 1000))
    query = select(*LISTED).where(*_conditions(filters, engine.dialect.name))
    time_column = _time_order(filters)
    with engine.connect() as conn:
        if time_column is None:
            order = tasks.c.id.desc()
            if (
                filters.prefix
                and filters.entity_key
                and count_tasks(engine, filters, cap=PREFIX_SORT_CAP) <= PREFIX_SORT_CAP
            ):
                # Few matches of a prefix: read them through the key index and sort them (``id + 0`` keeps the
                # planner from walking the primary key back from the newest task, betting that matches are
                # spread evenly over the ids: a key's tasks are not, 180 ms against 8 ms at 1,000,000 tasks).
                order = (tasks.c.id + 0).desc()
            query = _before(query.order_by(order), before)
        else:
            query = query.order_by(time_column.desc(), tasks.c.id.desc())
            anchor = None
            if before is not None and 0 < before <= MAX_ID:
                anchor = conn.execute(select(time_column).where(tasks.c.id == before)).scalar()
            if anchor is not None:
                query = query.where(tuple_(time_column, tasks.c.id) < tuple_(anchor, before))
            else:  # no such task (deleted meanwhile): by id, as near as the time order allows
                query = _before(query, before)
        rows = [dict(row._mapping) for row in conn.execute(query.limit(size + 1))]
    more = len(rows) > size
    rows = rows[:size]
    return TaskListPage(rows, rows[-1]["id"] if more else None, size)


def count_tasks(engine: Engine, filters: TaskFilter, *, cap: int = 100_000) -> int:
    """How many tasks match: exact up to ``cap``, else ``cap + 1`` (a count never reads the whole store)."""
    inner = select(tasks.c.id).where(*_conditions(filters, engine.dialect.name)).limit(cap + 1)
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inner.subquery())).scalar_one())


def _detail(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def task_history(engine: Engine, task_id: int) -> list[TaskEvent] | None:
    """A task's timeline, oldest first: its making (who created it), then its events; None: no such task."""
    if not 0 < task_id <= MAX_ID:
        return None
    with engine.connect() as conn:
        task = conn.execute(select(tasks.c.created_at, tasks.c.created_by).where(tasks.c.id == task_id)).first()
        if task is None:
            return None
        rows = conn.execute(
            select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.id)
        ).all()
    timeline = [TaskEvent(None, task.created_at, "created", Actor.from_json(task.created_by), {})]
    timeline += [TaskEvent(int(r.id), r.at, r.kind, Actor.from_json(r.actor), _detail(r.detail)) for r in rows]
    return timeline


def entity_view(engine: Engine, route: str, entity_key: str, *, limit: int = 200) -> EntityView | None:
    """Every task of one entity on a route (newest first) and the content it last had; None: unknown entity."""
    limit = max(1, limit)
    if len(entity_key) > _KEY_CHARACTERS or ("\x00" in entity_key and engine.dialect.name == "postgresql"):
        return None
    with engine.connect() as conn:
        entity = conn.execute(
            select(entities.c.content_hash, entities.c.updated_at).where(
                entities.c.route == route, entities.c.entity_key == entity_key
            )
        ).first()
        rows = [
            dict(row._mapping)
            for row in conn.execute(
                select(*LISTED)
                .where(tasks.c.route == route, tasks.c.entity_key == entity_key)
                .order_by(tasks.c.id.desc())
                .limit(limit + 1)
            )
        ]
        payload = None
        if rows:
            payload = conn.execute(select(tasks.c.payload).where(tasks.c.id == rows[0]["id"])).scalar()
    if entity is None and not rows:
        return None
    return EntityView(
        route=route,
        entity_key=entity_key,
        content_hash=entity.content_hash if entity else None,
        seen_at=entity.updated_at if entity else None,
        last_payload=json.loads(payload) if payload is not None else None,
        tasks=rows[:limit],
        more=len(rows) > limit,
    )


# -- actions --------------------------------------------------------------------------------------


def _record(conn: Connection, task_ids: Sequence[int], kind: str, actor: Actor, detail: dict[str, Any]) -> None:
    if not task_ids:
        return
    at, who, what = utcnow(), actor.to_json(), json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
    conn.execute(
        task_events.insert(), [{"task_id": i, "at": at, "kind": kind, "actor": who, "detail": what} for i in task_ids]
    )


def _act(engine: Engine, selection: Selection, action: str, apply: Any) -> ActionResult:
    """Run ``apply(conn, ids, conditions) -> changed ids`` over the selection, one short transaction per batch."""
    result = ActionResult(action)
    if isinstance(selection, TaskIds):
        ids = _valid_ids(selection.ids)
        scope = _route_scope(selection)
        for start in range(0, len(ids), ACTION_BATCH):
            batch = ids[start : start + ACTION_BATCH]
            with engine.begin() as conn:
                found = conn.execute(select(func.count()).where(tasks.c.id.in_(batch), *scope)).scalar_one()
                result._add(int(found), apply(conn, batch, scope))
        return result
    conditions = _conditions(selection, engine.dialect.name)
    before: int | None = None
    while True:
        query = _before(select(tasks.c.id).where(*conditions), before).order_by(tasks.c.id.desc())
        with engine.begin() as conn:
            batch = list(conn.execute(query.limit(ACTION_BATCH)).scalars())
            if not batch:
                break
            # The filter again in the statement: what changed meanwhile (a claim, a requeue) no longer matches.
            result._add(len(batch), apply(conn, batch, conditions))
        if len(batch) < ACTION_BATCH:
            break
        before = min(batch)
    return result


def _free(
    conn: Connection, ids: Sequence[int], eligible: Sequence[ColumnElement[bool]], *, deleting: bool = False
) -> list[int]:
    """The eligible ones of ``ids``, locked ``SKIP LOCKED`` on PostgreSQL: an action never waits for a row
    another transaction holds (an exporter's settle, a requeue, a prune batch that keeps it as an entity's
    newest task); such a row is busy, counted not eligible."""
    query = select(tasks.c.id).where(tasks.c.id.in_(ids), *eligible)
    return [int(r.id) for r in lock_tasks(conn, query, wait=False, deleting=deleting)]


def _update_returning(
    conn: Connection, ids: Sequence[int], conditions: Sequence[ColumnElement[bool]], taken: Sequence[str], values: Any
) -> list[int]:
    eligible = (tasks.c.status.in_(taken), *conditions)
    free = _free(conn, ids, eligible)
    if not free:
        return []
    statement = update(tasks).where(tasks.c.id.in_(free), *eligible).values(**values).returning(tasks.c.id)
    return sorted(int(i) for i in conn.execute(statement).scalars())


def retry_tasks(engine: Engine, selection: Selection, actor: Actor) -> ActionResult:
    """Failed or skipped tasks back to "new", with their attempts counted afresh; a "retried" event each."""

    def apply(conn: Connection, ids: Sequence[int], conditions: Sequence[ColumnElement[bool]]) -> list[int]:
        values = {
            "status": TaskStatus.NEW.value,
            "attempts": 0,
            "claim_token": None,
            "retryable": False,
            "last_error": None,
            "updated_at": utcnow(),
        }
        taken = (TaskStatus.FAILED.value, TaskStatus.SKIPPED.value)
        changed = _update_returning(conn, ids, conditions, taken, values)
        _record(conn, changed, "retried", actor, {})
        return changed

    return _act(engine, selection, "retry", apply)


def _reason(text: str) -> str:
    return printable(text)[:REASON_CHARACTERS]


def skip_tasks(engine: Engine, selection: Selection, actor: Actor, reason: str) -> ActionResult:
    """New or failed tasks to "skipped" (never exported), with who skipped them and why; a "skipped" event each."""
    why = _reason(reason)
    who = printable(actor.user or actor.label())[:200]

    def apply(conn: Connection, ids: Sequence[int], conditions: Sequence[ColumnElement[bool]]) -> list[int]:
        values = {
            "status": TaskStatus.SKIPPED.value,
            "claim_token": None,
            "last_error": f"skipped by {who}: {why}",
            "updated_at": utcnow(),
        }
        taken = (TaskStatus.NEW.value, TaskStatus.FAILED.value)
        changed = _update_returning(conn, ids, conditions, taken, values)
        _record(conn, changed, "skipped", actor, {"reason": why})
        return changed

    return _act(engine, selection, "skip", apply)


def delete_tasks(engine: Engine, selection: Selection, actor: Actor) -> ActionResult:
    """Delete tasks in any status but "processing", and their events. The entity's row stays: the
    entity-key rule still knows its last content."""
    del actor  # who deleted is for the audit log; a deleted task has no history left

    def apply(conn: Connection, ids: Sequence[int], conditions: Sequence[ColumnElement[bool]]) -> list[int]:
        eligible = (tasks.c.status != TaskStatus.PROCESSING.value, *conditions)
        free = _free(conn, ids, eligible, deleting=True)
        if not free:
            return []
        statement = delete(tasks).where(tasks.c.id.in_(free), *eligible).returning(tasks.c.id)
        changed = sorted(int(i) for i in conn.execute(statement).scalars())
        if changed:
            conn.execute(delete(task_events).where(task_events.c.task_id.in_(changed)))
        return changed

    return _act(engine, selection, "delete", apply)


# -- prune ----------------------------------------------------------------------------------------


def prune_tasks(engine: Engine, older_than: dt.datetime, *, batch_size: int = 1000) -> PruneResult:
    """Delete finished and skipped tasks last updated before ``older_than``, and their events, oldest first.

    Never the newest task of an entity on its route (the content the entity page shows), never an entity
    row (the entity-key rule needs it). Walks the table once along its primary key (``id > <last batch's
    last id> ORDER BY id LIMIT batch``), so the whole prune reads each row once. Each batch is one short
    transaction; on PostgreSQL its rows are taken ``FOR UPDATE SKIP LOCKED`` and claims touch only "new"
    rows, so prune never blocks a claim. On SQLite a batch holds the whole database, so after each one
    prune pauses (``SQLITE_PRUNE_PAUSE`` seconds, or as long as the batch took if longer) and a waiting
    claim takes the lock in between.
    """
    batch_size = max(1, batch_size)
    cutoff = _naive_utc(older_than)
    newer = tasks.alias("newer")
    sqlite = engine.dialect.name == "sqlite"
    finished_or_skipped = (TaskStatus.FINISHED.value, TaskStatus.SKIPPED.value)
    old = (
        # SQLite would read the status index and sort its whole match for every batch: an expression
        # over the status keeps it on the primary key, which is the walk. PostgreSQL gets the plain
        # column: behind the expression it guesses that 0.5 % of rows match instead of 95 % and, some
        # 200,000 ids in, turned to reading and sorting the whole table for each batch (1 s a batch
        # instead of 3 ms at 1,000,000 tasks, bench/store_scale.py).
        (tasks.c.status + "").in_(finished_or_skipped) if sqlite else tasks.c.status.in_(finished_or_skipped),
        tasks.c.updated_at < cutoff,
        exists().where(
            newer.c.route == tasks.c.route, newer.c.entity_key == tasks.c.entity_key, newer.c.id > tasks.c.id
        ),
    )
    result = PruneResult()
    after = 0
    while True:
        with engine.begin() as conn:
            started = time.monotonic()  # the lock held from here (BEGIN IMMEDIATE may have waited for it)
            candidates = select(tasks.c.id, tasks.c.route, tasks.c.entity_key).where(tasks.c.id > after, *old)
            found = lock_tasks(conn, candidates.limit(batch_size), wait=False, deleting=True)
            ids = [int(r.id) for r in found]
            if not ids:
                break
            # "A newer task exists" is only true while that task does: a delete beside prune, not committed
            # yet, is invisible to prune's statements. So each candidate goes only below a newest task held
            # FOR KEY SHARE until this batch commits, which no delete can take meanwhile.
            newest = _held_newest(conn, ids)
            safe = [task for task in ids if newest.get(task, 0) > task]
            deleted = (
                [
                    int(i)
                    for i in conn.execute(
                        delete(tasks).where(tasks.c.id.in_(safe), *old).returning(tasks.c.id)
                    ).scalars()
                ]
                if safe
                else []
            )
            if deleted:
                result.events_deleted += int(
                    conn.execute(delete(task_events).where(task_events.c.task_id.in_(deleted))).rowcount
                )
            result.tasks_deleted += len(deleted)
            result.batches += 1
        if len(ids) < batch_size:
            break
        after = max(ids)
        if sqlite:
            time.sleep(max(SQLITE_PRUNE_PAUSE, time.monotonic() - started))
    return result


def _held_newest(conn: Connection, candidates: Sequence[int]) -> dict[int, int]:
    """Each candidate's id to the id of its entity's newest task (on its route), held ``FOR KEY SHARE SKIP
    LOCKED`` on PostgreSQL until the transaction ends.

    A candidate whose entity's newest task another transaction holds for a delete (or has just deleted) is
    left out: prune keeps it this time. A settle's or a claim's lock (``FOR NO KEY UPDATE``) does not
    conflict, so prune goes on beside the exports. SQLite's ``BEGIN IMMEDIATE`` already holds everything.
    """
    candidate, newer = tasks.alias("candidate"), tasks.alias("newer")
    # One backward step on the (route, entity_key, id) index per candidate.
    newest_of = (
        select(newer.c.id)
        .where(newer.c.route == candidate.c.route, newer.c.entity_key == candidate.c.entity_key)
        .order_by(newer.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    found = conn.execute(select(candidate.c.id, newest_of.label("newest")).where(candidate.c.id.in_(candidates)))
    newest = {int(row.id): int(row.newest) for row in found if row.newest is not None}
    # Then those rows by id (a join of the two would read the whole table on PostgreSQL); one deleted
    # meanwhile is gone, one a delete holds is skipped.
    lock = select(tasks.c.id).where(tasks.c.id.in_(set(newest.values()))).order_by(tasks.c.id)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update(read=True, key_share=True, skip_locked=True, of=tasks)
    held = {int(i) for i in conn.execute(lock).scalars()} if newest else set()
    return {task: top for task, top in newest.items() if top in held}
