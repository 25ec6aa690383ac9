"""The connector interface: a subscriber yields batches of records, a publisher delivers one task.

Operators only speak to these two abstract classes. A new kind of connector (HTTP, SQL, ...) is a new
module with a class, its settings model in ``models/connectors/``, added to the registry in
``connectors/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from scheduled_jobs.models.connectors.base import ConnectorSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from scheduled_jobs.models.tasks import ClaimedTask


def dig(document: Any, dotted: str | None) -> Any:
    """The value at a dotted path (``data.items``, ``lines.0.sku``); KeyError naming the missing part."""
    if not dotted:
        return document
    for part in dotted.split("."):
        if isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            raise KeyError(f"{dotted!r}: key {part!r} not found")
    return document


SettingsT = TypeVar("SettingsT", bound=ConnectorSettings)


def _nothing() -> None:
    return None


def _ignore(_reason: str) -> None:
    return None


@dataclass
class Batch:
    """Records read from one source (a file, a page, rows of a query).

    ``acknowledge`` once its tasks are stored; ``reject`` when its records are unusable (e.g. a record
    without the entity key), so the whole source is set aside and none of it half-imported.

    ``reject_record``, where set, makes each record a source of its own (a row of a query): a bad record
    is rejected by itself, called with its index in ``records`` and the reason, and returns the name
    under which it is reported; the batch's other records are stored and the batch is acknowledged.
    It is called before the batch's ``acknowledge``, so a SQL watermark can stay below that record.
    """

    source: str
    records: list[dict[str, Any]]
    acknowledge: Callable[[], object] = field(default=_nothing)
    reject: Callable[[str], None] = field(default=_ignore)
    reject_record: Callable[[int, str], str] | None = None


@dataclass
class RejectedSource:
    """A source that could not be read; ``set_aside`` keeps it from being read again unchanged."""

    source: str
    reason: str
    set_aside: Callable[[], None] = field(default=_nothing)


class SourceState(Protocol):
    """What a subscriber keeps between runs (e.g. a SQL watermark), kept in the task store."""

    def load(self) -> Any: ...

    def save(self, value: Any) -> None: ...


class NoState:
    def load(self) -> Any:
        return None

    def save(self, value: Any) -> None:
        return None


class Subscriber(ABC, Generic[SettingsT]):
    """Reads records from a source for an incoming configuration."""

    def __init__(self, settings: SettingsT, state: SourceState | None = None) -> None:
        self.settings = settings
        self.state: SourceState = state or NoState()

    @abstractmethod
    def batches(self) -> Iterator[Batch | RejectedSource]:
        """Yield every batch available now; a source that cannot be read is yielded as rejected."""

    def redact(self, text: str) -> str:
        """``text`` without the secrets of this subscriber's connection; applied to every text stored or logged."""
        return text


class Publisher(ABC, Generic[SettingsT]):
    """Delivers tasks of a route to the destination of an outgoing configuration."""

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings

    @abstractmethod
    def publish(self, task: ClaimedTask) -> int | None:
        """Deliver one task; its destination's status code where it has one (HTTP), else None. Raise
        ``DeliveryError`` with the reason (and the status code, where known) when it cannot be delivered."""

    def redact(self, text: str) -> str:
        """``text`` without the secrets of this publisher's connection; applied to every error stored or logged.

        The export loop applies it to each failure, including an unexpected exception's text, so a
        connector that knows secrets (a password, an API key) overrides it; the default knows none.
        """
        return text

    def close(self) -> None:
        """Release what the publisher holds open."""
