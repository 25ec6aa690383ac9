"""Export a route: deliver at most N "new" tasks, oldest first, to its outgoing configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduled_jobs.exporting import export_configured_route
from scheduled_jobs.operators.base import ScheduledJobOperator, run_actor
from scheduled_jobs.store import TaskStoreHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class ExportRouteOperator(ScheduledJobOperator):
    """Exports a route (see ``scheduled_jobs.exporting``): finished or failed, never lost.

    ``tasks_to_export`` is the seed's "Number of tasks to export": the most tasks one run takes.
    Tasks added while the run goes on wait for the next run.
    """

    template_fields = ("route",)

    def __init__(self, *, route: str, tasks_to_export: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route = route
        self.tasks_to_export = tasks_to_export

    def run(self, context: Context) -> dict[str, Any]:
        result = export_configured_route(
            self.load_configurations(),
            self.route,
            TaskStoreHook().get_store(),
            limit=self.tasks_to_export,
            actor=run_actor(context),
        )
        self.log.info(
            "Route %r: exported %d, failed %d, left %d new tasks%s%s",
            result.route,
            result.exported,
            result.failed,
            result.left,
            f", {result.requeued} failed tasks retried" if result.requeued else "",
            f", {result.lost_claims} settled after losing their claim" if result.lost_claims else "",
        )
        return result.as_dict()
