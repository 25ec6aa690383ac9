"""The settings of every connector: the ``subscriber:`` and ``publisher:`` mappings of configurations.

To add a connector: a settings model with a ``type: Literal[...]`` in a module here, one member in
each union below that applies, and its class in the registry of ``connectors/__init__.py``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from scheduled_jobs.models.connectors.base import ConnectorSettings
from scheduled_jobs.models.connectors.files import FilePublisherSettings, FileSubscriberSettings
from scheduled_jobs.models.connectors.http import HttpPublisherSettings, HttpSettings, HttpSubscriberSettings
from scheduled_jobs.models.connectors.retry import RetrySettings
from scheduled_jobs.models.connectors.sql import SqlPublisherSettings, SqlSubscriberSettings

SubscriberSettings = Annotated[
    FileSubscriberSettings | HttpSubscriberSettings | SqlSubscriberSettings, Field(discriminator="type")
]
PublisherSettings = Annotated[
    FilePublisherSettings | HttpPublisherSettings | SqlPublisherSettings, Field(discriminator="type")
]

__all__ = [
    "ConnectorSettings",
    "FilePublisherSettings",
    "FileSubscriberSettings",
    "HttpPublisherSettings",
    "HttpSettings",
    "HttpSubscriberSettings",
    "PublisherSettings",
    "RetrySettings",
    "SqlPublisherSettings",
    "SqlSubscriberSettings",
    "SubscriberSettings",
]
