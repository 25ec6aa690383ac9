"""Read-only views of the task store for the web pages: per-route figures, stuck tasks, errors, processes.

Every query returns a bounded number of rows (grouped per route and status, or one page with
LIMIT/OFFSET), so a page never loads every task. The counts and orderings behind them still read every
matching row, so a page's cost grows with the number of tasks; how fast has not been measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from scheduled_jobs.models.tasks import TaskStatus
from scheduled_jobs.store.schema import processes, skipped_runs, tasks
from scheduled_jobs.store.tasks import utcnow

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Engine
    from sqlalchemy.sql import Select


@dataclass
class RouteFigures:
    """A route's queue at a glance."""

    route: str
    counts: dict[str, int] = field(default_factory=lambda: {status.value: 0 for status in TaskStatus})
    oldest_new_at: dt.datetime | None = None
    stuck: int = 0

    def oldest_new_age(self, now: dt.datetime) -> dt.timedelta | None:
        return None if self.oldest_new_at is None else now - self.oldest_new_at


@dataclass(frozen=True)
class Page:
    """One page of rows, and how many rows there are in all."""

    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


def route_figures(engine: Engine, stuck_before: dt.datetime) -> dict[str, RouteFigures]:
    """Counts by status, the oldest "new" task and the number stuck in processing, for every route with tasks."""
    figures: dict[str, RouteFigures] = {}
    counts = select(tasks.c.route, tasks.c.status, func.count()).group_by(tasks.c.route, tasks.c.status)
    oldest = (
        select(tasks.c.route, func.min(tasks.c.created_at))
        .where(tasks.c.status == TaskStatus.NEW.value)
        .group_by(tasks.c.route)
    )
    stuck = (
        select(tasks.c.route, func.count())
        .where(tasks.c.status == TaskStatus.PROCESSING.value, tasks.c.claimed_at < stuck_before)
        .group_by(tasks.c.route)
    )
    with engine.connect() as conn:
        for route, status, count in conn.execute(counts):
            figures.setdefault(route, RouteFigures(route)).counts[status] = int(count)
        for route, at in conn.execute(oldest):
            figures.setdefault(route, RouteFigures(route)).oldest_new_at = at
        for route, count in conn.execute(stuck):
            figures.setdefault(route, RouteFigures(route)).stuck = int(count)
    return figures


def _page(engine: Engine, query: Select[Any], number: int, size: int) -> Page:
    number = max(1, number)
    total_query = select(func.count()).select_from(query.order_by(None).subquery())
    with engine.connect() as conn:
        total = int(conn.execute(total_query).scalar_one())
        rows = [dict(row._mapping) for row in conn.execute(query.limit(size).offset((number - 1) * size))]
    return Page(rows, total, number, size)


ROW_COLUMNS = (
    tasks.c.id,
    tasks.c.route,
    tasks.c.entity_key,
    tasks.c.status,
    tasks.c.attempts,
    tasks.c.created_at,
    tasks.c.updated_at,
    tasks.c.claimed_at,
    tasks.c.last_error,
    tasks.c.retryable,
)


def stuck_tasks(engine: Engine, route: str, stuck_before: dt.datetime, number: int = 1, size: int = 25) -> Page:
    """Tasks claimed before ``stuck_before`` and still processing, longest stuck first."""
    query = (
        select(*ROW_COLUMNS)
        .where(
            tasks.c.route == route,
            tasks.c.status == TaskStatus.PROCESSING.value,
            tasks.c.claimed_at < stuck_before,
        )
        .order_by(tasks.c.claimed_at, tasks.c.id)
    )
    return _page(engine, query, number, size)


def latest_errors(engine: Engine, route: str, number: int = 1, size: int = 25) -> Page:
    """Failed tasks of a route, the most recent failure first."""
    query = (
        select(*ROW_COLUMNS)
        .where(tasks.c.route == route, tasks.c.status == TaskStatus.FAILED.value)
        .order_by(tasks.c.updated_at.desc(), tasks.c.id.desc())
    )
    return _page(engine, query, number, size)


def task_detail(engine: Engine, task_id: int) -> dict[str, Any] | None:
    """One task with its payload decoded (as stored: canonical JSON)."""
    with engine.connect() as conn:
        row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
    if row is None:
        return None
    detail = dict(row._mapping)
    detail["payload"] = json.loads(detail["payload"])
    detail.pop("claim_token", None)
    return detail


@dataclass
class ProcessFigures:
    """A configuration's processes: the run executing, the run waiting, and the runs skipped."""

    configuration: str
    running: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    skipped: int = 0


def process_figures(engine: Engine) -> dict[str, ProcessFigures]:
    figures: dict[str, ProcessFigures] = {}
    now = utcnow()
    skipped = select(skipped_runs.c.configuration, func.count()).group_by(skipped_runs.c.configuration)
    with engine.connect() as conn:
        for row in conn.execute(select(processes)):
            holder = dict(row._mapping)
            holder["lease_expired"] = row.lease_expires_at < now
            entry = figures.setdefault(row.configuration, ProcessFigures(row.configuration))
            setattr(entry, row.slot, holder)
        for configuration, count in conn.execute(skipped):
            figures.setdefault(configuration, ProcessFigures(configuration)).skipped = int(count)
    return figures


def skipped_page(engine: Engine, configuration: str | None = None, number: int = 1, size: int = 25) -> Page:
    """Runs skipped as duplicates, the latest first, with the run each duplicated and why."""
    query = select(skipped_runs).order_by(skipped_runs.c.skipped_at.desc(), skipped_runs.c.id.desc())
    if configuration is not None:
        query = query.where(skipped_runs.c.configuration == configuration)
    return _page(engine, query, number, size)


def skipped_by_dag(engine: Engine) -> dict[str, int]:
    query = select(skipped_runs.c.dag_id, func.count()).group_by(skipped_runs.c.dag_id)
    with engine.connect() as conn:
        return {dag_id: int(count) for dag_id, count in conn.execute(query)}
