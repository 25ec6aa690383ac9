"""What the JSON API answers, as pydantic models; the pages render these same objects.

Field order is the JSON's key order. Timestamps of the store are naive UTC and serialize as pydantic
writes them; Airflow's and the fire times are aware and keep ``isoformat()`` (``+00:00``, not ``Z``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, PlainSerializer, SkipValidation

from scheduled_jobs.cron_checker import CronCheck, FireTimes
from scheduled_jobs.exceptions import Problem

__all__ = [
    "ActionOutcome",
    "ActorView",
    "CountChanged",
    "CronCheck",
    "CsrfToken",
    "EntityPage",
    "ErrorBody",
    "JobRow",
    "JobRunView",
    "JobsPage",
    "LastRun",
    "ListedTask",
    "Paged",
    "ProcessHistory",
    "ProcessHolder",
    "ProcessRow",
    "Processes",
    "RealtimeExport",
    "RouteRow",
    "Routes",
    "SkippedRun",
    "TaskCount",
    "TaskDetail",
    "TaskEventView",
    "TaskList",
    "TaskRow",
    "TaskWithHistory",
    "WebhookReceipt",
]

IsoDatetime = Annotated[dt.datetime, PlainSerializer(dt.datetime.isoformat, when_used="json")]


class ErrorBody(BaseModel):
    """Every refusal: 4xx with what to fix."""

    detail: Any
    """What to fix: a sentence from us; whatever Airflow's authentication says for its own refusals."""


# -- scheduled jobs ---------------------------------------------------------------------------------


class LastRun(BaseModel):
    run_id: str
    state: str
    at: IsoDatetime | None


class JobRow(BaseModel):
    identifier: str
    dag_id: str
    name: str
    description: str
    job: str
    target: str | None
    expression: str
    expression_description: str
    timezone: str
    next_fire_times: FireTimes
    next_fire_times_error: str | None
    """Why an enabled job shows no fire times; its row is still shown, and so is every other row."""
    priority: int
    disabled: bool
    overlap: str | None
    last_run: LastRun | None
    skipped_duplicates: int
    definition_file: str


class JobsPage(BaseModel):
    jobs: list[JobRow]
    total: int
    """Every valid job, filtered or not."""
    matching: int
    """The jobs the filters keep, on every page."""
    page: int
    pages: int
    invalid: Annotated[list[Problem], SkipValidation]


# -- tasks --------------------------------------------------------------------------------------------

Row = TypeVar("Row", bound=BaseModel)


class Paged(BaseModel, Generic[Row]):
    """One page of rows, and how many rows there are in all."""

    rows: list[Row]
    total: int
    page: int
    pages: int
    size: int


class RouteRow(BaseModel):
    route: str
    name: str
    incoming_configuration: str | None
    outgoing_configuration: str | None
    realtime: bool
    counts: dict[str, int]
    oldest_new_age_seconds: float | None
    stuck: int


class Routes(BaseModel):
    routes: list[RouteRow]
    stuck_after_minutes: int


class TaskRow(BaseModel):
    """A task in a list (stuck, errors): everything but its payload."""

    id: int
    route: str
    entity_key: str
    status: str
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    claimed_at: dt.datetime | None
    last_error: str | None
    retryable: bool


class TaskDetail(TaskRow):
    """One task with its payload decoded; never its claim token."""

    content_hash: str
    payload: Any
    created_by: str | None = None
    claimed_by: str | None = None


class ActorView(BaseModel):
    """Who did something to a task: a job's run, a webhook call or a user; a run with links into Airflow's UI."""

    kind: str
    label: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    user: str | None = None
    run_path: str | None = None
    """Airflow's page of the run, relative to Airflow's base URL (``dags/<dag>/runs/<run>``)."""
    log_path: str | None = None
    """Airflow's page of the task try and its log, relative to Airflow's base URL."""


class ListedTask(TaskRow):
    """A task in the task list or an entity's page."""

    will_retry: bool = False
    """Failed, and a later export run will put it back to "new" (the route's ``retry_failed_tasks``)."""
    created_by: ActorView | None = None


class TaskList(BaseModel):
    """One page of the task list, newest first; ``next_before`` is the keyset of the next (older) page."""

    rows: list[ListedTask]
    next_before: int | None
    size: int


