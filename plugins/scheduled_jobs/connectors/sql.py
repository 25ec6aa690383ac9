"""SQL connectors through Airflow connections: an incremental query subscriber and an insert/upsert publisher.

Values always travel as bound parameters; table and column names are checked against a strict
identifier pattern and quoted by SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections import Counter
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any

from scheduled_jobs.connections import sqlalchemy_url
from scheduled_jobs.connectors.base import Batch, Publisher, RejectedSource, Subscriber, dig
from scheduled_jobs.exceptions import DeliveryError, SourceError
from scheduled_jobs.models.connectors.sql import SqlPublisherSettings, SqlSubscriberSettings
from scheduled_jobs.redaction import Redactor, redactor_for

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.engine import Connection, CursorResult, Engine, Row

    from scheduled_jobs.connectors.base import SourceState
    from scheduled_jobs.models.tasks import ClaimedTask


def _engine(conn_id: str) -> Engine:
    """An engine for an Airflow connection, at the URL its common-sql hook gives (``connections``)."""
    from sqlalchemy import create_engine, event

    engine = create_engine(sqlalchemy_url(conn_id), pool_pre_ping=True)
    if engine.dialect.driver == "psycopg":
        event.listen(engine, "connect", _dates_out_of_range_as_text)
    return engine


def _dates_out_of_range_as_text(dbapi_connection: Any, _record: Any) -> None:
    """Read a date or timestamp Python cannot hold (before year 1, after 9999) as PostgreSQL's text.

    psycopg refuses such a value, which fails the whole query at that row on every run: no row after it
    would ever be read. Its text is what the database shows, and a watermark compares with it.
    """
    from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

    for name, loader in (("date", DateLoader), ("timestamp", TimestampLoader), ("timestamptz", TimestamptzLoader)):
        dbapi_connection.adapters.register_loader(name, _as_text_when_out_of_range(loader))


def _as_text_when_out_of_range(loader: type[Any]) -> type[Any]:
    import psycopg

    class Lenient(loader):  # type: ignore[misc]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except psycopg.DataError:
                return bytes(data).decode()

    return Lenient


def _redactor(conn_id: str) -> Redactor:
    """The connection's secrets, so a driver's error text (which may carry a DSN) is stored without them."""
    from airflow.sdk import BaseHook

    return redactor_for(BaseHook.get_connection(conn_id))


def _plain(value: Any) -> Any:
    """A JSON-friendly value: timestamps as ISO text, decimals as numbers."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # NaN and infinities become floats, which the store refuses by row
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@dataclass(frozen=True)
class _Point:
    """A place in a run's rows, ordered by the watermark column: every row up to ``position`` (0-based)
    has a watermark value up to ``value``, and the rows after it have greater values. Position -1 is the
    start of the run (``value`` is the watermark it started from)."""

    position: int
    value: Any


class _Watermark:
    """A run's watermark: it moves only to a value below which every row is committed.

    A rejected row holds it strictly below that row's value (at the end of the previous value), for the
    rest of the run: the rows after the rejected one are still stored, and read again by the next run,
    which the entity-key rule makes harmless.
    """

    def __init__(self, state: SourceState, start: Any) -> None:
        self.state = state
        self.saved = _Point(-1, start)
        self.held: _Point | None = None

    def hold(self, point: _Point) -> None:
        if self.held is None or point.position < self.held.position:
            self.held = point

    def move_to(self, point: _Point) -> None:
        if self.held is not None and point.position > self.held.position:
            point = self.held
        if point.position > self.saved.position:
            self.state.save(point.value)
            self.saved = point


@dataclass
class _Rows:
    """One batch of a query's rows: how far acknowledging it moves the watermark, and where rejecting one
    of its rows holds it."""

    source: str
    column: str
    first: int
    """The run position of its first row."""
    values: list[Any]
    """Each row's watermark value."""
    before: list[_Point]
    """For each row, the last place before its value: where the watermark stays if that row is rejected."""
    done: _Point
    """Where the watermark may move once the batch is stored."""
    watermark: _Watermark

    def acknowledge(self) -> None:
        self.watermark.move_to(self.done)

    def reject(self, _reason: str) -> None:
        self.watermark.hold(self.before[0])

    def reject_record(self, index: int, _reason: str) -> str:
        self.watermark.hold(self.before[index])
        value = str(self.values[index])  # a timestamp as the database shows it
        name = _row_name(self.source, self.first, index, _reason)
        return f"{name} ({self.column} {value if len(value) <= 60 else value[:57] + '...'})"


def _row_name(source: str, first: int, index: int, _reason: str) -> str:
    """A row named by its place in the run (1-based): the report's name of a rejected row."""
    return f"{source}, row {first + index + 1}"


def _fingerprint(row: Row[Any]) -> str:
    return repr(tuple(row))


