"""The task queue: ingest entities as tasks, claim them for export, finish or fail them, repair stuck ones.

Every state change is one short transaction. A claim marks tasks ``processing`` with a claim token;
finishing or failing only counts while that token still holds, so an exporter that lost its claim
(repaired as stuck) cannot overwrite the outcome of the exporter that took over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, func, select, update

from scheduled_jobs.models.tasks import Actor, ClaimedTask, TaskStatus, idempotency_key
from scheduled_jobs.store.engine import create_store_engine
from scheduled_jobs.store.ingest import add_tasks
from scheduled_jobs.store.schema import task_events, tasks, watermarks

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.sql import Select

_IN_CHUNK = 500
T = TypeVar("T")


def utcnow() -> dt.datetime:
    """Naive UTC: what every timestamp column holds, on SQLite and PostgreSQL alike."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# One encoder for every payload: json.dumps with these options would build a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def canonical_json(payload: Any) -> str:
    """The payload as stored: compact JSON with sorted keys, so equal content is equal text.

    ``ValueError`` for what JSON cannot hold (NaN, infinity: a float column, ``1e400``): stored, it
    could never be sent to a destination.
    """
    try:
        document = _CANONICAL.encode(payload)
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ValueError("a number has more than 4300 digits") from None
        raise ValueError("a number is NaN or infinite, which JSON cannot hold") from None  # allow_nan=False
    except RecursionError:
        raise ValueError("nested too deep to be stored") from None
    except TypeError as exc:  # keys that are not text, e.g. a tuple from a connector
        raise ValueError(f"not JSON data: {exc}") from None
    return document


def encoded_document(payload: Any) -> tuple[str, str]:
    """(canonical JSON, its SHA-256) of a payload; ``ValueError`` when it cannot be stored as UTF-8 JSON
    (also for a lone surrogate, which a ``\\ud800`` escape in JSON text can make)."""
    document = canonical_json(payload)
    try:
        data = document.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a text holds a lone UTF-16 surrogate, which is not Unicode text") from None
    return document, hashlib.sha256(data).hexdigest()


def content_hash(payload: Any) -> str:
    return encoded_document(payload)[1]


def table_rows(engine: Engine, table: Table, **equal: Any) -> list[dict[str, Any]]:
    """Every row of a table in id order, where each column named in ``equal`` holds its value (None: any)."""
    query = select(table).order_by(table.c.id)
    for column, value in equal.items():
        if value is not None:
            query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


@dataclass
class IngestResult:
    created: int = 0
    unchanged: int = 0
    task_ids: list[int] = field(default_factory=list)
    """The ids of the created tasks, when asked for (``return_ids``)."""

    def __iadd__(self, other: IngestResult) -> IngestResult:
        self.created += other.created
        self.unchanged += other.unchanged
        self.task_ids.extend(other.task_ids)
        return self


@dataclass(frozen=True)
class Push:
    """What one publish of a task measured, for its ``exported``/``export_failed`` event."""

    status_code: int | None = None
    """The destination's answer where it has one (HTTP); None for files and SQL."""
    duration_ms: int | None = None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _actor_json(actor: Actor | None) -> str | None:
    return actor.to_json() if actor is not None else None


def record_events(conn: Connection, kind: str, actor: Actor | None, details: Mapping[int, dict[str, Any]]) -> None:
    """One event per task (``details``: task id -> its detail), in the caller's transaction, one statement."""
    if not details:
        return
    at, who = utcnow(), _actor_json(actor)
    rows = [{"task_id": i, "at": at, "kind": kind, "actor": who, "detail": _json(d)} for i, d in details.items()]
    conn.execute(task_events.insert(), rows)


def lock_tasks(conn: Connection, query: Select[Any], *, wait: bool, deleting: bool = False) -> Sequence[Any]:
    """The rows of ``query`` (over the task table) in ascending id order, locked on PostgreSQL.

    The rule that keeps writers out of a deadlock: a writer that may wait for a row lock (``wait=True``:
    a settle, a renewal) takes all its locks in ascending id order, before it changes anything; every
    other writer over many rows (user actions, requeue, repair, prune) takes them ``SKIP LOCKED`` and
    so never waits. The caller then changes only the rows it got, under the same conditions. SQLite
    needs none of it: ``BEGIN IMMEDIATE`` holds the whole database.

    The lock is ``FOR NO KEY UPDATE`` for a writer that only changes a task (what an ``UPDATE`` takes
    anyway), ``FOR UPDATE`` for one that deletes it (``deleting``). Prune holds each entity's newest task
    ``FOR KEY SHARE`` while it deletes the older ones: only a delete conflicts with that, so no delete can
    take the task prune's decision rests on, and no claim or settle is held up by it.
    """
    query = query.order_by(tasks.c.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=not wait, of=tasks, key_share=not deleting)
    return conn.execute(query).all()


