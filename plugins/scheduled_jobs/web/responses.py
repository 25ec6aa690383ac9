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
    "CronCheck",
    "ErrorBody",
    "JobRow",
    "JobsPage",
    "LastRun",
    "Paged",
    "ProcessHolder",
    "ProcessRow",
    "Processes",
    "RealtimeExport",
    "RouteRow",
    "Routes",
    "SkippedRun",
    "TaskDetail",
    "TaskRow",
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