class SqlSubscriber(Subscriber[SqlSubscriberSettings]):
    """Yields rows in batches, ordered by the watermark column; the watermark moves on only to a value
    below which every row is committed.

    A row without a usable entity key is rejected by itself (its neighbours are stored) and holds the
    watermark below its value, so it is read again once fixed. ``max_records`` never cuts through rows
    sharing one watermark value: the rest of them are read past the limit. Rows whose watermark value is
    NULL can never be read incrementally: they are reported as a rejection on every run.
    """

    _redact = Redactor()

    def redact(self, text: str) -> str:
        return self._redact(text)

    def batches(self) -> Iterator[Batch | RejectedSource]:
        from sqlalchemy.exc import SQLAlchemyError

        settings = self.settings
        source = f"{settings.connection}: query"
        self._redact = _redactor(settings.connection)
        engine = _engine(settings.connection)
        try:
            with engine.connect() as conn:
                column = settings.watermark_column
                if column is None:
                    yield from self._everything(conn, source)
                else:
                    yield from self._incremental(conn, source, column)
                    nulls = self._without_watermark(conn, column)
                    if nulls:
                        yield RejectedSource(source, _null_reason(nulls, column))
        except SQLAlchemyError as exc:
            reason = str(exc.orig if hasattr(exc, "orig") else exc).strip()
            yield RejectedSource(source, self.redact(f"the query failed: {reason}"))
        except SourceError as exc:
            yield RejectedSource(source, exc.reason)
        finally:
            engine.dispose()

    def _everything(self, conn: Connection, source: str) -> Iterator[Batch]:
        from sqlalchemy import text

        sql = f"SELECT * FROM ({self.settings.query}) AS source LIMIT {self.settings.max_records}"
        result = _named_once(conn.execution_options(stream_results=True).execute(text(sql)))
        first = 0
        while rows := result.fetchmany(self.settings.batch_size):
            yield Batch(source, _records(rows), reject_record=partial(_row_name, source, first))
            first += len(rows)

    def _incremental(self, conn: Connection, source: str, column: str) -> Iterator[Batch]:
        watermark = _Watermark(self.state, self.state.load())
        rows = self._ordered(conn, column, watermark.saved.value)
        following = next(rows, None)
        position = 0
        previous = current = watermark.saved  # the last places of the previous value and of this one
        while following is not None:
            chunk = [following, *islice(rows, self.settings.batch_size - 1)]
            following = next(rows, None)  # one row ahead: does the last value of this batch go on?
            values, before = [], []
            for row in chunk:
                value = row._mapping[column]
                if position == 0 or value != current.value:
                    previous = current
                current = _Point(position, value)
                values.append(value)
                before.append(previous)
                position += 1
            goes_on = following is not None and following._mapping[column] == current.value
            done = before[-1] if goes_on else current
            batch = _Rows(source, column, position - len(chunk), values, before, done, watermark)
            yield Batch(
                source,
                _records(chunk),
                acknowledge=batch.acknowledge,
                reject=batch.reject,
                reject_record=batch.reject_record,
            )

    def _ordered(self, conn: Connection, column: str, start: Any) -> Iterator[Row[Any]]:
        """The rows past ``start`` in watermark order: ``max_records`` of them, then the rest of the rows
        sharing the last one's value, so that the watermark can move past that value."""
        from sqlalchemy import text

        quoted = f'"{column}"'
        sql = f"SELECT * FROM ({self.settings.query}) AS source"
        if start is None:
            found = conn.execution_options(stream_results=True).execute(
                text(f"{sql} WHERE {quoted} IS NOT NULL ORDER BY {quoted} LIMIT {self.settings.max_records}")
            )
        else:
            found = conn.execution_options(stream_results=True).execute(
                text(f"{sql} WHERE {quoted} > :start ORDER BY {quoted} LIMIT {self.settings.max_records}"),
                {"start": start},
            )
        _named_once(found)
        count = 0
        tied: list[Row[Any]] = []  # the rows read of the last value so far
        for row in found:
            count += 1
            if tied and row._mapping[column] != tied[0]._mapping[column]:
                tied = []
            tied.append(row)
            yield row
        if count < self.settings.max_records:
            return
        # The limit may cut through the rows of the last value: read them all, skipping those already read.
        seen = Counter(_fingerprint(row) for row in tied)
        rest = conn.execution_options(stream_results=True).execute(
            text(f"{sql} WHERE {quoted} = :last"), {"last": tied[-1]._mapping[column]}
        )
        for row in rest:
            print_ = _fingerprint(row)
            if seen[print_]:
                seen[print_] -= 1
                continue
            yield row

    def _without_watermark(self, conn: Connection, column: str) -> int:
        from sqlalchemy import text

        sql = f'SELECT COUNT(*) FROM ({self.settings.query}) AS source WHERE "{column}" IS NULL'
        return int(conn.execute(text(sql)).scalar() or 0)


def _named_once(result: CursorResult[Any]) -> CursorResult[Any]:
    """``result``; a SourceError when it names a column twice: a row's mapping keeps one value of the two."""
    names = list(result.keys())
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        result.close()
        raise SourceError(
            "query",
            f"the query names the column {repeated!r} twice, so a record would keep only one of its values: "
            "name each column once (e.g. customers.id AS customer_id)",
        )
    return result


def _records(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row._mapping.items()} for row in rows]


def _null_reason(count: int, column: str) -> str:
    rows = "1 row has" if count == 1 else f"{count} rows have"
    them = "it is" if count == 1 else "they are"
    return (
        f"{rows} no {column} (NULL), so {them} never read: give every row an {column}, "
        f"or select one that is never NULL, e.g. COALESCE({column}, <another column>) AS {column}"
    )


class SqlPublisher(Publisher[SqlPublisherSettings]):
    def __init__(self, settings: SqlPublisherSettings) -> None:
        super().__init__(settings)
        self._engine: Engine | None = None
        self._redact = Redactor()
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
                self._redact = _redactor(self.settings.connection)
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
            retryable = bool(exc.connection_invalidated) or exc.orig is None
            reason = self.redact(f"{self.settings.table}: {str(exc.orig).strip()}")
            raise DeliveryError(reason, retryable=retryable) from exc
        except SQLAlchemyError as exc:  # its text, without the statement and the row's values
            reason = self.redact(f"{self.settings.table}: {type(exc).__name__}: {str(exc).split(chr(10))[0]}")
            raise DeliveryError(reason, retryable=True) from exc

    def redact(self, text: str) -> str:
        return self._redact(text)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
