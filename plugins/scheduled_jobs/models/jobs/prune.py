"""``job: prune_tasks``: keep the task store small by deleting old finished and skipped tasks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scheduled_jobs.models.jobs.base import JobKind, TaskSpec

MAX_RETENTION_DAYS = 36_500
MAX_BATCH_SIZE = 10_000


class PruneJob(JobKind):
    """Deletes finished and skipped tasks (and their events) last updated more than ``retention_days`` ago.

    Each entity's newest task is kept, whatever its age: it holds the content the entity page shows.
    Entities (the memory of the entity-key rule) are never deleted. Unguarded, like repair: it executes no
    configuration, and it only deletes rows no claim can take (claims take "new" tasks only), so two
    prunes at once, or a prune beside an export, do each other no harm.
    """

    label = "Prune old tasks"

    job: Literal["prune_tasks"]
    retention_days: int = Field(gt=0, le=MAX_RETENTION_DAYS)
    """Required: how long finished and skipped tasks are kept is a decision, not a default."""
    batch_size: int = Field(default=1000, gt=0, le=MAX_BATCH_SIZE)
    """Tasks deleted per transaction: small batches keep each transaction short."""

    def work(self) -> TaskSpec:
        return TaskSpec(
            "prune_tasks",
            "scheduled_jobs.operators.PruneTasksOperator",
            {"retention_days": self.retention_days, "batch_size": self.batch_size},
        )

    def doc_lines(self) -> list[str]:
        return [
            f"- **Retention:** finished and skipped tasks older than {self.retention_days} days are deleted "
            f"({self.batch_size} per transaction); each entity's newest task is kept"
        ]
