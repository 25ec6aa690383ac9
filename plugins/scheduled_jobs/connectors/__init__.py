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

if TYPE_CHECKING:
    from scheduled_jobs.connectors.base import ConnectorSettings, Publisher, Subscriber

# To add a connector: a settings model with a `type: Literal[...]`, a class, and one line in each.
SubscriberSettings = Annotated[FileSubscriberSettings, Field(discriminator="type")]
PublisherSettings = Annotated[FilePublisherSettings, Field(discriminator="type")]

_SUBSCRIBERS: dict[type[ConnectorSettings], type[Subscriber[Any]]] = {FileSubscriberSettings: FileSubscriber}
_PUBLISHERS: dict[type[ConnectorSettings], type[Publisher[Any]]] = {FilePublisherSettings: FilePublisher}


def subscriber_for(settings: ConnectorSettings) -> Subscriber[Any]:
    return _SUBSCRIBERS[type(settings)](settings)


def publisher_for(settings: ConnectorSettings) -> Publisher[Any]:
    return _PUBLISHERS[type(settings)](settings)
