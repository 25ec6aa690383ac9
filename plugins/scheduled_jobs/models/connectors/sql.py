"""``subscriber: {type: sql}`` and ``publisher: {type: sql}``: a query and its watermark, a table and its columns."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from scheduled_jobs.models.connectors.base import ConnectorSettings

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
"""A table or column name: checked here, quoted by SQLAlchemy, never a value spliced into SQL."""


class SqlSubscriberSettings(ConnectorSettings):
    """``subscriber: {type: sql, ...}``: rows of a query, incrementally on a watermark column."""

    type: Literal["sql"] = "sql"
    connection: str = Field(min_length=1)
    query: str = Field(min_length=1)
    """A SELECT; it is wrapped as ``SELECT * FROM (<query>) WHERE <watermark_column> > :watermark``."""
    watermark_column: str | None = Field(default=None, pattern=IDENTIFIER)
    batch_size: int = Field(default=1000, gt=0, le=100_000)
    max_records: int = Field(default=100_000, gt=0)

    @field_validator("query")
    @classmethod
    def _one_select(cls, value: str) -> str:
        text = value.strip().rstrip(";")
        if ";" in text or not text.lower().startswith(("select", "with")):
            raise ValueError("must be one SELECT (or WITH ... SELECT) statement")
        return text


class SqlPublisherSettings(ConnectorSettings):
    """``publisher: {type: sql, ...}``: one row per task, inserted or upserted."""

    type: Literal["sql"] = "sql"
    connection: str = Field(min_length=1)
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
    columns: dict[str, str] = Field(min_length=1)
    """Column name: payload field (dotted for nested fields)."""
    mode: Literal["insert", "upsert"] = "insert"
    key_columns: list[str] = Field(default_factory=list)

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.match(IDENTIFIER, name)]
        if bad:
            raise ValueError(f"column names must be letters, digits and '_': {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _keys_for_upsert(self) -> SqlPublisherSettings:
        if self.mode == "upsert":
            if not self.key_columns:
                raise ValueError("mode: upsert needs key_columns (the columns of a unique key)")
            missing = [k for k in self.key_columns if k not in self.columns]
            if missing:
                raise ValueError(f"key_columns {missing} are not among columns")
        return self
