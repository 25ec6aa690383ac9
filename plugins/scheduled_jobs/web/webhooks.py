"""Webhooks: entities pushed to an incoming configuration become "new" tasks on its routes at once.

The whole body is checked before anything is stored (all or nothing, one transaction), with the same
entity-key rule and mapping as a subscriber. The API server only answers: the export of the real-time
routes is handed to Airflow (``handoff``), never run here. Webhooks are never subject to duplicate
prevention: they do not run through the guard.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scheduled_jobs import jsondata
from scheduled_jobs.exceptions import WebhookRefusedError
from scheduled_jobs.ingesting import keyed_records
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.web.responses import WebhookReceipt
from scheduled_jobs.web.security import webhook_secret_matches

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scheduled_jobs.models.configurations import Configurations, IncomingConfiguration, Loaded
    from scheduled_jobs.store import TaskStore

log = logging.getLogger(__name__)
WRONG_SECRET = "Forbidden: wrong webhook secret"  # noqa: S105 (a message, not a secret)


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (declared or streamed)."""
    too_large = WebhookRefusedError(
        413,
        f"body too large: the limit is {limit} bytes "
        "([scheduled_jobs] webhook_max_bytes); split the entities over several requests",
    )
    if (
        declared_length is not None
        and declared_length.isascii()
        and declared_length.isdigit()
        and int(declared_length) > limit
    ):
        raise too_large
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise too_large
    return bytes(received)


def parse_entities(body: bytes, max_records: int) -> list[dict[str, Any]]:
    """One JSON object or a list of at most ``max_records`` objects; 400 or 413 with the reason otherwise.

    The cap is checked while the list is read: the records past it are never built.
    """
    if not body.strip():
        raise WebhookRefusedError(
            400, "body is empty: send one JSON object or a list of JSON objects; nothing was stored"
        )
    try:
        data = jsondata.loads(body, max_items=max_records)
    except jsondata.TooManyItemsError as exc:
        raise too_many_records(exc.limit) from None
    except ValueError as exc:
        raise WebhookRefusedError(400, f"body refused: {exc}; nothing was stored") from exc
    entities = data if isinstance(data, list) else [data]
    for index, entity in enumerate(entities):
        if not isinstance(entity, dict):
            where = f"item {index} of the list" if isinstance(data, list) else "the body"
            raise WebhookRefusedError(
                400, f"{where} is a JSON {type(entity).__name__}; each entity must be a JSON object; nothing was stored"
            )
    return entities


def too_many_records(limit: int) -> WebhookRefusedError:
    return WebhookRefusedError(
        413,
        f"too many records: more than {limit} in one request ([scheduled_jobs] webhook_max_records); "
        "split them over several requests; nothing was stored",
    )


def secret_opens(configurations: Configurations, identifier: str, offered: str) -> bool:
    """Whether ``offered`` is the webhook secret of incoming configuration ``identifier``.

    An unknown configuration, one without a webhook secret and a wrong secret are one and the same
    "no": the caller has not authenticated, so it learns nothing about which configurations exist.
    """
    found = configurations.incoming.valid.get(identifier)
    return found is not None and webhook_secret_matches(found.model, offered)


def find_incoming(configurations: Configurations, identifier: str) -> Loaded[IncomingConfiguration]:
    """The incoming configuration; 404 naming the known ones. Only for a caller already authenticated."""
    from scheduled_jobs.models.configurations import KIND_LABELS

    found = configurations.incoming.valid.get(identifier)
    if found is None:
        raise WebhookRefusedError(404, configurations.incoming.describe_missing(identifier, KIND_LABELS["incoming"]))
    return found


def webhook_actor(incoming: Loaded[IncomingConfiguration], user_name: str | None) -> Actor:
    """Who pushed, as the tasks' ``created_by``: the signed-in user, or the webhook connection's secret."""
    if user_name is not None:
        return Actor("webhook", user=user_name)
    connection = incoming.model.webhook.connection if incoming.model.webhook is not None else "?"
    return Actor("webhook", user=f"secret of {connection}")


def receive(
    configurations: Configurations,
    incoming: Loaded[IncomingConfiguration],
    body: bytes,
    store: TaskStore,
    max_records: int,
    *,
    created_by: Actor | None = None,
) -> WebhookReceipt:
    """Store the body's entities as "new" tasks on every route of the incoming configuration;
    ``created_by``: who pushed them (``webhook_actor``)."""
    entities = parse_entities(body, max_records)
    found = configurations.routes_of_incoming(incoming.identifier)
    routes = [route.identifier for route in found]
    if not routes:
        raise WebhookRefusedError(
            409,
            f"no route uses incoming configuration {incoming.identifier!r}, so its entities would have nowhere "
            f"to go; nothing was stored. Add a route in {configurations.folder / 'routes'}",
        )
    try:
        keyed = keyed_records(entities, incoming.model.entity_key, incoming.model.mapping)
    except ValueError as exc:
        raise WebhookRefusedError(400, f"{exc}; nothing was stored") from exc
    try:
        result = store.add_entities(routes, keyed, return_ids=True, created_by=created_by)
    except ValueError as exc:  # content the store cannot hold (NaN, 1e400, a lone surrogate): names the entity
        raise WebhookRefusedError(400, f"{exc}; nothing was stored") from exc
    return WebhookReceipt(
        incoming_configuration=incoming.identifier,
        routes=routes,
        task_ids=result.task_ids,
        tasks_created=len(result.task_ids),
        entities=len(keyed),
        unchanged=result.unchanged,
        realtime_routes=sorted(route.identifier for route in found if route.model.realtime),
    )
