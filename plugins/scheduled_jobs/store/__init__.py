"""The task store: the queue of tasks per route, in SQLite or PostgreSQL, behind SQLAlchemy."""

from __future__ import annotations

from scheduled_jobs.store.tasks import ClaimedTask, IngestResult, RepairResult, TaskStatus, TaskStore

__all__ = ["ClaimedTask", "IngestResult", "RepairResult", "TaskStatus", "TaskStore"]
