"""The export loop of a route, shared by the operator, the tests and the benchmarks.

Claim a batch of "new" tasks (oldest first), publish them (``concurrency`` at a time), then settle the
batch in one transaction, fenced by the claim token. Delivery is at-least-once: an exporter that dies
after publishing but before settling leaves its batch to be repaired and delivered again, with the
same idempotency key.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.redaction import printable
from scheduled_jobs.settings import LEASE_REFRESH_SECONDS
from scheduled_jobs.store import Push, utcnow

if TYPE_CHECKING:
    from scheduled_jobs.connectors.base import Publisher
    from scheduled_jobs.models.configurations import Configurations
    from scheduled_jobs.store import Actor, ClaimedTask, TaskStore

CLAIM_BATCH = 100
UNEXPECTED_ERROR_CHARACTERS = 2000
log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    route: str
    exported: int = 0
    failed: int = 0
    left: int = 0
    requeued: int = 0
    lost_claims: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetryFailed:
    """The route's "retrying of failed tasks": up to ``attempts`` tries, ``after_minutes`` apart."""

    attempts: int
    after_minutes: float


@dataclass(frozen=True)
class _Outcome:
    error: str | None
    """None when delivered."""
    retryable: bool
    push: Push


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _outcome(publisher: Publisher[Any], task: ClaimedTask) -> _Outcome:
    """Publish one task, timed: its error (None when delivered), whether it is retryable, and its push
    (status code, duration) for the task's history.

    The error passes the publisher's redactor before it is logged or stored: an exception's text
    (a library's, a destination's answer) may carry the connection's credentials.
    """
    started = time.perf_counter()
    try:
        status_code = publisher.publish(task)
    except DeliveryError as exc:
        return _Outcome(publisher.redact(str(exc)), exc.retryable, Push(exc.status_code, _elapsed_ms(started)))
    except Exception as exc:  # a connector bug must fail the task, never lose it
        duration = _elapsed_ms(started)
        # Redacted before it is cut or flattened, so that no secret is half-kept.
        text = printable(publisher.redact(f"unexpected {type(exc).__name__}: {exc}"))
        if len(text) > UNEXPECTED_ERROR_CHARACTERS:
            text = text[:UNEXPECTED_ERROR_CHARACTERS] + "... (cut)"
        return _Outcome(text, False, Push(None, duration))
    code = status_code if isinstance(status_code, int) and not isinstance(status_code, bool) else None
    return _Outcome(None, False, Push(code, _elapsed_ms(started)))


