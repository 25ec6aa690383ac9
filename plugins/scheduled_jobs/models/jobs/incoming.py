"""``job: incoming``: run an incoming configuration, reading its subscriber's records into tasks on its routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from scheduled_jobs.models.configurations import KIND_LABELS
from scheduled_jobs.models.jobs.base import Guard, JobKind, Overlap, Reason, TaskSpec, reference_problems

if TYPE_CHECKING:
    from scheduled_jobs.models.configurations import Configurations


class IncomingJob(JobKind):
    label = "Incoming configuration"

    job: Literal["incoming"]
    incoming_configuration: str = Field(min_length=1)
    overlap: Overlap = "buffer_one"

    @property
    def target(self) -> str:
        return self.incoming_configuration

    def guard(self) -> Guard:
        return Guard(f"incoming:{self.incoming_configuration}", self.overlap)

    def work(self) -> TaskSpec:
        return TaskSpec(
            "run_incoming_configuration",
            "scheduled_jobs.operators.RunIncomingConfigurationOperator",
            {"incoming_configuration": self.incoming_configuration},
        )

    def realtime_routes(self, configurations: Configurations) -> tuple[str, ...]:
        routes = configurations.routes_of_incoming(self.incoming_configuration)
        return tuple(sorted(r.identifier for r in routes if r.model.realtime))

    @classmethod
    def reference_problems(cls, data: dict[str, Any], configurations: Configurations) -> list[Reason]:
        key = "incoming_configuration"
        found = reference_problems(data, key, configurations.incoming, KIND_LABELS["incoming"])
        target = data.get(key)
        loaded = configurations.incoming.valid.get(target) if isinstance(target, str) else None
        if loaded is not None and loaded.model.subscriber is None:
            reason = (
                f"incoming configuration {target!r} ({loaded.path}) has no subscriber: its records only arrive by "
                "webhook, so a scheduled job has nothing to read; add a subscriber to it or remove this job"
            )
            found.append((key, reason))
        return found
