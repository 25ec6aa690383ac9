"""``job: outgoing``: export a route, delivering at most ``tasks_to_export`` "new" tasks to its destination."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from scheduled_jobs.models.configurations import KIND_LABELS
from scheduled_jobs.models.jobs.base import Guard, JobKind, Overlap, Reason, TaskSpec, reference_problems

if TYPE_CHECKING:
    from scheduled_jobs.models.configurations import Configurations


class OutgoingJob(JobKind):
    label = "Outgoing (route export)"

    job: Literal["outgoing"]
    route: str = Field(min_length=1)
    tasks_to_export: int | None = Field(default=None, gt=0)
    """The seed's "Number of tasks to export": the most tasks one run takes (absent: all)."""
    overlap: Overlap = "buffer_one"

    @property
    def target(self) -> str:
        return self.route

    def guard(self) -> Guard:
        return Guard(f"route:{self.route}", self.overlap)

    def work(self) -> TaskSpec:
        return TaskSpec(
            "export_route",
            "scheduled_jobs.operators.ExportRouteOperator",
            {"route": self.route, "tasks_to_export": self.tasks_to_export},
        )

    def doc_lines(self) -> list[str]:
        return [f"- **Number of tasks to export:** {self.tasks_to_export}"] if self.tasks_to_export else []

    @classmethod
    def reference_problems(cls, data: dict[str, Any], configurations: Configurations) -> list[Reason]:
        return reference_problems(data, "route", configurations.routes, KIND_LABELS["routes"])
