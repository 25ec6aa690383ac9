"""The connector registry: each ``type:`` of a subscriber or publisher and the class that runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from scheduled_jobs.connectors.files import (
    FilePublisher,
    FilePublisherSettings,
    FileSubscriber,
    FileSubscriberSettings,
)
from scheduled_jobs.connectors.http import (
    HttpPublisher,
    HttpPublisherSettings,
    HttpSubscriber,
    HttpSubscriberSettings,
)
from scheduled_jobs.connectors.sql import SqlPublisher, SqlPublisherSettings, SqlSubscriber, SqlSubscriberSettings

if TYPE_CHECKING:
    from scheduled_jobs.connectors.base import ConnectorSettings, Publisher, SourceState, Subscriber

# To add a connector: a settings model with a `type: Literal[...]`, a class, and one line in each.
SubscriberSettings = Annotated[
    FileSubscriberSettings | HttpSubscriberSettings | SqlSubscriberSettings, Field(discriminator="type")
]
PublisherSettings = Annotated[
    FilePublisherSettings | HttpPublisherSettings | SqlPublisherSettings, Field(discriminator="type")
]

_SUBSCRIBERS: dict[type[ConnectorSettings], type[Subscriber[Any]]] = {
    FileSubscriberSettings: FileSubscriber,
    HttpSubscriberSettings: HttpSubscriber,
    SqlSubscriberSettings: SqlSubscriber,
}
_PUBLISHERS: dict[type[ConnectorSettings], type[Publisher[Any]]] = {
    FilePublisherSettings: FilePublisher,
    HttpPublisherSettings: HttpPublisher,
    SqlPublisherSettings: SqlPublisher,
}


def subscriber_for(settings: ConnectorSettings, state: SourceState | None = None) -> Subscriber[Any]:
    return _SUBSCRIBERS[type(settings)](settings, state)


def publisher_for(settings: ConnectorSettings) -> Publisher[Any]:
    return _PUBLISHERS[type(settings)](settings)
