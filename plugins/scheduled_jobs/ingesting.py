"""The ingest loop of an incoming configuration, shared by the operator and the benchmark.

The subscriber reads ahead in a thread of its own (the next page is fetched while this one is
stored); each batch is acknowledged only after its tasks are committed.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from scheduled_jobs.connectors.base import Batch, RejectedSource, dig
from scheduled_jobs.redaction import printable, shown

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from scheduled_jobs.connectors.base import Subscriber
    from scheduled_jobs.models.configurations import Mapping
    from scheduled_jobs.models.tasks import Actor
    from scheduled_jobs.store import IngestResult, TaskStore

log = logging.getLogger(__name__)
# Batches handed to the one writer thread before this thread waits for the oldest. One writer, not
# several: batches then commit in the order they were read, so task ids (and "oldest first") follow the
# source, and an entity in two batches always ends with the later content.
IN_FLIGHT = 2
T = TypeVar("T")
_DONE = object()


@dataclass
class IngestSummary:
    incoming_configuration: str
    routes: list[str]
    sources: int = 0
    entities: int = 0
    tasks_created: int = 0
    unchanged: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_ENTITY_KEY_LENGTH = 500
"""Characters; the store's entity_key column holds this many."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def entity_key_of(record: dict[str, Any], path: str) -> str:
    """The entity key at a dotted path, as text; a ValueError saying what is wrong when it is not usable.

    A key is a non-empty string or a whole number (not a boolean, not a fraction), at most
    ``MAX_ENTITY_KEY_LENGTH`` characters, without control characters. Keys are text: the number 77 and the
    string "77" are one entity, since a CSV file and a JSON API name the same record in these two ways.
    """
    try:
        value = dig(record, path)
    except KeyError:
        raise ValueError(f"a record has no entity key {path!r}") from None
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(
            f"a record's entity key {path!r} is {shown(value, 60)} (a {kind}); it must be a non-empty string or a "
            "whole number"
        )
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_ENTITY_KEY_LENGTH:  # over 600 digits; str() would refuse past 4,300
            raise ValueError(f"a record's entity key {path!r} is a number of more than {MAX_ENTITY_KEY_LENGTH} digits")
        value = str(value)
    if not value:
        raise ValueError(f"a record's entity key {path!r} is ''; it must be a non-empty string or a whole number")
    if len(value) > MAX_ENTITY_KEY_LENGTH:
        raise ValueError(
            f"a record's entity key {path!r} is {len(value)} characters long; at most {MAX_ENTITY_KEY_LENGTH} "
            f"are allowed ({shown(value, 60)})"
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(
            f"a record's entity key {path!r} holds the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start()} ({shown(value, 60)}); keys must be printable text"
        )
    return value


def _kept(record: dict[str, Any], mapping: Mapping | None) -> bool:
    if mapping is None:
        return True
    for name, allowed in mapping.filter.items():
        try:
            value = dig(record, name)
        except KeyError:
            return False
        if value not in allowed:
            return False
    return True


def _payload(record: dict[str, Any], mapping: Mapping | None) -> dict[str, Any]:
    if mapping is None or not mapping.fields:
        return record
    payload = {}
    for key, name in mapping.fields.items():
        try:
            payload[key] = dig(record, name)
        except KeyError:
            payload[key] = None
    return payload


def keyed_records(
    records: Sequence[dict[str, Any]], entity_key: str, mapping: Mapping | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(entity key, payload) of each record the mapping's filter keeps; ValueError for a bad record."""
    keyed = []
    for index, record in enumerate(records):
        if not _kept(record, mapping):
            continue
        try:
            keyed.append((entity_key_of(record, entity_key), _payload(record, mapping)))
        except ValueError as exc:
            raise ValueError(f"record {index}: {exc}") from None
    return keyed


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the consumer."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


# A failure of the store that belongs to the records being stored, not to the store: our own validation
# (ValueError, e.g. a number Python will not print, a lone surrogate, a NUL psycopg2 will not send) and
# the database's refusal of a value (DataError: a key too long for its column). Anything else (a lost
# connection, a missing table) still fails the run.
def _refused_by_data(exc: BaseException) -> bool:
    from sqlalchemy.exc import DataError

    return isinstance(exc, ValueError | DataError)


_REASON_LIMIT = 160


def _refusal(exc: BaseException) -> str:
    """Why the store refused records: the first line of the database's or our own message, never the
    statement and its parameters (SQLAlchemy's text of an error holds both: the records' data)."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    detail = lines[0] if lines else type(cause).__name__
    if len(detail) > _REASON_LIMIT:
        detail = detail[: _REASON_LIMIT - 3] + "..."
    return f"the task store refused it: {detail}"


def _keyed_apart(
    records: Sequence[dict[str, Any]], entity_key: str, mapping: Mapping | None
) -> tuple[list[tuple[int, tuple[str, dict[str, Any]]]], list[tuple[int, str]]]:
    """(index, (entity key, payload)) of each record the mapping keeps, and (index, reason) of the bad ones.

    The same rule as ``keyed_records``, record by record, so a bad record can be rejected by itself.
    """
    keyed, bad = [], []
    for index, record in enumerate(records):
        if not _kept(record, mapping):
            continue
        try:
            keyed.append((index, (entity_key_of(record, entity_key), _payload(record, mapping))))
        except ValueError as exc:
            bad.append((index, str(exc)))
    return keyed, bad


def _ignore(_reason: str) -> None:
    return None


@dataclass
class _Stored:
    """What the writer stored of one batch."""

    result: IngestResult
    entities: int
    set_apart: list[tuple[int, str]]
    """The records rejected by themselves (index, reason), where the batch allows it."""


def _store_batch(
    store: TaskStore,
    routes: list[str],
    keyed: list[tuple[int, tuple[str, dict[str, Any]]]],
    set_apart: list[tuple[int, str]],
    record_by_record: bool,
    *,
    created_by: Actor | None = None,
) -> _Stored | str:
    """Store a batch in one transaction, or say why the store refused its data (a str).

    Where records can be rejected one by one, a refused batch is stored record by record instead (still
    in the writer thread, so batches still commit in the order read) and only the refused records are
    set apart.
    """
    try:
        result = store.add_entities(routes, [entity for _, entity in keyed], created_by=created_by)
        return _Stored(result, len(keyed), set_apart)
    except Exception as exc:
        if not _refused_by_data(exc):
            raise
        if not record_by_record:
            return _refusal(exc)
    from scheduled_jobs.store import IngestResult

    stored = _Stored(IngestResult(), 0, list(set_apart))
    for index, entity in keyed:
        try:
            stored.result += store.add_entities(routes, [entity], created_by=created_by)
        except Exception as exc:
            if not _refused_by_data(exc):
                raise
            stored.set_apart.append((index, _refusal(exc)))
        else:
            stored.entities += 1
    stored.set_apart.sort()
    return stored


def ingest(
    store: TaskStore,
    subscriber: Subscriber[Any],
    routes: list[str],
    entity_key: str,
    mapping: Mapping | None = None,
    *,
    incoming: str = "",
    created_by: Actor | None = None,
) -> IngestSummary:
    """Store every batch the subscriber yields as tasks on ``routes``; sources that fail are set aside.

    A writer thread stores each batch in its own transaction, in the order read, while this thread
    prepares the next. Batches are acknowledged in order and only once committed: a SQL watermark never
    moves past a batch that was not stored. A batch committed but not acknowledged (the run failed
    meanwhile) is read again next time, and the entity-key rule makes that harmless.

    A failure that belongs to one batch's data (a record without a usable key, a value the store refuses)
    rejects that batch, or only that record where the batch allows it (``Batch.reject_record``), and the
    run goes on; a failure of the store itself fails the run, with nothing acknowledged past it.
    """
    summary = IngestSummary(incoming, routes)
    pending: deque[tuple[Future[_Stored | str], Batch]] = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-writer")

    def reject(source: str, reason: str, set_aside: Callable[[str], object] = _ignore) -> None:
        # Every rejection is logged, kept in rejected/ and shown in the UI: it passes the connection's redactor,
        # and stays on one line (a file's name may hold a line break that would forge a log line).
        source, reason = printable(subscriber.redact(source)), printable(subscriber.redact(reason))
        log.error("Rejected %s: %s", source, reason)
        set_aside(reason)
        summary.rejected.append({"source": source, "reason": reason})

    def acknowledge(keep: int) -> None:
        while len(pending) > keep:
            future, batch = pending.popleft()
            stored = future.result()  # a failure of the store itself is raised here
            if isinstance(stored, str):
                reject(batch.source, stored, batch.reject)
                continue
            for index, reason in stored.set_apart:
                assert batch.reject_record is not None
                reject(batch.reject_record(index, reason), reason)
            batch.acknowledge()
            result = stored.result
            summary.sources += 1
            summary.entities += stored.entities
            summary.tasks_created += result.created
            summary.unchanged += result.unchanged
            log.info(
                "%s: %d entities, %d new tasks, %d unchanged",
                printable(batch.source),
                stored.entities,
                result.created,
                result.unchanged,
            )

    try:
        for item in read_ahead(subscriber.batches()):
            if isinstance(item, RejectedSource):
                acknowledge(0)
                reject(item.source, item.reason)
                item.set_aside()
                continue
            keyed, bad = _keyed_apart(item.records, entity_key, mapping)
            if bad and item.reject_record is None:
                acknowledge(0)
                index, reason = bad[0]
                reject(item.source, f"record {index}: {reason}", item.reject)
                continue
            job = pool.submit(
                _store_batch, store, routes, keyed, bad, item.reject_record is not None, created_by=created_by
            )
            pending.append((job, item))
            acknowledge(IN_FLIGHT - 1)
        acknowledge(0)
    finally:
        pool.shutdown(wait=True)
    return summary
