"""The task store: the queue of tasks per route and the process ledger, in SQLite or PostgreSQL.

Reached through ``TaskStoreHook`` (one engine per process per connection). These are the store's
public names: operators, triggers and the web layer import from here, never from its modules.
"""

from __future__ import annotations

from scheduled_jobs.models.tasks import Actor, ClaimedTask, TaskStatus
from scheduled_jobs.store.console import (
    STATUS_FILTERS,
    ActionResult,
    EntityView,
    PruneResult,
    Selection,
    TaskEvent,
    TaskFilter,
    TaskIds,
    TaskListPage,
    count_tasks,
    delete_tasks,
    entity_view,
    list_tasks,
    prune_tasks,
    retry_tasks,
    skip_tasks,
    task_history,
)
from scheduled_jobs.store.hook import TaskStoreHook
from scheduled_jobs.store.processes import Holder, ProcessLedger, Slot, keep_renewed
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
from scheduled_jobs.store.tasks import IngestResult, Push, RepairResult, StoreState, TaskStore, utcnow

__all__ = [
    "STATUS_FILTERS",
    "ActionResult",
    "Actor",
    "ClaimedTask",
    "EntityView",
    "Holder",
    "IngestResult",
    "Page",
    "ProcessFigures",
    "ProcessLedger",
    "PruneResult",
    "Push",
    "RepairResult",
    "RouteFigures",
    "Selection",
    "Slot",
    "StoreState",
    "TaskEvent",
    "TaskFilter",
    "TaskIds",
    "TaskListPage",
    "TaskStatus",
    "TaskStore",
    "TaskStoreHook",
    "count_tasks",
    "delete_tasks",
    "entity_view",
    "keep_renewed",
    "latest_errors",
    "list_tasks",
    "process_figures",
    "prune_tasks",
    "retry_tasks",
    "route_figures",
    "skip_tasks",
    "skipped_by_dag",
    "skipped_page",
    "stuck_tasks",
    "task_detail",
    "task_history",
    "utcnow",
]

# The history of guarded job runs (the Processes page's last runs per configuration).
from scheduled_jobs.store.runs import job_run_ended, job_run_started, prune_job_runs, recent_job_runs

__all__ += ["job_run_ended", "job_run_started", "prune_job_runs", "recent_job_runs"]

# The schema as an operator's step (``scheduled-jobs db upgrade|check``).
from scheduled_jobs.store.engine import (  # noqa: E402
    HEAD_REVISION,
    KNOWN_REVISIONS,
    create_store_engine,
    current_revision,
    schema_problem,
    upgrade,
    where,
)

__all__ += [
    "HEAD_REVISION",
    "KNOWN_REVISIONS",
    "create_store_engine",
    "current_revision",
    "schema_problem",
    "upgrade",
    "where",
]
