"""The task store: the queue of tasks per route and the process ledger, in SQLite or PostgreSQL.

Reached through ``TaskStoreHook`` (one engine per process per connection). These are the store's
public names: operators, triggers and the web layer import from here, never from its modules.
"""

from __future__ import annotations

from scheduled_jobs.models.tasks import ClaimedTask, TaskStatus
from scheduled_jobs.store.hook import TaskStoreHook
from scheduled_jobs.store.processes import Holder, ProcessLedger, keep_renewed
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
from scheduled_jobs.store.tasks import IngestResult, RepairResult, StoreState, TaskStore, utcnow

__all__ = [
    "ClaimedTask",
    "Holder",
    "IngestResult",
    "Page",
    "ProcessFigures",
    "ProcessLedger",
    "RepairResult",
    "RouteFigures",
    "StoreState",
    "TaskStatus",
    "TaskStore",
    "TaskStoreHook",
    "keep_renewed",
    "latest_errors",
    "process_figures",
    "route_figures",
    "skipped_by_dag",
    "skipped_page",
    "stuck_tasks",
    "task_detail",
    "utcnow",
]

# The history of guarded job runs (the Processes page's last runs per configuration).
from scheduled_jobs.store.runs import job_run_ended, job_run_started, prune_job_runs, recent_job_runs

__all__ += ["job_run_ended", "job_run_started", "prune_job_runs", "recent_job_runs"]
