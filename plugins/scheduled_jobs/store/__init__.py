"""The task store: the queue of tasks per route, in SQLite or PostgreSQL, behind SQLAlchemy."""

from __future__ import annotations

from scheduled_jobs.models.tasks import ClaimedTask, TaskStatus
from scheduled_jobs.store.reports import (
    Page,
    ProcessFigures,
    RouteFigures,
    latest_errors,
    process_figures,
    route_figures,
    skipped_by_dag,
    skipped_page,
    stuck_tasks,
    task_detail,
)
from scheduled_jobs.store.tasks import IngestResult, RepairResult, TaskStore, utcnow

__all__ = [
    "ClaimedTask",
    "IngestResult",
    "Page",
    "ProcessFigures",
    "RepairResult",
    "RouteFigures",
    "TaskStatus",
    "TaskStore",
    "latest_errors",
    "process_figures",
    "route_figures",
    "skipped_by_dag",
    "skipped_page",
    "stuck_tasks",
    "task_detail",
    "utcnow",
]
