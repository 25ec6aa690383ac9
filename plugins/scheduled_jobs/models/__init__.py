"""The bottom layer's data: pydantic models of the YAML, and the plain records every layer passes around.

Nothing here does I/O or imports a higher layer (see docs/architecture.md).
"""

from __future__ import annotations

from scheduled_jobs.models.base import Named, StrictModel

__all__ = ["Named", "StrictModel"]
