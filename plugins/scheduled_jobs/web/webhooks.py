"""Webhooks: entities pushed to an incoming configuration become "new" tasks on its routes at once.

The whole body is checked before anything is stored (all or nothing, one transaction), with the same
entity-key rule and mapping as a subscriber. The API server only answers: the export of the real-time
routes is handed to Airflow (``handoff``), never run here. Webhooks are never subject to duplicate
prevention: they do not run through the guard.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scheduled_jobs import jsondata
from scheduled_jobs.connectors.base import dig
from scheduled_jobs.exceptions import WebhookRefusedError
from scheduled_jobs.ingesting import keyed_records
from scheduled_jobs.models.connectors import FileSubscriberSettings, HttpSubscriberSettings
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.web.responses import WebhookReceipt
from scheduled_jobs.web.security import webhook_secret_matches

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scheduled_jobs.models.configurations import Configurations, IncomingConfiguration, Loaded
    from scheduled_jobs.store import TaskStore

log = logging.getLogger(__name__)
WRONG_SECRET = "Forbidden: wrong webhook secret"  # noqa: S105 (a message, not a secret)


JSON_MEDIA_TYPE = "application/json"


def require_json(content_type: str | None) -> None:
    """Refuse (415) a body not declared ``application/json`` (parameters such as ``; charset=utf-8`` allowed).

    A browser sends ``text/plain``, a form type or none from another site's form or no-cors ``fetch`` without
    asking the server first; ``application/json`` it sends only after a CORS preflight this server never
    grants. So the type is both the contract and one more wall against a cross-site push.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        shown = "no Content-Type" if not media_type else f"Content-Type {media_type[:60]!r}"
        raise WebhookRefusedError(
            415, f"the body must be JSON, sent as Content-Type {JSON_MEDIA_TYPE}, not {shown}; nothing was stored"
        )


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


def parse_entities(body: bytes, max_records: int, shape: RecordsShape | None = None) -> list[dict[str, Any]]:
    """The entities of a body; 400 or 413 with the reason otherwise.

    Accepted: one JSON object (one entity) or a list of at most ``max_records`` objects; and, where the
    incoming configuration reads its records at a ``records_path`` (``shape``), the documents its
    subscriber reads, e.g. ``{"orders": [...]}``: an object in which that path leads to a list of
    objects or to one object, read as the files connector reads a file. An object in which the path leads
    nowhere is one entity, as without a path, if it has the entity key; else it is refused, naming both.

    The cap of a top-level list is checked while the list is read: the records past it are never built.
    A list at the path is counted once parsed, like everything in an object body, which
    ``webhook_max_bytes`` bounds.
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
    if isinstance(data, dict) and shape is not None:
        at_path = shape.records_in(data, max_records)
        if at_path is not None:
            return at_path
    entities = data if isinstance(data, list) else [data]
    for index, entity in enumerate(entities):
        if not isinstance(entity, dict):
            where = f"item {index} of the list" if isinstance(data, list) else "the body"
            raise WebhookRefusedError(
                400,
                f"{where} is a JSON {jsondata.type_name(entity)}; each entity must be a JSON object; "
                "nothing was stored",
            )
    return entities


@dataclass(frozen=True)
class RecordsShape:
    """Where the records of an incoming configuration's documents are: its subscriber's ``records_path``."""

    incoming: str
    records_path: str
    entity_key: str

    @classmethod
    def of(cls, incoming: Loaded[IncomingConfiguration]) -> RecordsShape | None:
        """Its shape where its subscriber (files' JSON, HTTP pages) reads records at a path; else None."""
        subscriber = incoming.model.subscriber
        if isinstance(subscriber, FileSubscriberSettings | HttpSubscriberSettings) and subscriber.records_path:
            return cls(incoming.identifier, subscriber.records_path, incoming.model.entity_key)
        return None

    def example(self) -> str:
        """The shape of a document, e.g. ``{"data": {"orders": [...]}}`` for ``data.orders``."""
        shown = "[...]"
        for part in reversed(self.records_path.split(".")):
            shown = f"{{{json.dumps(part)}: {shown}}}"
        return shown

    def records_in(self, document: dict[str, Any], max_records: int) -> list[dict[str, Any]] | None:
        """The records at the path (a list, or one object); None for an entity without the path; else 400/413."""
        has_key = _has(document, self.entity_key)
        try:
            found = dig(document, self.records_path)  # the files and HTTP connectors' own reading of the path
        except KeyError:
            if not has_key:
                raise WebhookRefusedError(
                    400,
                    f"the body has no {self.records_path!r} (the records_path of incoming configuration "
                    f"{self.incoming!r}) and no entity key {self.entity_key!r}: send {self.example()} as its "
                    "documents hold, one entity, or a list of entities; nothing was stored",
                ) from None
            return None  # one entity, as without a records_path
        if has_key:  # an entity with a field named like the path, or a document with a key: never guessed
            raise WebhookRefusedError(
                400,
                f"the body has both {self.records_path!r} (the records_path of incoming configuration "
                f"{self.incoming!r}) and the entity key {self.entity_key!r}: send one entity inside a JSON list "
                f"([{{...}}]), or the document {self.example()} without {self.entity_key!r}; nothing was stored",
            )
        records = found if isinstance(found, list) else [found]
        if len(records) > max_records:
            raise too_many_records(max_records)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                where = f"item {index} of {self.records_path!r}" if isinstance(found, list) else repr(self.records_path)
                raise WebhookRefusedError(
                    400,
                    f"{where} (the records_path) is a JSON {jsondata.type_name(record)}; each entity must be a JSON "
                    "object; nothing was stored",
                )
        return records


def _has(document: dict[str, Any], path: str) -> bool:
    try:
        dig(document, path)
    except KeyError:
        return False
    return True


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
    """The incoming configuration; 404 naming the known ones. Only for a caller already authenticated.

    A webhook's caller is a machine on the network, not an operator: the answer names no file or folder of
    the server (an invalid file's path is on the jobs page and in ``scheduled-jobs validate``).
    """
    from scheduled_jobs.models.configurations import KIND_LABELS

    found = configurations.incoming.valid.get(identifier)
    if found is not None:
        return found
    label = KIND_LABELS["incoming"]
    if identifier in configurations.incoming.invalid:
        raise WebhookRefusedError(
            404,
            f"{label} {identifier!r} is invalid: its problems are on the Scheduled jobs page and in "
            "scheduled-jobs validate; nothing was stored",
        )
    known = ", ".join(sorted(configurations.incoming.valid)) or "none"
    raise WebhookRefusedError(404, f"no {label} has identifier {identifier!r} (known: {known})")


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
    entities = parse_entities(body, max_records, RecordsShape.of(incoming))
    found = configurations.routes_of_incoming(incoming.identifier)
    routes = [route.identifier for route in found]
    if not routes:
        raise WebhookRefusedError(
            409,
            f"no route uses incoming configuration {incoming.identifier!r}, so its entities would have nowhere "
            "to go; nothing was stored. Add a route (configurations/routes) with "
            f"incoming_configuration: {incoming.identifier}",
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
