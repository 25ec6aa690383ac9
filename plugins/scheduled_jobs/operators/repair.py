"""Repair stuck tasks: "processing" for too long goes back to "new", or to "failed" after N attempts."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from scheduled_jobs import settings
from scheduled_jobs.operators.base import ScheduledJobOperator, run_actor
from scheduled_jobs.store import TaskStoreHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class RepairStuckTasksOperator(ScheduledJobOperator):
    """Hands stuck tasks back to the queue, across all routes.

    ``stuck_after_minutes`` and ``max_attempts`` default to ``[scheduled_jobs]`` settings of the same
    names (30 minutes, 3 attempts).
    """

    def __init__(
        self, *, stuck_after_minutes: int | None = None, max_attempts: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.stuck_after_minutes = stuck_after_minutes
        self.max_attempts = max_attempts

    def run(self, context: Context) -> dict[str, Any]:
        minutes = self.stuck_after_minutes or settings.stuck_after_minutes()
        attempts = self.max_attempts or settings.max_attempts()
        result = TaskStoreHook().get_store().repair(dt.timedelta(minutes=minutes), attempts, actor=run_actor(context))
        self.log.info(
            "Repaired stuck tasks (processing for more than %d minutes): "
            "%d back to new %s, %d failed after %d attempts %s",
            minutes,
            len(result.reset),
            result.reset,
            len(result.failed),
            attempts,
            result.failed,
        )
        return {
            "reset": result.reset,
            "failed": result.failed,
            "stuck_after_minutes": minutes,
            "max_attempts": attempts,
        }
