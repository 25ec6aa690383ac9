"""The configuration models: incoming and outgoing configurations and routes, as YAML under ``configurations/``.

Layout::

    configurations/incoming/<anything>.yaml   one incoming configuration (a subscriber)
    configurations/outgoing/<anything>.yaml   one outgoing configuration (a publisher)
    configurations/routes/<anything>.yaml     one route: an incoming joined to an outgoing configuration
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import Field

from scheduled_jobs.models import Named, StrictModel

# The one line that names where the connector settings live.
from scheduled_jobs.models.connectors import PublisherSettings, SubscriberSettings

if TYPE_CHECKING:
    from pathlib import Path

    from scheduled_jobs.exceptions import Problem


class Mapping(StrictModel):
    """From a source record to a task payload: keep some records, reshape them."""

    filter: dict[str, list[str | int | float | bool | None]] = Field(default_factory=dict)
    """Keep only records whose field (dotted) is one of the values, e.g. ``{status: [new, paid]}``."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Payload key: record field (dotted); absent = the whole record is the payload."""


class WebhookSettings(StrictModel):
    """How a webhook that pushes into an incoming configuration may authenticate besides an Airflow token."""

    connection: str = Field(min_length=1)
    """The Airflow connection whose password is the webhook's secret, sent as ``X-Webhook-Secret``."""


class IncomingConfiguration(Named):
    entity_key: str = Field(min_length=1)
    """The record field (dotted for nested fields) whose value identifies an entity, e.g. ``id``."""
    subscriber: SubscriberSettings | None = None
    """Where a scheduled job reads records from; absent when records only arrive by webhook."""
    mapping: Mapping | None = None
    webhook: WebhookSettings | None = None


class OutgoingConfiguration(Named):
    publisher: PublisherSettings


class RetryFailedTasks(StrictModel):
    """The route's "retrying of failed tasks": transient failures are tried again on later runs."""

    attempts: int = Field(ge=2, le=100)
    """Tries in all, the first included."""
    after_minutes: float = Field(default=10, ge=0)


class Route(Named):
    incoming_configuration: str = Field(min_length=1)
    outgoing_configuration: str = Field(min_length=1)
    realtime: bool = False
    """A real-time route is exported right after each run of its incoming configuration."""
    concurrency: int = Field(default=1, ge=1, le=64)
    """How many tasks of the route one export publishes at once."""
    retry_failed_tasks: RetryFailedTasks | None = None
    priority: int = Field(default=0, ge=-(2**31 - 1), le=2**31 - 1)
    """The priority of the route's real-time export DAG (Airflow's priority_weight, absolute), as a job's."""


ConfigurationModel = IncomingConfiguration | OutgoingConfiguration | Route

# The folder of each configuration kind under ``configurations/``, its model and the word for it in messages.
KINDS: dict[str, type[ConfigurationModel]] = {
    "incoming": IncomingConfiguration,
    "outgoing": OutgoingConfiguration,
    "routes": Route,
}
KIND_LABELS = {"incoming": "incoming configuration", "outgoing": "outgoing configuration", "routes": "route"}


ModelT = TypeVar("ModelT", IncomingConfiguration, OutgoingConfiguration, Route)


@dataclass(frozen=True)
class Loaded(Generic[ModelT]):
    """A valid object with its resolved identifier and the file it came from."""

    identifier: str
    path: Path
    model: ModelT


@dataclass
class Shelf(Generic[ModelT]):
    """The objects of one kind: the valid ones by identifier, and the identifiers of invalid files."""

    valid: dict[str, Loaded[ModelT]] = field(default_factory=dict)
    invalid: dict[str, Path] = field(default_factory=dict)

    def describe_missing(self, identifier: str, label: str) -> str:
        if identifier in self.invalid:
            return f"{label} {identifier!r} in {self.invalid[identifier]} is invalid (see its own error)"
        known = ", ".join(sorted(self.valid)) or "none"
        return f"no {label} has identifier {identifier!r} (known: {known})"


@dataclass
class Configurations:
    """Every configuration the catalog loaded from one folder, and the problems of the files it refused."""

    folder: Path
    incoming: Shelf[IncomingConfiguration] = field(default_factory=Shelf)
    outgoing: Shelf[OutgoingConfiguration] = field(default_factory=Shelf)
    routes: Shelf[Route] = field(default_factory=Shelf)
    problems: list[Problem] = field(default_factory=list)

    def routes_of_incoming(self, incoming: str) -> list[Loaded[Route]]:
        return [r for r in self.routes.valid.values() if r.model.incoming_configuration == incoming]

    def shelf(self, kind: str) -> Shelf[Any]:
        """The shelf of a kind of ``KINDS``: ``incoming``, ``outgoing`` or ``routes``."""
        shelf: Shelf[Any] = getattr(self, kind)
        return shelf
