"""Shared pieces of the YAML models: strict, closed to unknown keys, with a seed-style identifier."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from scheduled_jobs.identifiers import IDENTIFIER_PATTERN


class StrictModel(BaseModel):
    """A user-facing YAML mapping: unknown keys are errors, values are never coerced between types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Named(StrictModel):
    """Name, Identifier and Description, as every object of the seed product has them."""

    name: str = Field(min_length=1)
    identifier: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    description: str = ""
