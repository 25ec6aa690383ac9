"""Read-only views of the task store for the web pages: per-route figures, stuck tasks, errors, processes.

Every query returns a bounded number of rows (grouped per route and status, or one page with
LIMIT/OFFSET), so a page never loads every task. The per-route figures read only the tasks that are not
finished (a partial index of its own); the finished ones, nearly all of a store at production size,
are counted by ``FinishedCounts`` (``bench/store_scale.py`` measures both at 1,000,000 tasks).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from scheduled_jobs.models.tasks import TaskStatus
from scheduled_jobs.store.schema import processes, skipped_runs, tasks
from scheduled_jobs.store.tasks import utcnow

log = logging.getLogger(__name__)

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
    finished_counted_at: dt.datetime | None = None
    """When ``counts["finished"]`` was counted (naive UTC): at most ``FinishedCounts.REFRESH_SECONDS`` ago
    in a large store, now in a small one. The other counts are always counted now."""

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


class FinishedCounts:
    """The finished tasks per route, kept per engine: exact when counting them is cheap, else at most
    ``REFRESH_SECONDS`` old, recounted in the background.

    Finished tasks are nearly all of a store at production size (964,160 of 1,000,000 in
    ``bench/store_scale.py``) and their count is the one figure that needs every one of them read:
    ~200 ms, where everything else on the Tasks overview takes a few. A count that took less than
    ``CHEAP_SECONDS`` is simply taken again on the next call (small stores, tests: always exact). A
    dearer one is served from the last count; once that is ``REFRESH_SECONDS`` old, one background
    thread counts again while pages keep getting the last count. A stale count lags the exports (which
    add finished tasks) and prune or a user's delete (which remove them) by at most that long; what needs
    attention (new, processing, failed, skipped) is counted on every call.
    """

    CHEAP_SECONDS = 0.02
    REFRESH_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: weakref.WeakKeyDictionary[Engine, tuple[dict[str, int], dt.datetime, float, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._counting: weakref.WeakSet[Engine] = weakref.WeakSet()

    def get(self, engine: Engine) -> tuple[dict[str, int], dt.datetime]:
        """The finished tasks per route, and when they were counted."""
        with self._lock:
            known = self._known.get(engine)
            if known is not None and known[2] >= self.CHEAP_SECONDS:
                counts, counted_at, _, counted = known
                if time.monotonic() - counted >= self.REFRESH_SECONDS and engine not in self._counting:
                    self._counting.add(engine)
                    threading.Thread(
                        target=self._recount, args=(engine,), name="scheduled-jobs-finished-counts", daemon=True
                    ).start()
                return counts, counted_at
        return self.count(engine)

    def count(self, engine: Engine) -> tuple[dict[str, int], dt.datetime]:
        """Count now (and keep the count)."""
        started, counted_at = time.monotonic(), utcnow()
        query = (
            select(tasks.c.route, func.count())
            .where(tasks.c.status == TaskStatus.FINISHED.value)
            .group_by(tasks.c.route)
        )
        with engine.connect() as conn:
            counts = {route: int(count) for route, count in conn.execute(query)}
        with self._lock:
            self._known[engine] = (counts, counted_at, time.monotonic() - started, time.monotonic())
        return counts, counted_at

    def _recount(self, engine: Engine) -> None:
        try:
            self.count(engine)
        except Exception:  # the next page view tries again; until then pages show the last count
            log.exception("Counting the finished tasks failed")
        finally:
            with self._lock:
                self._counting.discard(engine)

    def forget(self) -> None:
        with self._lock:
            self._known.clear()


finished_counts = FinishedCounts()


def route_figures(engine: Engine, stuck_before: dt.datetime) -> dict[str, RouteFigures]:
    """Counts by status, the oldest "new" task and the number stuck in processing, for every route with tasks.

    The counts of tasks that are not finished, the oldest and the stuck are read now, through the
    partial index of unfinished tasks; the finished ones come from ``finished_counts``.
    """
    figures: dict[str, RouteFigures] = {}
    unfinished = tasks.c.status != TaskStatus.FINISHED.value  # the partial index's own condition
    counts = (
        select(tasks.c.route, tasks.c.status, func.count()).where(unfinished).group_by(tasks.c.route, tasks.c.status)
    )
    oldest = (
        select(tasks.c.route, func.min(tasks.c.created_at))
        .where(unfinished, tasks.c.status == TaskStatus.NEW.value)
        .group_by(tasks.c.route)
    )
    stuck = (
        select(tasks.c.route, func.count())
        .where(tasks.c.status == TaskStatus.PROCESSING.value, tasks.c.claimed_at < stuck_before)
        .group_by(tasks.c.route)
    )
    finished, counted_at = finished_counts.get(engine)
    with engine.connect() as conn:
        for route, status, count in conn.execute(counts):
            figures.setdefault(route, RouteFigures(route)).counts[status] = int(count)
        for route, at in conn.execute(oldest):
            figures.setdefault(route, RouteFigures(route)).oldest_new_at = at
        for route, count in conn.execute(stuck):
            figures.setdefault(route, RouteFigures(route)).stuck = int(count)
    for route, count in finished.items():
        if count:
            figures.setdefault(route, RouteFigures(route)).counts[TaskStatus.FINISHED.value] = count
    for figure in figures.values():
        figure.finished_counted_at = counted_at
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


def skipped_page(
    engine: Engine,
    configuration: str | None = None,
    number: int = 1,
    size: int = 25,
    *,
    dag_ids: frozenset[str] | None = None,
) -> Page:
    """Runs skipped as duplicates, the latest first, with the run each duplicated and why.

    ``dag_ids``: only the runs of these DAGs (the ones the caller may see); None: every DAG's.
    """
    query = select(skipped_runs).order_by(skipped_runs.c.skipped_at.desc(), skipped_runs.c.id.desc())
    if configuration is not None:
        query = query.where(skipped_runs.c.configuration == configuration)
    if dag_ids is not None:
        query = query.where(skipped_runs.c.dag_id.in_(sorted(dag_ids)))
    return _page(engine, query, number, size)


def skipped_by_dag(engine: Engine) -> dict[str, int]:
    query = select(skipped_runs.c.dag_id, func.count()).group_by(skipped_runs.c.dag_id)
    with engine.connect() as conn:
        return {dag_id: int(count) for dag_id, count in conn.execute(query)}
