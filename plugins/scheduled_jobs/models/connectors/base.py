"""What every connector's settings share: the ``type:`` that picks the connector."""

from __future__ import annotations

from scheduled_jobs.models.base import StrictModel


class ConnectorSettings(StrictModel):
    """The ``subscriber:`` or ``publisher:`` mapping of a configuration; ``type`` picks the connector."""

    type: str
