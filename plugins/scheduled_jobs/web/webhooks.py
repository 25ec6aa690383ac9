"""Webhooks: entities pushed to an incoming configuration become "new" tasks on its routes at once.

The whole body is checked before anything is stored (all or nothing), with the same entity-key rule
and mapping as a subscriber; real-time routes are exported right after. Webhooks are never subject to
duplicate prevention: they do not run through the guard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scheduled_jobs import jsondata
from scheduled_jobs.ingesting import keyed_records

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scheduled_jobs.configurations import Configurations, IncomingConfiguration, Loaded
    from scheduled_jobs.store import TaskStore

log = logging.getLogger(__name__)


class WebhookRefused(Exception):
    """A request the webhook does not take: its HTTP status and a message saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class WebhookReceipt:
    incoming_configuration: str
    routes: list[str]
    task_ids: list[int]
    entities: int
    unchanged: int
    realtime_routes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "incoming_configuration": self.incoming_configuration,
            "routes": self.routes,
            "task_ids": self.task_ids,
            "tasks_created": len(self.task_ids),
            "entities": self.entities,
            "unchanged": self.unchanged,
            "realtime_routes": self.realtime_routes,
        }


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (declared or streamed)."""
    too_large = WebhookRefused(
        413,
        f"body too large: the limit is {limit} bytes "
        "([scheduled_jobs] webhook_max_bytes); split the entities over several requests",
    )
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise too_large
    return bytes(received)


def parse_entities(body: bytes) -> list[dict[str, Any]]:
    """One JSON object or a list of objects; 400 with the reason otherwise."""
    if not body.strip():
        raise WebhookRefused(400, "body is empty: send one JSON object or a list of JSON objects; nothing was stored")
    try:
        data = jsondata.loads(body)
    except ValueError as exc:
        raise WebhookRefused(400, f"body refused: {exc}; nothing was stored") from exc
    entities = data if isinstance(data, list) else [data]
    for index, entity in enumerate(entities):
        if not isinstance(entity, dict):
            where = f"item {index} of the list" if isinstance(data, list) else "the body"
            raise WebhookRefused(
                400, f"{where} is a JSON {type(entity).__name__}; each entity must be a JSON object; nothing was stored"
            )
    return entities


def find_incoming(configurations: Configurations, identifier: str) -> Loaded[IncomingConfiguration]:
    from scheduled_jobs.configurations import KIND_LABELS

    found = configurations.incoming.valid.get(identifier)
    if found is None:
        raise WebhookRefused(404, configurations.incoming.describe_missing(identifier, KIND_LABELS["incoming"]))
    return found


def receive(
    configurations: Configurations, incoming: Loaded[IncomingConfiguration], body: bytes, store: TaskStore
) -> WebhookReceipt:
    """Store the body's entities as "new" tasks on every route of the incoming configuration."""
    entities = parse_entities(body)
    found = configurations.routes_of_incoming(incoming.identifier)
    routes = [route.identifier for route in found]
    if not routes:
        raise WebhookRefused(
            409,
            f"no route uses incoming configuration {incoming.identifier!r}, so its entities would have nowhere "
            f"to go; nothing was stored. Add a route in {configurations.folder / 'routes'}",
        )
    try:
        keyed = keyed_records(entities, incoming.model.entity_key, incoming.model.mapping)
    except ValueError as exc:
        raise WebhookRefused(400, f"{exc}; nothing was stored") from exc
    try:
        result = store.add_entities(routes, keyed, return_ids=True)
    except ValueError as exc:  # content the store cannot hold (NaN, 1e400, a lone surrogate): names the entity
        raise WebhookRefused(400, f"{exc}; nothing was stored") from exc
    realtime = sorted(route.identifier for route in found if route.model.realtime)
    return WebhookReceipt(incoming.identifier, routes, result.task_ids, len(keyed), result.unchanged, realtime)


def export_realtime(configurations: Configurations, routes: list[str], store: TaskStore) -> None:
    """Export the real-time routes after a webhook; what fails here waits for the route's next export."""
    from scheduled_jobs.exporting import export_configured_route

    for route in routes:
        try:
            result = export_configured_route(configurations, route, store)
        except Exception:  # the tasks are stored; a scheduled export or the repair job takes them on
            log.exception("Real-time export of route %r after a webhook failed; its tasks stay queued", route)
            continue
        log.info("Real-time route %r after a webhook: exported %d, failed %d", route, result.exported, result.failed)