class TaskCount(BaseModel):
    count: int
    """Tasks matching the filter, exact up to ``cap``; ``cap + 1`` means more than ``cap``."""
    cap: int
    more_than_cap: bool


class TaskEventView(BaseModel):
    """One entry of a task's history; ``id`` is None for its creation (the task's own ``created_by``)."""

    id: int | None
    at: dt.datetime
    kind: str
    """``created``, ``exported``, ``export_failed``, ``repaired``, ``requeued``, ``retried`` or ``skipped``."""
    label: str
    actor: ActorView | None
    """The run, webhook or user that did it."""
    detail: dict[str, Any]
    """``exported``/``export_failed``: status_code, duration_ms, idempotency_key, attempt (and error, retryable);
    ``repaired``: to, claimed_by, stuck_after_minutes; ``requeued``: attempts; ``skipped``: reason."""
    claimed_by: ActorView | None = None
    """A repair's ``claimed_by``: the run whose claim was stuck."""


class TaskWithHistory(TaskDetail):
    created_by_actor: ActorView | None = None
    claimed_by_actor: ActorView | None = None
    """The export run holding (or that last held) the task's claim."""
    history: list[TaskEventView]
    """Oldest first: created by, then each export attempt, repair, requeue, retry and skip."""


class EntityPage(BaseModel):
    route: str
    entity_key: str
    content_hash: str | None
    seen_at: dt.datetime | None
    last_payload: Any
    tasks: list[ListedTask]
    """Newest first."""
    more: bool
    """Whether older tasks exist than those listed."""


class ActionOutcome(BaseModel):
    action: str
    matched: int
    changed: int
    not_eligible: int
    """Matched, but in a status the action does not take (a task being exported is never retried under its exporter)."""
    task_ids: list[int]
    """The changed tasks (at most the first 1,000)."""
    audit_log_id: int | None
    """The row in Airflow's audit log; None only when Airflow's database refused it (logged as an error)."""


class CountChanged(BaseModel):
    """409: the filter no longer matches the count the caller confirmed; nothing was changed."""

    detail: str
    count: int


class CsrfToken(BaseModel):
    token: str
    header: str
    field: str


# -- processes ----------------------------------------------------------------------------------------


class ProcessHolder(BaseModel):
    """The run in a configuration's running or waiting slot."""

    id: int
    configuration: str
    slot: str
    dag_id: str
    run_id: str
    acquired_at: dt.datetime
    lease_expires_at: dt.datetime
    lease_expired: bool


class ProcessRow(BaseModel):
    configuration: str
    running: ProcessHolder | None
    waiting: ProcessHolder | None
    skipped: int


class Processes(BaseModel):
    processes: list[ProcessRow]


class SkippedRun(BaseModel):
    id: int
    configuration: str
    dag_id: str
    run_id: str
    duplicate_of_dag_id: str
    duplicate_of_run_id: str
    reason: str
    skipped_at: dt.datetime


class JobRunView(BaseModel):
    """One run of a job on a configuration, from our history; ``state`` is Airflow's when ours was left running."""

    id: int
    configuration: str
    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    started_at: dt.datetime
    ended_at: dt.datetime | None
    state: str
    recorded_state: str
    """What our history holds; differs from ``state`` when the run ended without writing its end."""
    duration_seconds: float | None
    figures: dict[str, Any]
    error: str | None
    run_path: str
    log_path: str


class ProcessHistory(BaseModel):
    configurations: dict[str, list[JobRunView]]


# -- webhooks -----------------------------------------------------------------------------------------


class RealtimeExport(BaseModel):
    """What was handed to Airflow for one real-time route (see ``handoff``)."""

    route: str
    dag_id: str
    asset: str
    asset_event_id: int | None = None
    problem: str | None = Field(default=None, exclude_if=lambda problem: problem is None)
    """Why no export run was queued; absent when one was."""


class WebhookReceipt(BaseModel):
    incoming_configuration: str
    routes: list[str]
    task_ids: list[int]
    tasks_created: int
    entities: int
    unchanged: int
    realtime_routes: list[str] = Field(default_factory=list)
    realtime_exports: list[RealtimeExport] = Field(default_factory=list)
