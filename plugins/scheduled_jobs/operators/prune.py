"""Prune old tasks: delete finished and skipped tasks, and their events, older than the retention."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from scheduled_jobs.operators.base import ScheduledJobOperator
from scheduled_jobs.store import TaskStoreHook, prune_job_runs, prune_tasks, utcnow

if TYPE_CHECKING:
    from airflow.sdk import Context


class PruneTasksOperator(ScheduledJobOperator):
    """Deletes finished and skipped tasks last updated more than ``retention_days`` ago, in batches of
    ``batch_size`` short transactions that never block a claim, keeping each entity's newest task.

    The job run history older than the retention goes too, except each configuration's last 10 runs.
    """

    def __init__(self, *, retention_days: int, batch_size: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention_days = retention_days
        self.batch_size = batch_size

    def run(self, context: Context) -> dict[str, Any]:
        older_than = utcnow() - dt.timedelta(days=self.retention_days)
        engine = TaskStoreHook().get_engine()
        result = prune_tasks(engine, older_than, batch_size=self.batch_size)
        runs = prune_job_runs(engine, older_than, batch_size=self.batch_size)
        self.log.info(
            "Pruned tasks finished or skipped before %s UTC (%d days ago): %d tasks and %d events deleted "
            "in %d batches of at most %d; %d job runs deleted from the history",
            older_than.isoformat(timespec="seconds"),
            self.retention_days,
            result.tasks_deleted,
            result.events_deleted,
            result.batches,
            self.batch_size,
            runs,
        )
        return {
            "tasks_deleted": result.tasks_deleted,
            "events_deleted": result.events_deleted,
            "batches": result.batches,
            "job_runs_deleted": runs,
            "retention_days": self.retention_days,
            "older_than": older_than.isoformat(timespec="seconds"),
        }
