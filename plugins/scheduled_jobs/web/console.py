"""The operator's console behind the pages and the JSON API: the task list and its filters, a task's
history, an entity's tasks, the actions (retry, skip, delete) with their audit, and the job run history.

Every value a caller sends is checked here before it reaches the store, and refused with a 422 that
names it (``entity_key: holds a NUL character``); the store then gets plain, bounded values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scheduled_jobs import airflow_runs
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.redaction import is_unicode, shown
from scheduled_jobs.store import (
    STATUS_FILTERS,
    ActionResult,
    TaskFilter,
    TaskIds,
    count_tasks,
    delete_tasks,
    entity_view,
    list_tasks,
    recent_job_runs,
    retry_tasks,
    skip_tasks,
    skipped_page,
    task_history,
    utcnow,
)
from scheduled_jobs.web import overview
from scheduled_jobs.web.responses import (
    ActionOutcome,
    ActorView,
    EntityPage,
    JobRunView,
    ListedTask,
    ProcessHistory,
    SkippedRun,
    TaskEventView,
    TaskList,
    TaskWithHistory,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from sqlalchemy.engine import Engine

    from scheduled_jobs.store import Selection, TaskEvent

log = logging.getLogger(__name__)

Action = Literal["retry", "skip", "delete"]
ACTIONS: tuple[Action, ...] = ("retry", "skip", "delete")
ACTION_LABELS = {"retry": "Retry", "skip": "Skip", "delete": "Delete"}
ACTION_DONE = {"retry": "retried", "skip": "skipped", "delete": "deleted"}
STATUS_LABELS = {
    "new": "new",
    "processing": "processing",
    "finished": "finished",
    "failed": "failed",
    "will_retry": "failed, will be retried",
    "skipped": "skipped",
}
EVENT_LABELS = {
    "created": "Created",
    "exported": "Exported",
    "export_failed": "Export failed",
    "repaired": "Repaired as stuck",
    "requeued": "Requeued by retry_failed_tasks",
    "retried": "Retried",
    "skipped": "Skipped",
}
LIST_SIZE = 50
MAX_LIST_SIZE = 500
MAX_IDS = 1000
"""The most task ids one request may name; more go by a filter (which the store works through in batches)."""
MAX_BODY_BYTES = 256 * 1024
"""A body of 1,000 ids and a filter is some 25 KB; anything far larger is refused unread."""
COUNT_CAP = 100_000
ACTION_CAP = 10_000
"""The most tasks one filter action of a page or the API takes: a request holds an API-server thread while
the store works through them (about 1-2 s per 10,000). More go by a narrower filter, or by the command
line (``scheduled-jobs tasks ... --all-matching``), which runs in its own process."""
CONFIGURATION_MAX = 250
ROUTE_MAX = 200  # the columns' lengths (store/schema.py)
ENTITY_KEY_MAX = 500
REASON_MAX = 1000
MAX_ID = 2**63 - 1
HISTORY_PER_CONFIGURATION = 10


def refuse(name: str, reason: str, status: int = 422) -> HTTPException:
    return HTTPException(status, f"{name}: {reason}")


def is_whole_number(value: str | None) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes superscripts, which ``int()`` refuses, and other scripts'
    digits, which it reads as numbers nobody typed here."""
    return value is not None and value.isascii() and value.isdigit()


def require_within_action_cap(count: int) -> None:
    """A filter action over more tasks than ``ACTION_CAP`` is refused before anything changes."""
    if count > ACTION_CAP:
        shown_count = f"more than {COUNT_CAP:,}" if count > COUNT_CAP else f"{count:,}"
        raise refuse(
            "filter",
            f"matches {shown_count} tasks, more than the {ACTION_CAP:,} one action from a page or the API takes; "
            "narrow the filter (e.g. by created time), or use scheduled-jobs tasks ... --all-matching on the "
            "command line; nothing was changed",
            409,
        )


# -- checking what callers send -------------------------------------------------------------------------


