"""Incoming configurations, outgoing configurations and routes, as YAML under ``configurations/``.

Layout::

    configurations/incoming/<anything>.yaml   one incoming configuration (a subscriber)
    configurations/outgoing/<anything>.yaml   one outgoing configuration (a publisher)
    configurations/routes/<anything>.yaml     one route: an incoming joined to an outgoing configuration
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import Field, ValidationError

from scheduled_jobs.exceptions import Problem
from scheduled_jobs.identifiers import identifier_from_name
from scheduled_jobs.models import Named, StrictModel
from scheduled_jobs.models.connectors import PublisherSettings, SubscriberSettings
from scheduled_jobs.yaml_files import (
    Limits,
    capped,
    find_yaml_files,
    inline_secret_problems,
    load_mapping,
    problems_from_validation,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


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


ModelT = TypeVar("ModelT", IncomingConfiguration, OutgoingConfiguration, Route)

KINDS: dict[str, type[IncomingConfiguration | OutgoingConfiguration | Route]] = {
    "incoming": IncomingConfiguration,
    "outgoing": OutgoingConfiguration,
    "routes": Route,
}
KIND_LABELS = {"incoming": "incoming configuration", "outgoing": "outgoing configuration", "routes": "route"}


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
    folder: Path
    incoming: Shelf[IncomingConfiguration] = field(default_factory=Shelf)
    outgoing: Shelf[OutgoingConfiguration] = field(default_factory=Shelf)
    routes: Shelf[Route] = field(default_factory=Shelf)
    problems: list[Problem] = field(default_factory=list)

    def routes_of_incoming(self, incoming: str) -> list[Loaded[Route]]:
        return [r for r in self.routes.valid.values() if r.model.incoming_configuration == incoming]


def guess_identifier(data: dict[str, object] | None, path: Path) -> str:
    """The identifier a file meant to have, even when it is invalid (for 'is invalid' messages)."""
    if data:
        if isinstance(data.get("identifier"), str):
            return str(data["identifier"])
        if isinstance(data.get("name"), str):
            return identifier_from_name(str(data["name"])) or path.stem
    return path.stem


MAX_IDENTIFIER_LENGTH = 200
"""Airflow refuses a DAG id of more than 250 characters; a route's DAG id adds ``realtime_export.``."""
_LIMIT_TEXT = f"an identifier is at most {MAX_IDENTIFIER_LENGTH} characters (Airflow's DAG ids hold 250)"


def resolve_identifier(path: Path, name: str, identifier: str | None) -> tuple[str | None, Problem | None]:
    if identifier:
        if len(identifier) > MAX_IDENTIFIER_LENGTH:
            reason = f"is {len(identifier)} characters long; {_LIMIT_TEXT}; choose a shorter one"
            return None, Problem(str(path), "identifier", reason)
        return identifier, None
    generated = identifier_from_name(name)
    if not generated:
        return None, Problem(
            str(path), "name", f"cannot generate an identifier from {name!r}; set identifier: explicitly"
        )
    if len(generated) > MAX_IDENTIFIER_LENGTH:
        reason = (
            f"the identifier made from it is {len(generated)} characters long; {_LIMIT_TEXT}; "
            "set a shorter identifier: explicitly"
        )
        return None, Problem(str(path), "name", reason)
    return generated, None


def duplicate_problems(paths_by_identifier: dict[str, list[Path]], label: str) -> list[Problem]:
    """An error on each file that shares its identifier with another, naming the others."""
    problems = []
    for identifier, paths in paths_by_identifier.items():
        if len(paths) < 2:
            continue
        for path in paths:
            others = ", ".join(str(p) for p in paths if p != path)
            problems.append(Problem(str(path), "identifier", f"{label} {identifier!r} is also defined in {others}"))
    return problems


def _load_shelf(folder: Path, kind: str, shelf: Shelf[ModelT], problems: list[Problem], limits: Limits) -> None:
    model = KINDS[kind]
    found: dict[str, list[tuple[Path, ModelT]]] = {}
    for path in find_yaml_files(folder / kind):
        data, problem = load_mapping(path, limits)
        if problem is not None or data is None:
            problems.append(problem or Problem(str(path), "(file)", "empty"))
            shelf.invalid[guess_identifier(None, path)] = path
            continue
        secrets = inline_secret_problems(path, data)
        if secrets:
            problems.extend(capped(path, secrets))
            shelf.invalid[guess_identifier(data, path)] = path
            continue
        try:
            loaded = model.model_validate(data)
        except ValidationError as exc:
            shown = problems_from_validation(path, exc, model)
            problems.extend(capped(path, shown, exc.error_count() - len(shown)))
            shelf.invalid[guess_identifier(data, path)] = path
            continue
        identifier, problem = resolve_identifier(path, loaded.name, loaded.identifier)
        if problem is not None or identifier is None:
            problems.append(problem or Problem(str(path), "identifier", "missing"))
            shelf.invalid[path.stem] = path
            continue
        found.setdefault(identifier, []).append((path, loaded))  # type: ignore[arg-type]
    duplicates = duplicate_problems({i: [p for p, _ in items] for i, items in found.items()}, KIND_LABELS[kind])
    problems.extend(duplicates)
    for identifier, items in found.items():
        if len(items) == 1:
            path, loaded_model = items[0]
            shelf.valid[identifier] = Loaded(identifier, path, loaded_model)
        else:
            shelf.invalid[identifier] = items[0][0]


def _route_problems(configurations: Configurations) -> Iterable[Problem]:
    for identifier, route in list(configurations.routes.valid.items()):
        checks = (
            ("incoming_configuration", route.model.incoming_configuration, configurations.incoming, "incoming"),
            ("outgoing_configuration", route.model.outgoing_configuration, configurations.outgoing, "outgoing"),
        )
        for key, target, shelf, kind in checks:
            if target not in shelf.valid:
                yield Problem(str(route.path), key, shelf.describe_missing(target, KIND_LABELS[kind]))
                configurations.routes.valid.pop(identifier, None)
                configurations.routes.invalid[identifier] = route.path


def load_configurations(folder: Path) -> Configurations:
    """Load every configuration under ``folder``; invalid files become problems, never exceptions."""
    configurations = Configurations(folder=folder)
    if not folder.is_dir():
        configurations.problems.append(
            Problem(
                str(folder), "(folder)", "configurations folder does not exist ([scheduled_jobs] configurations_folder)"
            )
        )
        return configurations
    limits = Limits.from_settings()
    _load_shelf(folder, "incoming", configurations.incoming, configurations.problems, limits)
    _load_shelf(folder, "outgoing", configurations.outgoing, configurations.problems, limits)
    _load_shelf(folder, "routes", configurations.routes, configurations.problems, limits)
    configurations.problems.extend(_route_problems(configurations))
    return configurations
