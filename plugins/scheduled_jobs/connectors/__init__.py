"""The connector registry: each ``type:`` of a subscriber or publisher and the class that runs it.

Their settings (and the ``SubscriberSettings``/``PublisherSettings`` unions) are in ``models/connectors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduled_jobs.connectors.files import FilePublisher, FileSubscriber
from scheduled_jobs.connectors.http import HttpPublisher, HttpSubscriber
from scheduled_jobs.connectors.sql import SqlPublisher, SqlSubscriber
from scheduled_jobs.models.connectors import (
    FilePublisherSettings,
    FileSubscriberSettings,
    HttpPublisherSettings,
    HttpSubscriberSettings,
    SqlPublisherSettings,
    SqlSubscriberSettings,
)

if TYPE_CHECKING:
    from scheduled_jobs.connectors.base import Publisher, SourceState, Subscriber
    from scheduled_jobs.models.connectors import ConnectorSettings

# To add a connector: its settings in models/connectors (and in a union there), its class, one line here.
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
