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

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from scheduled_jobs.configurations import Mapping
    from scheduled_jobs.connectors.base import Subscriber
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


def _shown(value: Any) -> str:
    """A value for an error message: its type and at most a short, escaped prefix."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


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
            f"a record's entity key {path!r} is {_shown(value)} (a {kind}); it must be a non-empty string or a "
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
            f"are allowed ({_shown(value)})"
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(
            f"a record's entity key {path!r} holds the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start()} ({_shown(value)}); keys must be printable text"
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


def ingest(
    store: TaskStore,
    subscriber: Subscriber[Any],
    routes: list[str],
    entity_key: str,
    mapping: Mapping | None = None,
    *,
    incoming: str = "",
) -> IngestSummary:
    """Store every batch the subscriber yields as tasks on ``routes``; sources that fail are set aside.

    A writer thread stores each batch in its own transaction, in the order read, while this thread
    prepares the next. Batches are acknowledged in order and only once committed: a SQL watermark never
    moves past a batch that was not stored. A batch committed but not acknowledged (the run failed
    meanwhile) is read again next time, and the entity-key rule makes that harmless.
    """
    summary = IngestSummary(incoming, routes)
    pending: deque[tuple[Future[IngestResult], Batch, int]] = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-writer")

    def acknowledge(keep: int) -> None:
        while len(pending) > keep:
            future, batch, count = pending.popleft()
            result = future.result()
            batch.acknowledge()
            summary.sources += 1
            summary.entities += count
            summary.tasks_created += result.created
            summary.unchanged += result.unchanged
            log.info(
                "%s: %d entities, %d new tasks, %d unchanged", batch.source, count, result.created, result.unchanged
            )

    try:
        for item in read_ahead(subscriber.batches()):
            if isinstance(item, RejectedSource):
                acknowledge(0)
                log.error("Rejected %s: %s", item.source, item.reason)
                item.set_aside()
                summary.rejected.append({"source": item.source, "reason": item.reason})
                continue
            try:
                keyed = keyed_records(item.records, entity_key, mapping)
            except ValueError as exc:
                acknowledge(0)
                log.error("Rejected %s: %s", item.source, exc)
                item.reject(str(exc))
                summary.rejected.append({"source": item.source, "reason": str(exc)})
                continue
            pending.append((pool.submit(store.add_entities, routes, keyed), item, len(keyed)))
            acknowledge(IN_FLIGHT - 1)
        acknowledge(0)
    finally:
        pool.shutdown(wait=True)
    return summary
