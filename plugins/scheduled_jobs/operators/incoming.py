"""Run an incoming configuration: read records from its subscriber into "new" tasks on its routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduled_jobs.compat import AirflowSkipException
from scheduled_jobs.connectors import subscriber_for
from scheduled_jobs.exceptions import IncomingRunError
from scheduled_jobs.ingesting import ingest
from scheduled_jobs.models.configurations import KIND_LABELS
from scheduled_jobs.operators.base import ScheduledJobOperator, require, run_actor
from scheduled_jobs.store import StoreState, TaskStoreHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunIncomingConfigurationOperator(ScheduledJobOperator):
    """Runs one incoming configuration: every entity becomes a "new" task on each of its routes.

    A source that cannot be read is set aside and reported; the others are still stored, and the run
    then fails so the rejected source is visible in the UI.
    """

    template_fields = ("incoming_configuration",)

    def __init__(self, *, incoming_configuration: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.incoming_configuration = incoming_configuration

    def run(self, context: Context) -> dict[str, Any]:
        configurations = self.load_configurations()
        incoming = require(
            configurations.incoming.valid.get(self.incoming_configuration),
            configurations.incoming.describe_missing(self.incoming_configuration, KIND_LABELS["incoming"]),
        )
        routes = [route.identifier for route in configurations.routes_of_incoming(incoming.identifier)]
        if not routes:
            raise AirflowSkipException(
                f"No route uses incoming configuration {incoming.identifier!r}, so its records would have "
                f"nowhere to go; nothing was read. Add a route in {configurations.folder / 'routes'}."
            )
        subscriber = require(
            incoming.model.subscriber,
            f"incoming configuration {incoming.identifier!r} ({incoming.path}) has no subscriber: "
            "its records only arrive by webhook",
        )
        store = TaskStoreHook().get_store()
        reader = subscriber_for(subscriber, StoreState(store, incoming.identifier))
        summary = ingest(
            store,
            reader,
            routes,
            incoming.model.entity_key,
            incoming.model.mapping,
            incoming=incoming.identifier,
            created_by=run_actor(context),
        )
        self.log.info(
            "Incoming configuration %r: %d sources, %d entities, %d new tasks on %s, %d unchanged, %d rejected",
            incoming.identifier,
            summary.sources,
            summary.entities,
            summary.tasks_created,
            ", ".join(routes),
            summary.unchanged,
            len(summary.rejected),
        )
        if summary.rejected:
            listed = "; ".join(f"{r['source']}: {r['reason']}" for r in summary.rejected[:20])
            if len(summary.rejected) > 20:  # each was logged when it was rejected
                listed += f"; and {len(summary.rejected) - 20} more (see the log above)"
            listed = reader.redact(listed)  # again, whatever the subscriber did: this goes to the log and the UI
            raise IncomingRunError(
                f"{len(summary.rejected)} rejected (a file is set aside in rejected/, a page or row is read again "
                f"once fixed); {summary.entities} entities from {summary.sources} other sources were stored: {listed}"
            )
        return summary.as_dict()
