"""SQL connectors through Airflow connections: an incremental query subscriber and an insert/upsert publisher.

Values always travel as bound parameters; table and column names are checked against a strict
identifier pattern and quoted by SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from scheduled_jobs.connectors.base import Batch, ConnectorSettings, Publisher, RejectedSource, Subscriber, dig
from scheduled_jobs.exceptions import DeliveryError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Engine

    from scheduled_jobs.store.tasks import ClaimedTask

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


def _engine(conn_id: str) -> Engine:
    from sqlalchemy import create_engine

    from scheduled_jobs.store.engine import url_for_connection

    return create_engine(url_for_connection(conn_id), pool_pre_ping=True)


def _plain(value: Any) -> Any:
    """A JSON-friendly value: timestamps as ISO text, decimals as numbers."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


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
        import re

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


class SqlSubscriber(Subscriber[SqlSubscriberSettings]):
    """Yields rows in batches; the watermark moves on only once a batch's tasks are stored."""

    def batches(self) -> Iterator[Batch | RejectedSource]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        settings = self.settings
        column = settings.watermark_column
        watermark = self.state.load() if column else None
        sql = f"SELECT * FROM ({settings.query}) AS source"
        parameters: dict[str, Any] = {}
        if column:
            quoted = f'"{column}"'
            if watermark is not None:
                sql += f" WHERE {quoted} > :watermark"
                parameters["watermark"] = watermark
            sql += f" ORDER BY {quoted}"
        sql += f" LIMIT {settings.max_records}"
        engine = _engine(settings.connection)
        source = f"{settings.connection}: query"
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True).execute(text(sql), parameters)
                while rows := result.fetchmany(settings.batch_size):
                    records = [{key: _plain(value) for key, value in row._mapping.items()} for row in rows]
                    last = rows[-1]._mapping[column] if column else None
                    yield Batch(source, records, acknowledge=partial(self.state.save, last) if column else _noop)
        except SQLAlchemyError as exc:
            yield RejectedSource(source, f"the query failed: {str(exc.orig if hasattr(exc, 'orig') else exc).strip()}")
        finally:
            engine.dispose()


def _noop() -> None:
    return None


class SqlPublisher(Publisher[SqlPublisherSettings]):
    def __init__(self, settings: SqlPublisherSettings) -> None:
        super().__init__(settings)
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _statement(self, engine: Engine) -> Any:
        from sqlalchemy import column, table

        schema, _, name = self.settings.table.rpartition(".")
        target = table(name, *(column(c) for c in self.settings.columns), schema=schema or None)
        if self.settings.mode == "insert":
            from sqlalchemy import insert

            return insert(target)
        dialect = engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as flavour
        elif dialect == "sqlite":
            from sqlalchemy.dialects import sqlite as flavour  # type: ignore[no-redef]
        else:
            raise DeliveryError(f"mode: upsert is supported on PostgreSQL and SQLite, not {dialect}")
        statement = flavour.insert(target)
        updates = {c: statement.excluded[c] for c in self.settings.columns if c not in self.settings.key_columns}
        return statement.on_conflict_do_update(index_elements=self.settings.key_columns, set_=updates)

    def publish(self, task: ClaimedTask) -> None:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        with self._lock:
            if self._engine is None:
                self._engine = _engine(self.settings.connection)
        row: dict[str, Any] = {}
        for name, field in self.settings.columns.items():
            try:
                row[name] = dig(task.payload, field)
            except KeyError:
                row[name] = None
        try:
            with self._engine.begin() as conn:
                conn.execute(self._statement(self._engine), row)
        except DBAPIError as exc:
            transient = bool(exc.connection_invalidated) or exc.orig is None
            raise DeliveryError(f"{self.settings.table}: {str(exc.orig).strip()}", transient=transient) from exc
        except SQLAlchemyError as exc:
            raise DeliveryError(f"{self.settings.table}: {exc}", transient=True) from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
