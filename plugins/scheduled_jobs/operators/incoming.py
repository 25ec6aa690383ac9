"""Run an incoming configuration: read records from its subscriber into "new" tasks on its routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from scheduled_jobs.configurations import KIND_LABELS
from scheduled_jobs.connectors import subscriber_for
from scheduled_jobs.connectors.base import RejectedSource
from scheduled_jobs.connectors.http import dig
from scheduled_jobs.exceptions import IncomingRunError
from scheduled_jobs.operators.base import ScheduledJobOperator, require
from scheduled_jobs.store import IngestResult, TaskStore
from scheduled_jobs.store.tasks import StoreState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from scheduled_jobs.configurations import Mapping


def entity_key_of(record: dict[str, Any], path: str) -> str:
    """The entity key at a dotted path; a ValueError saying what is wrong when it is not usable."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"a record has no entity key {path!r}")
        value = value[part]
    if value is None or value == "" or isinstance(value, (dict, list)):
        raise ValueError(f"a record's entity key {path!r} is {value!r}; it must be a non-empty string or number")
    return str(value)


def _kept(record: dict[str, Any], mapping: Mapping | None) -> bool:
    if mapping is None:
        return True
    for field, allowed in mapping.filter.items():
        try:
            value = dig(record, field)
        except KeyError:
            return False
        if value not in allowed:
            return False
    return True


def _payload(record: dict[str, Any], mapping: Mapping | None) -> dict[str, Any]:
    if mapping is None or not mapping.fields:
        return record
    payload = {}
    for key, field in mapping.fields.items():
        try:
            payload[key] = dig(record, field)
        except KeyError:
            payload[key] = None
    return payload


def keyed_records(
    records: Sequence[dict[str, Any]], entity_key: str, mapping: Mapping | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(entity key, payload) of each record the mapping's filter keeps; ValueError for a bad record."""
    keyed = []
    for index, record in enumerate(records):
        if not _kept(record, mapping):
            continue
        try:
            keyed.append((entity_key_of(record, entity_key), _payload(record, mapping)))
        except ValueError as exc:
            raise ValueError(f"record {index}: {exc}") from None
    return keyed


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
        store = TaskStore.from_airflow()
        subscriber = subscriber_for(incoming.model.subscriber, StoreState(store, incoming.identifier))
        totals = IngestResult()
        sources = entities = 0
        rejected: list[dict[str, str]] = []
        for item in subscriber.batches():
            if isinstance(item, RejectedSource):
                self.log.error("Rejected %s: %s", item.source, item.reason)
                item.set_aside()
                rejected.append({"source": item.source, "reason": item.reason})
                continue
            try:
                keyed = keyed_records(item.records, incoming.model.entity_key, incoming.model.mapping)
            except ValueError as exc:
                self.log.error("Rejected %s: %s", item.source, exc)
                item.reject(str(exc))
                rejected.append({"source": item.source, "reason": str(exc)})
                continue
            result = store.add_entities(routes, keyed)
            item.acknowledge()  # only once its tasks are committed: a crash before this re-reads it
            totals += result
            sources += 1
            entities += len(keyed)
            self.log.info(
                "%s: %d entities, %d new tasks, %d unchanged", item.source, len(keyed), result.created, result.unchanged
            )
        summary = {
            "incoming_configuration": incoming.identifier,
            "routes": routes,
            "sources": sources,
            "entities": entities,
            "tasks_created": totals.created,
            "unchanged": totals.unchanged,
            "rejected": rejected,
        }
        self.log.info(
            "Incoming configuration %r: %d sources, %d entities, %d new tasks on %s, %d unchanged, %d rejected",
            incoming.identifier,
            sources,
            entities,
            totals.created,
            ", ".join(routes),
            totals.unchanged,
            len(rejected),
        )
        if rejected:
            listed = "; ".join(f"{r['source']}: {r['reason']}" for r in rejected)
            raise IncomingRunError(
                f"{len(rejected)} source(s) rejected and set aside (the other {sources} were stored): {listed}"
            )
        return summary
