"""The task store: the queue of tasks per route, in SQLite or PostgreSQL, behind SQLAlchemy."""

from __future__ import annotations

from scheduled_jobs.models.tasks import ClaimedTask, TaskStatus
from scheduled_jobs.store.tasks import IngestResult, RepairResult, TaskStore

__all__ = ["ClaimedTask", "IngestResult", "RepairResult", "TaskStatus", "TaskStore"]