class _ClaimedBatch:
    """One claimed batch in flight: outcomes so far, and the lease of the claims this export holds."""

    def __init__(
        self, store: TaskStore, tasks: list[ClaimedTask], prefetched: Future[list[ClaimedTask]] | None
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.token = tasks[0].claim_token
        self.prefetched = prefetched
        self.finished: list[int] = []
        self.failures: list[tuple[int, str, bool]] = []
        self.pushes: dict[int, Push] = {}
        self.renewed = time.monotonic()
        self._renewing = threading.Lock()

    def record(self, task: ClaimedTask, outcome: _Outcome) -> None:
        self.pushes[task.id] = outcome.push
        if outcome.error is None:
            self.finished.append(task.id)
        else:
            log.error("Task %d (entity %s) failed: %s", task.id, task.entity_key, outcome.error)
            self.failures.append((task.id, outcome.error, outcome.retryable))

    def renew_lease(self) -> None:
        """Renew this batch's claim and the next batch's, already claimed, so repair leaves both alone."""
        with self._renewing:
            if time.monotonic() - self.renewed < LEASE_REFRESH_SECONDS:
                return
            tokens = [self.token]
            if self.prefetched is not None and self.prefetched.done() and not self.prefetched.exception():
                tokens += [task.claim_token for task in self.prefetched.result()[:1]]
            self.store.touch(tokens)
            self.renewed = time.monotonic()


class _Lease:
    """A thread that renews the claims of the batch in flight every ``LEASE_REFRESH_SECONDS``.

    Renewed while a publish is in flight, not only between publishes: one delivery may take longer
    than the stuck threshold (a slow destination, within its deadline), and repair must not hand its
    task to a second exporter meanwhile. A dead exporter renews nothing, so repair still takes its
    tasks; a live one always ends its publishes, each bounded by its connector's deadline.
    """

    def __init__(self, route: str) -> None:
        self.batch: _ClaimedBatch | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{route}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LEASE_REFRESH_SECONDS):
            batch = self.batch
            if batch is None:
                continue
            try:
                batch.renew_lease()
            except Exception:  # the store is away for a moment: settling says if a claim was lost
                log.warning("The claims of the batch in flight could not be renewed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _publish_batch(batch: _ClaimedBatch, publisher: Publisher[Any], pool: ThreadPoolExecutor | None) -> None:
    if pool is None:
        for task in batch.tasks:
            batch.record(task, _outcome(publisher, task))
        return
    pending: dict[Future[_Outcome], ClaimedTask] = {
        pool.submit(_outcome, publisher, task): task for task in batch.tasks
    }
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            batch.record(pending.pop(future), future.result())


def export_route(
    store: TaskStore,
    publisher: Publisher[Any],
    route: str,
    *,
    limit: int | None = None,
    concurrency: int = 1,
    retry_failed: RetryFailed | None = None,
    actor: Actor | None = None,
) -> ExportResult:
    """Export at most ``limit`` tasks of ``route`` that were "new" when the export started.

    ``actor`` (the export run) is kept as each task's ``claimed_by`` and in the events it writes: its
    requeues, and each push's outcome (status code, duration, idempotency key, attempt).
    """
    result = ExportResult(route)
    if retry_failed is not None:
        failed_before = utcnow() - dt.timedelta(minutes=retry_failed.after_minutes)
        result.requeued = store.requeue_failed(route, retry_failed.attempts, failed_before, actor=actor)
    up_to = store.newest_new_id(route)
    if up_to is None:
        publisher.close()
        result.left = store.counts(route)["new"]
        return result
    remaining = limit
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"export-{route}") if concurrency > 1 else None
    # One thread does the store's work (claim the next batch, settle the last) while this one publishes:
    # a transaction's round trip then costs no delivery time. Its errors surface here, at .result().
    store_thread = ThreadPoolExecutor(1, thread_name_prefix=f"store-{route}")

    def next_claim() -> Future[list[ClaimedTask]] | None:
        size = CLAIM_BATCH if remaining is None else min(CLAIM_BATCH, remaining)
        return store_thread.submit(store.claim, route, size, up_to, claimed_by=actor) if size > 0 else None

    settling: list[tuple[Future[int], int]] = []
    lease = _Lease(route)
    try:
        claiming = next_claim()
        while claiming is not None:
            claimed = claiming.result()
            if not claimed:
                break
            if remaining is not None:
                remaining -= len(claimed)
            claiming = next_claim()
            batch = lease.batch = _ClaimedBatch(store, claimed, claiming)
            _publish_batch(batch, publisher, pool)
            lease.batch = None  # settled next: its claims are the settling's to check
            settled = store_thread.submit(
                store.settle, batch.token, batch.finished, batch.failures, actor=actor, pushes=batch.pushes
            )
            settling.append((settled, len(claimed)))
            result.exported += len(batch.finished)
            result.failed += len(batch.failures)
        for future, claimed_count in settling:
            held = future.result()
            if held < claimed_count:
                lost = claimed_count - held
                result.lost_claims += lost
                log.warning("%d tasks had lost their claim (repaired as stuck) before they were settled", lost)
    finally:
        lease.stop()
        store_thread.shutdown(wait=True)
        if pool is not None:
            pool.shutdown(wait=True)
        publisher.close()
    result.left = store.counts(route)["new"]
    return result


def export_configured_route(
    configurations: Configurations,
    route: str,
    store: TaskStore,
    *,
    limit: int | None = None,
    actor: Actor | None = None,
) -> ExportResult:
    """Export a route as its YAML says (publisher, concurrency, retrying of failed tasks)."""
    from scheduled_jobs.connectors import publisher_for
    from scheduled_jobs.exceptions import ScheduledJobsError
    from scheduled_jobs.models.configurations import KIND_LABELS

    found = configurations.routes.valid.get(route)
    if found is None:
        raise ScheduledJobsError(configurations.routes.describe_missing(route, KIND_LABELS["routes"]))
    outgoing = configurations.outgoing.valid[found.model.outgoing_configuration]
    retry = found.model.retry_failed_tasks
    return export_route(
        store,
        publisher_for(outgoing.model.publisher),
        found.identifier,
        limit=limit,
        concurrency=found.model.concurrency,
        retry_failed=RetryFailed(retry.attempts, retry.after_minutes) if retry else None,
        actor=actor,
    )