@dataclass
class RepairResult:
    reset: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _push_detail(row: Any, pushes: Mapping[int, Push]) -> dict[str, Any]:
    push = pushes.get(row.id, Push())
    return {
        "status_code": push.status_code,
        "duration_ms": push.duration_ms,
        "idempotency_key": idempotency_key(row),
        "attempt": row.attempts,
    }


def _claimer(text: str | None) -> Any:
    """A ``claimed_by`` column's actor as a JSON value for an event's detail (None when there is none)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _chunks(items: Sequence[T], size: int = _IN_CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode_value(value: Any) -> dict[str, Any]:
    """A watermark as typed JSON, so a timestamp comes back as a timestamp, not as text."""
    import decimal

    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    return {"type": "json", "value": value}


def _decode_value(data: dict[str, Any]) -> Any:
    import decimal

    kind, value = data["type"], data["value"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


class StoreState:
    """A subscriber's state (its watermark) kept in the task store."""

    def __init__(self, store: TaskStore, incoming: str) -> None:
        self.store = store
        self.incoming = incoming

    def load(self) -> Any:
        return self.store.load_watermark(self.incoming)

    def save(self, value: Any) -> None:
        self.store.save_watermark(self.incoming, value)


class TaskStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: URL | str) -> TaskStore:
        """A store on an engine of its own, for tests and benchmarks; the product uses ``TaskStoreHook``."""
        return cls(create_store_engine(url))

    # -- ingest ---------------------------------------------------------------------------------

    def add_entities(
        self,
        routes: Sequence[str],
        records: Sequence[tuple[str, Any]],
        *,
        return_ids: bool = False,
        created_by: Actor | None = None,
    ) -> IngestResult:
        """Make one "new" task per route for each entity whose content is new or changed.

        An entity whose content is the same as the last content seen for it on that route makes no
        task: re-importing the same input is harmless. Within one call (one file, one page) the last
        record of an entity stands for it. ``created_by`` (the run or webhook) is kept in each task's
        ``created_by`` column, in the same insert.
        """
        maker = _actor_json(created_by)
        result = IngestResult()
        if not records:
            return result
        now = utcnow()
        latest: dict[str, tuple[str, str]] = {}
        for key, payload in records:
            try:
                latest[key] = encoded_document(payload)
            except ValueError as exc:
                raise ValueError(f"entity {key[:100]!r}: {exc}") from None
        result.unchanged += (len(records) - len(latest)) * len(routes)
        with self.engine.begin() as conn:
            created, ids = add_tasks(conn, routes, latest, now, maker, return_ids=return_ids)
        result.created += created
        result.unchanged += len(latest) * len(routes) - created
        result.task_ids.extend(ids)
        return result

    # -- export ---------------------------------------------------------------------------------

    def newest_new_id(self, route: str) -> int | None:
        """The id of the newest "new" task of a route: an export never runs past what was there at its start."""
        query = select(func.max(tasks.c.id)).where(tasks.c.route == route, tasks.c.status == TaskStatus.NEW.value)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None

    def claim(
        self, route: str, limit: int, up_to_id: int | None = None, *, claimed_by: Actor | None = None
    ) -> list[ClaimedTask]:
        """Claim at most ``limit`` "new" tasks of a route, oldest first, under one fresh claim token;
        ``claimed_by`` (the export run) goes in each task's ``claimed_by`` column."""
        token = str(uuid.uuid4())
        now = utcnow()
        candidate = tasks.alias("candidate")
        chosen = (
            select(candidate.c.id)
            .where(candidate.c.route == route, candidate.c.status == TaskStatus.NEW.value)
            .order_by(candidate.c.id)
            .limit(limit)
        )
        if up_to_id is not None:
            chosen = chosen.where(candidate.c.id <= up_to_id)
        if self.engine.dialect.name == "postgresql":
            # Concurrent exporters skip each other's rows instead of waiting for them. NO KEY UPDATE: a claim
            # only updates its rows, and so never skips one that prune holds FOR KEY SHARE (lock_tasks).
            chosen = chosen.with_for_update(skip_locked=True, key_share=True)
        picked = chosen.cte("picked").prefix_with("MATERIALIZED")
        statement = (
            update(tasks)
            # A materialized CTE: a plain IN (subquery ... LIMIT) may be re-run by the planner and claim
            # more than `limit` rows.
            .where(tasks.c.id.in_(select(picked.c.id)), tasks.c.status == TaskStatus.NEW.value)
            .values(
                status=TaskStatus.PROCESSING.value,
                claim_token=token,
                claimed_at=now,
                claimed_by=_actor_json(claimed_by),
                updated_at=now,
                attempts=tasks.c.attempts + 1,
            )
            .returning(tasks.c.id, tasks.c.route, tasks.c.entity_key, tasks.c.payload, tasks.c.attempts)
        )
        with self.engine.begin() as conn:
            rows = sorted(conn.execute(statement).all(), key=lambda row: row.id)
        return [ClaimedTask(r.id, r.route, r.entity_key, json.loads(r.payload), r.attempts, token) for r in rows]

    def finish(self, task: ClaimedTask) -> bool:
        """Mark a delivered task finished; False when its claim was lost (it was repaired meanwhile)."""
        return self.settle(task.claim_token, [task.id], []) == 1

    def fail(self, task: ClaimedTask, error: str, *, retryable: bool = False) -> bool:
        """Mark a task failed with its error; False when its claim was lost."""
        return self.settle(task.claim_token, [], [(task.id, error, retryable)]) == 1

    def settle(
        self,
        token: str,
        finished: Sequence[int],
        failures: Sequence[tuple[int, str, bool]],
        *,
        actor: Actor | None = None,
        pushes: Mapping[int, Push] | None = None,
    ) -> int:
        """Finish and fail the tasks of one claim in one transaction; returns how many still held the claim.

        Each update is fenced by the claim token and the "processing" status, so tasks repaired and
        claimed by another exporter meanwhile are left alone. In the same transaction each task that
        still held the claim gets its ``exported`` or ``export_failed`` event (``actor``: the export run;
        ``pushes``: what each publish measured); one that lost it gets none, like its settle.
        """
        now = utcnow()
        pushes = pushes or {}
        held = (tasks.c.claim_token == token, tasks.c.status == TaskStatus.PROCESSING.value)
        finishing = set(finished)
        outcome = {i: (e, r) for i, e, r in failures if i not in finishing}  # named twice: finished
        exported: dict[int, dict[str, Any]] = {}
        failed: dict[int, dict[str, Any]] = {}
        returned = (tasks.c.id, tasks.c.route, tasks.c.attempts)
        with self.engine.begin() as conn:
            # Every row this settle changes, locked first, in ascending id order (it waits for a lock a
            # user action or a repair holds; every writer that waits locks in this one order, so none
            # waits in a cycle). Fenced by the claim: what another exporter holds now is not taken.
            rows: list[Any] = []
            for chunk in _chunks(sorted(finishing | set(outcome))):
                rows += lock_tasks(conn, select(*returned).where(tasks.c.id.in_(chunk), *held), wait=True)
            done = [r.id for r in rows if r.id not in outcome]
            for chunk in _chunks(done):
                changed = conn.execute(
                    update(tasks)
                    .where(tasks.c.id.in_(chunk), *held)
                    .values(status=TaskStatus.FINISHED.value, last_error=None, retryable=False, updated_at=now)
                    .returning(tasks.c.id)
                ).scalars()
                exported.update((int(i), {}) for i in changed)
            failing = [r for r in rows if r.id in outcome]
            if failing:
                # An executemany UPDATE returns no rows; the rows are locked (on SQLite the whole database
                # is), so each of these updates changes its row.
                conn.execute(
                    update(tasks)
                    .where(tasks.c.id == bindparam("task_id"), *held)
                    .values(
                        status=TaskStatus.FAILED.value,
                        last_error=bindparam("error"),
                        retryable=bindparam("is_retryable"),
                        updated_at=now,
                    ),
                    [{"task_id": r.id, "error": outcome[r.id][0], "is_retryable": outcome[r.id][1]} for r in failing],
                )
            for row in rows:
                if row.id in exported:
                    exported[row.id] = _push_detail(row, pushes)
                elif row.id in outcome:
                    error, retryable = outcome[row.id]
                    failed[row.id] = _push_detail(row, pushes) | {"error": error, "retryable": retryable}
            record_events(conn, "exported", actor, exported)
            record_events(conn, "export_failed", actor, failed)
        return len(exported) + len(failed)

    def touch(self, tokens: Sequence[str]) -> int:
        """Renew claims: tasks a long export still holds are not mistaken for stuck ones."""
        mine = (tasks.c.claim_token.in_(tokens), tasks.c.status == TaskStatus.PROCESSING.value)
        now, renewed = utcnow(), 0
        with self.engine.begin() as conn:
            # Locked first in ascending id order, as a settle does (both wait for their rows).
            ids = [r.id for r in lock_tasks(conn, select(tasks.c.id).where(*mine), wait=True)]
            for chunk in _chunks(ids):
                renewed += int(
                    conn.execute(update(tasks).where(tasks.c.id.in_(chunk), *mine).values(claimed_at=now)).rowcount
                )
        return renewed

    def requeue_failed(
        self, route: str, max_attempts: int, failed_before: dt.datetime, *, actor: Actor | None = None
    ) -> int:
        """Retrying of failed tasks: retryable failed tasks back to "new", while attempts remain; a
        ``requeued`` event each (``actor``: the export run that requeued them)."""
        due = (
            tasks.c.route == route,
            tasks.c.status == TaskStatus.FAILED.value,
            tasks.c.retryable.is_(True),
            tasks.c.attempts < max_attempts,
            tasks.c.updated_at <= failed_before,
        )
        rows: list[Any] = []
        with self.engine.begin() as conn:
            # Never waits: a row another transaction holds (a user's action) is left for the next run.
            ids = [r.id for r in lock_tasks(conn, select(tasks.c.id).where(*due), wait=False)]
            now = utcnow()
            for chunk in _chunks(ids):
                rows += conn.execute(
                    update(tasks)
                    .where(tasks.c.id.in_(chunk), *due)
                    .values(status=TaskStatus.NEW.value, claim_token=None, updated_at=now)
                    .returning(tasks.c.id, tasks.c.attempts)
                ).all()
            record_events(conn, "requeued", actor, {row.id: {"attempts": row.attempts} for row in rows})
        return len(rows)

    # -- subscriber state ---------------------------------------------------------------------------

    def load_watermark(self, incoming: str) -> Any:
        with self.engine.connect() as conn:
            raw = conn.execute(
                select(watermarks.c.value).where(watermarks.c.incoming_configuration == incoming)
            ).scalar()
        return None if raw is None else _decode_value(json.loads(raw))

    def save_watermark(self, incoming: str, value: Any) -> None:
        encoded = json.dumps(_encode_value(value))
        now = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(watermarks)
                .where(watermarks.c.incoming_configuration == incoming)
                .values(value=encoded, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(watermarks.insert().values(incoming_configuration=incoming, value=encoded, updated_at=now))

    # -- repair ---------------------------------------------------------------------------------

    def repair(
        self,
        stuck_after: dt.timedelta,
        max_attempts: int,
        now: dt.datetime | None = None,
        *,
        actor: Actor | None = None,
    ) -> RepairResult:
        """Tasks in "processing" since before ``now - stuck_after`` go back to "new", or to "failed"
        once they have been claimed ``max_attempts`` times; a ``repaired`` event each (``actor``: the
        repair run), saying where it went and which run's claim it took away."""
        cutoff = (now or utcnow()) - stuck_after
        result = RepairResult()
        stuck = (tasks.c.status == TaskStatus.PROCESSING.value, tasks.c.claimed_at < cutoff)
        minutes = int(stuck_after.total_seconds() // 60)
        with self.engine.begin() as conn:
            # Never waits: a stuck row another transaction holds (its exporter settling it at last) is
            # left for the next run.
            rows = lock_tasks(conn, select(tasks.c.id, tasks.c.attempts, tasks.c.claimed_by).where(*stuck), wait=False)
            holders = {r.id: r.claimed_by for r in rows}
            failed = [r.id for r in rows if r.attempts >= max_attempts]
            reset = [r.id for r in rows if r.attempts < max_attempts]
            moves = (
                (
                    "failed",
                    failed,
                    {
                        "status": TaskStatus.FAILED.value,
                        "claim_token": None,
                        "last_error": f"stuck in processing for more than {minutes} minutes after "
                        f"{max_attempts} attempts",
                    },
                    result.failed,
                ),
                ("new", reset, {"status": TaskStatus.NEW.value, "claim_token": None, "claimed_at": None}, result.reset),
            )
            for to, ids, values, moved in moves:
                for chunk in _chunks(ids):
                    changed = conn.execute(
                        update(tasks)
                        .where(tasks.c.id.in_(chunk), *stuck)
                        .values(**values, updated_at=utcnow())
                        .returning(tasks.c.id)
                    ).scalars()
                    moved.extend(sorted(int(i) for i in changed))
                details = {
                    i: {"to": to, "claimed_by": _claimer(holders[i]), "stuck_after_minutes": minutes} for i in moved
                }
                record_events(conn, "repaired", actor, details)
        return result

    # -- reading --------------------------------------------------------------------------------

    def counts(self, route: str | None = None) -> dict[str, int]:
        query = select(tasks.c.status, func.count()).group_by(tasks.c.status)
        if route is not None:
            query = query.where(tasks.c.route == route)
        with self.engine.connect() as conn:
            found = {status: int(count) for status, count in conn.execute(query)}
        return {status.value: found.get(status.value, 0) for status in TaskStatus}

    def list_tasks(self, route: str | None = None) -> list[dict[str, Any]]:
        """Every task (of a route), oldest first: for tests and benchmarks, which read small stores whole."""
        return table_rows(self.engine, tasks, route=route)
