"""Export a route: deliver at most N "new" tasks, oldest first, to its outgoing configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduled_jobs.configurations import KIND_LABELS
from scheduled_jobs.connectors import publisher_for
from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.operators.base import ScheduledJobOperator, require
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from airflow.sdk import Context

CLAIM_BATCH = 100


class ExportRouteOperator(ScheduledJobOperator):
    """Claims "new" tasks of a route in batches and publishes each; finished or failed, never lost.

    ``tasks_to_export`` is the seed's "Number of tasks to export": the most tasks one run takes.
    Tasks added while the run goes on wait for the next run.
    """

    template_fields = ("route",)

    def __init__(self, *, route: str, tasks_to_export: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route = route
        self.tasks_to_export = tasks_to_export

    def run(self, context: Context) -> dict[str, Any]:
        configurations = self.load_configurations()
        route = require(
            configurations.routes.valid.get(self.route),
            configurations.routes.describe_missing(self.route, KIND_LABELS["routes"]),
        )
        outgoing = configurations.outgoing.valid[route.model.outgoing_configuration]
        store = TaskStore.from_airflow()
        publisher = publisher_for(outgoing.model.publisher)
        up_to = store.newest_new_id(route.identifier)
        budget = self.tasks_to_export
        exported = failed = lost_claims = 0
        try:
            while up_to is not None and (budget is None or budget > 0):
                size = CLAIM_BATCH if budget is None else min(CLAIM_BATCH, budget)
                batch = store.claim(route.identifier, size, up_to_id=up_to)
                if not batch:
                    break
                if budget is not None:
                    budget -= len(batch)
                for task in batch:
                    try:
                        publisher.publish(task)
                    except DeliveryError as exc:
                        error = str(exc)
                    except Exception as exc:  # a connector bug must fail the task, not lose it
                        error = f"unexpected {type(exc).__name__}: {exc}"
                    else:
                        if store.finish(task):
                            exported += 1
                        else:
                            lost_claims += 1
                            self.log.warning(
                                "Task %d was delivered after its claim was lost (repaired as stuck)", task.id
                            )
                        continue
                    self.log.error("Task %d (entity %s) failed: %s", task.id, task.entity_key, error)
                    if store.fail(task, error):
                        failed += 1
        finally:
            publisher.close()
        left = store.counts(route.identifier)["new"]
        self.log.info(
            "Route %r: exported %d, failed %d, left %d new tasks%s",
            route.identifier,
            exported,
            failed,
            left,
            f", {lost_claims} delivered after losing their claim" if lost_claims else "",
        )
        return {
            "route": route.identifier,
            "exported": exported,
            "failed": failed,
            "left": left,
            "lost_claims": lost_claims,
        }
