"""``job: repair_stuck_tasks``: hand tasks "processing" for too long back to "new", or "failed" after N attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scheduled_jobs.models.jobs.base import JobKind, TaskSpec


class RepairJob(JobKind):
    """Unguarded: it executes no configuration, so the duplicate rule has nothing to hold."""

    label = "Repair stuck tasks"

    job: Literal["repair_stuck_tasks"]
    stuck_after_minutes: int | None = Field(default=None, gt=0)
    """Absent: ``[scheduled_jobs] stuck_after_minutes``."""
    max_attempts: int | None = Field(default=None, gt=0)
    """Absent: ``[scheduled_jobs] max_attempts``."""

    def work(self) -> TaskSpec:
        return TaskSpec(
            "repair_stuck_tasks",
            "scheduled_jobs.operators.RepairStuckTasksOperator",
            {"stuck_after_minutes": self.stuck_after_minutes, "max_attempts": self.max_attempts},
        )