def text(name: str, value: str | None, limit: int) -> str | None:
    """A text parameter, or None when absent or empty; NUL (which PostgreSQL cannot hold) and length refused."""
    if value is None or value == "":
        return None
    if "\x00" in value:
        raise refuse(name, f"holds a NUL character, which no route or key can hold, got {shown(value, 40)}")
    if not is_unicode(value):
        raise refuse(name, f"is not valid text (a lone surrogate), got {shown(value, 40)}")
    if len(value) > limit:
        raise refuse(name, f"is at most {limit} characters, got {len(value)}")
    return value


def moment(name: str, value: str | None) -> dt.datetime | None:
    """An ISO 8601 date or date and time; without an offset it is UTC. Returned as naive UTC, as the store keeps it."""
    if value is None or value.strip() == "":
        return None
    if len(value) > 64 or "\x00" in value:
        raise refuse(name, f"must be a date and time in ISO 8601 (e.g. 2026-05-01T08:00, UTC), got {shown(value, 40)}")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise refuse(
            name, f"must be a date and time in ISO 8601 (e.g. 2026-05-01T08:00, UTC), got {shown(value, 40)}"
        ) from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            raise refuse(name, f"is out of range, got {shown(value, 40)}") from None
    return parsed


def status_value(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in STATUS_FILTERS:
        raise refuse("status", f"must be one of {', '.join(STATUS_FILTERS)}, got {shown(value, 40)}")
    return value


def task_filter(
    *,
    route: str | None = None,
    status: str | None = None,
    entity_key: str | None = None,
    prefix: bool = False,
    created_after: str | None = None,
    created_before: str | None = None,
    updated_after: str | None = None,
    updated_before: str | None = None,
) -> TaskFilter:
    """The store's filter from a caller's values, each checked (422 naming the one refused)."""
    key = text("entity_key", entity_key, ENTITY_KEY_MAX)
    return TaskFilter(
        route=text("route", route, ROUTE_MAX),
        status=status_value(status),
        entity_key=key,
        prefix=bool(prefix and key is not None),
        created_after=moment("created_after", created_after),
        created_before=moment("created_before", created_before),
        updated_after=moment("updated_after", updated_after),
        updated_before=moment("updated_before", updated_before),
    )


def filter_values(found: TaskFilter) -> dict[str, Any]:
    """The filter as the query parameters (and the JSON body's ``filter``) that name it; unset ones left out."""
    values: dict[str, Any] = {}
    for name in ("route", "status", "entity_key"):
        if getattr(found, name) is not None:
            values[name] = getattr(found, name)
    if found.prefix:
        values["prefix"] = True
    for name in ("created_after", "created_before", "updated_after", "updated_before"):
        at = getattr(found, name)
        if at is not None:
            values[name] = at.isoformat()
    return values


def describe_filter(found: TaskFilter) -> str:
    parts = []
    if found.route:
        parts.append(f"route {found.route}")
    if found.status:
        parts.append(f"status {STATUS_LABELS[found.status]}")
    if found.entity_key is not None:
        parts.append(f"entity key {'starting with' if found.prefix else '='} {found.entity_key}")
    for name, label in (
        ("created_after", "created from"),
        ("created_before", "created before"),
        ("updated_after", "updated from"),
        ("updated_before", "updated before"),
    ):
        at = getattr(found, name)
        if at is not None:
            parts.append(f"{label} {at.isoformat(sep=' ')} UTC")
    return ", ".join(parts) or "every task"


def reason_text(value: str | None) -> str:
    """The reason of a skip: required, one line of at most 1,000 characters, no NUL."""
    cleaned = (value or "").strip()
    if not cleaned:
        raise refuse("reason", "is required to skip: say why these tasks should never go")
    if "\x00" in cleaned:
        raise refuse("reason", "holds a NUL character")
    if not is_unicode(cleaned):
        raise refuse("reason", "is not valid text (a lone surrogate)")
    if len(cleaned) > REASON_MAX:
        raise refuse("reason", f"is at most {REASON_MAX} characters, got {len(cleaned)}")
    return cleaned


def task_ids(values: list[str]) -> TaskIds:
    """The ids a form names (each a whole number in range, at most ``MAX_IDS``), without repeats."""
    if len(values) > MAX_IDS:
        raise too_many_ids(len(values))
    ids: list[int] = []
    for value in values:
        if not is_whole_number(value) or len(value) > 19 or not 1 <= int(value) <= MAX_ID:
            raise refuse("id", f"must be a whole number from 1 to {MAX_ID}, got {shown(value, 40)}")
        ids.append(int(value))
    if not ids:
        raise refuse("id", "select at least one task")
    return TaskIds(tuple(dict.fromkeys(ids)))


def too_many_ids(count: int) -> HTTPException:
    return refuse(
        "ids",
        f"at most {MAX_IDS} task ids in one request, got {count}; act on a filter instead (with confirm_count)",
        413,
    )


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``MAX_BODY_BYTES``."""
    too_large = refuse("body", f"is more than {MAX_BODY_BYTES} bytes; name at most {MAX_IDS} task ids", 413)
    if declared_length is not None and is_whole_number(declared_length) and int(declared_length) > MAX_BODY_BYTES:
        raise too_large
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            raise too_large
    return bytes(received)


# -- the JSON API's action body ----------------------------------------------------------------------------


class FilterBody(BaseModel):
    """The filter of "everything matching", as the task list's query parameters name it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    route: str | None = None
    status: str | None = None
    entity_key: str | None = None
    prefix: bool = False
    created_after: str | None = None
    created_before: str | None = None
    updated_after: str | None = None
    updated_before: str | None = None


class ActionBody(BaseModel):
    """``{"ids": [...]}`` or ``{"filter": {...}, "confirm_count": N}``; a skip adds ``reason``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ids: list[int] | None = Field(default=None, max_length=MAX_IDS)
    filter: FilterBody | None = None
    confirm_count: int | None = Field(default=None, ge=0, le=ACTION_CAP)
    reason: str | None = None


def _body_errors(exc: ValidationError) -> str:
    reasons = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error.get("loc", ())) or "body"
        if error.get("type") == "missing":
            reasons.append(f"{name}: is required")
        else:
            reasons.append(f"{name}: {error.get('msg', 'is not valid')}, got {shown(error.get('input'), 40)}")
    return "; ".join(reasons)


def action_request(body: bytes, action: Action) -> tuple[Selection, int | None, str | None]:
    """The selection, the confirmed count and the reason of an API action's body; 413/422 naming what is wrong."""
    try:
        # Decoded strictly first: json.loads would let a lone surrogate through, which no database can store.
        raw = json.loads(body.decode("utf-8")) if body.strip() else None
    except (ValueError, RecursionError):
        raise refuse("body", 'is not JSON: send {"ids": [...]} or {"filter": {...}, "confirm_count": N}') from None
    if not isinstance(raw, dict):
        raise refuse("body", 'must be a JSON object: {"ids": [...]} or {"filter": {...}, "confirm_count": N}')
    ids = raw.get("ids")
    if isinstance(ids, list) and len(ids) > MAX_IDS:
        raise too_many_ids(len(ids))
    try:
        parsed = ActionBody.model_validate(raw)
    except ValidationError as exc:
        raise HTTPException(422, _body_errors(exc)) from None
    for index, value in enumerate(parsed.ids or []):
        if not 1 <= value <= MAX_ID:
            raise refuse(f"ids.{index}", f"must be a whole number from 1 to {MAX_ID}, got {value}")
    reason = reason_text(parsed.reason) if action == "skip" else None
    if (parsed.ids is None) == (parsed.filter is None):
        raise refuse("body", "name the tasks either by ids or by filter (with confirm_count), one of the two")
    if parsed.ids is not None:
        if not parsed.ids:
            raise refuse("ids", "is empty: name at least one task")
        return TaskIds(tuple(dict.fromkeys(parsed.ids))), None, reason
    assert parsed.filter is not None
    if parsed.confirm_count is None:
        raise refuse(
            "confirm_count",
            "is required with a filter: send the count you confirmed (GET api/tasks/count with the same filter)",
        )
    found = task_filter(**parsed.filter.model_dump())
    return found, parsed.confirm_count, reason


# -- what the pages and the API show ---------------------------------------------------------------------


def run_path(dag_id: str, run_id: str) -> str:
    """Airflow's page of a DAG run, relative to Airflow's base URL."""
    return f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def log_path(dag_id: str, run_id: str, task_id: str, try_number: int | None) -> str:
    """Airflow's page of a task try (its log), relative to Airflow's base URL."""
    path = f"{run_path(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return f"{path}?try_number={try_number}" if try_number else path


def actor_view(actor: Actor | None) -> ActorView | None:
    if actor is None:
        return None
    view = ActorView(
        kind=actor.kind,
        label=actor.label(),
        dag_id=actor.dag_id,
        run_id=actor.run_id,
        task_id=actor.task_id,
        try_number=actor.try_number,
        user=actor.user,
    )
    if actor.dag_id and actor.run_id:
        view.run_path = run_path(actor.dag_id, actor.run_id)
        if actor.task_id:
            view.log_path = log_path(actor.dag_id, actor.run_id, actor.task_id, actor.try_number)
    return view


def listed(row: Mapping[str, Any]) -> ListedTask:
    values = dict(row)
    created_by = values.pop("created_by", None)
    task = ListedTask.model_validate(values)
    task.will_retry = task.status == "failed" and task.retryable
    task.created_by = actor_view(Actor.from_json(created_by) if isinstance(created_by, str) else None)
    return task


def task_list(engine: Engine, found: TaskFilter, before: int | None, size: int) -> TaskList:
    page = list_tasks(engine, found, before=before, size=size)
    return TaskList(rows=[listed(row) for row in page.rows], next_before=page.next_before, size=page.size)


def _actor_in(value: Any) -> Actor | None:
    """An actor a detail holds (a repair's ``claimed_by``): as JSON text or as its decoded object."""
    if isinstance(value, dict):
        value = json.dumps(value)
    return Actor.from_json(value) if isinstance(value, str) else None


def event_view(event: TaskEvent) -> TaskEventView:
    detail = dict(event.detail or {})
    return TaskEventView(
        id=event.id,
        at=event.at,
        kind=event.kind,
        label=EVENT_LABELS.get(event.kind, event.kind),
        actor=actor_view(event.actor),
        detail=detail,
        claimed_by=actor_view(_actor_in(detail.get("claimed_by"))),
    )


def task_with_history(engine: Engine, task_id: int) -> TaskWithHistory | None:
    detail = overview.task(engine, task_id)
    if detail is None:
        return None
    history = task_history(engine, task_id) or []
    return TaskWithHistory(
        **detail.model_dump(),
        created_by_actor=actor_view(Actor.from_json(detail.created_by)),
        claimed_by_actor=actor_view(Actor.from_json(detail.claimed_by)),
        history=[event_view(event) for event in history],
    )


def entity_page(engine: Engine, route: str, entity_key: str) -> EntityPage | None:
    checked_route = text("route", route, ROUTE_MAX)
    checked_key = text("entity_key", entity_key, ENTITY_KEY_MAX)
    if checked_route is None or checked_key is None:
        raise refuse("entity_key" if checked_route else "route", "is required")
    found = entity_view(engine, checked_route, checked_key)
    if found is None:
        return None
    return EntityPage(
        route=found.route,
        entity_key=found.entity_key,
        content_hash=found.content_hash,
        seen_at=found.seen_at,
        last_payload=found.last_payload,
        tasks=[listed(row) for row in found.tasks],
        more=found.more,
    )


def pretty(payload: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)


# -- actions -----------------------------------------------------------------------------------------------


def current_count(engine: Engine, found: TaskFilter) -> int:
    return count_tasks(engine, found, cap=COUNT_CAP)


def _act(engine: Engine, action: Action, selection: Selection, actor: Actor, reason: str | None) -> ActionResult:
    if action == "retry":
        return retry_tasks(engine, selection, actor)
    if action == "skip":
        return skip_tasks(engine, selection, actor, reason or "")
    return delete_tasks(engine, selection, actor)


def run_action(
    engine: Engine, action: Action, selection: Selection, *, user: BaseUser, reason: str | None, via: str
) -> ActionOutcome:
    """Do the action as ``user``, then record it in Airflow's audit log: who, when, what and how many.

    The store writes the task's own history (``retried``/``skipped`` events, fenced like a settle); a
    delete leaves only the audit log row.
    """
    name = user.get_name()
    result = _act(engine, action, selection, Actor(kind="user", user=name), reason)
    what: dict[str, Any] = (
        {"ids": list(selection.ids)} if isinstance(selection, TaskIds) else {"filter": filter_values(selection)}
    )
    extra: dict[str, Any] = {
        "action": action,
        **what,
        "matched": result.matched,
        "changed": result.changed,
        "not_eligible": result.not_eligible,
        "task_ids": result.task_ids,
        "via": via,
    }
    if reason is not None:
        extra["reason"] = reason
    try:
        audit_id: int | None = airflow_runs.record_audit_log(f"tasks.{action}", name, None, extra)
    except Exception:  # the action is done; the row that failed is logged whole, to be found in the server's log
        log.exception("Could not write Airflow's audit log for %s", json.dumps(extra, default=str)[:2000])
        audit_id = None
    return ActionOutcome(
        action=action,
        matched=result.matched,
        changed=result.changed,
        not_eligible=result.not_eligible,
        task_ids=list(result.task_ids),
        audit_log_id=audit_id,
    )


# -- the history of processes ------------------------------------------------------------------------------


def _figures(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def process_history(
    engine: Engine, configuration: str | None = None, per_configuration: int = HISTORY_PER_CONFIGURATION
) -> ProcessHistory:
    """The last runs of each configuration; a run our history left "running" shows Airflow's state once it is over."""
    found = recent_job_runs(engine, configuration, per_configuration)
    left_running = [(r["dag_id"], r["run_id"]) for rows in found.values() for r in rows if r["state"] == "running"]
    try:
        airflow_states = airflow_runs.run_states(left_running)
    except Exception:  # Airflow's database unreachable: show what our history holds
        log.exception("Could not read the states of %d runs from Airflow", len(left_running))
        airflow_states = {}
    now = utcnow()
    history: dict[str, list[JobRunView]] = {}
    for name, rows in found.items():
        views = []
        for row in rows:
            state = row["state"]
            if state == "running":
                over = airflow_states.get((row["dag_id"], row["run_id"]))
                if over is not None and over not in ("running", "queued"):
                    state = over
            end = row.get("ended_at")
            duration = ((end or now) - row["started_at"]).total_seconds()
            views.append(
                JobRunView(
                    id=row["id"],
                    configuration=row["configuration"],
                    dag_id=row["dag_id"],
                    run_id=row["run_id"],
                    task_id=row["task_id"],
                    try_number=row["try_number"],
                    started_at=row["started_at"],
                    ended_at=end,
                    state=state,
                    recorded_state=row["state"],
                    duration_seconds=max(0.0, duration),
                    figures=_figures(row.get("figures")),
                    error=row.get("error"),
                    run_path=run_path(row["dag_id"], row["run_id"]),
                    log_path=log_path(row["dag_id"], row["run_id"], row["task_id"], row["try_number"]),
                )
            )
        history[name] = views
    return ProcessHistory(configurations=history)


def skipped_of(
    engine: Engine, configurations: list[str], per_configuration: int, *, dag_ids: frozenset[str] | None = None
) -> dict[str, list[SkippedRun]]:
    """The latest runs skipped as duplicates of each configuration, with their reason (of ``dag_ids`` only)."""
    return {
        name: [
            SkippedRun.model_validate(row)
            for row in skipped_page(engine, name, 1, per_configuration, dag_ids=dag_ids).rows
        ]
        for name in configurations
    }


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"
