"""Benchmark: the task store at production size (issue 13), against the same store nearly empty.

Method. Two fresh PostgreSQL databases, each migrated by the store itself (``TaskStore.from_url`` runs
the Alembic migrations):

- FULL: 1,000,000 tasks over 20 routes (about half of them older than the 30-day retention, most
  finished; 10,000 new, 100 processing, 15,860 failed of which half will be retried, 9,880 skipped),
  the entity rows they imply, ``created_by``/``claimed_by`` actors, and 3,000,000 task events
  (exported, export_failed, requeued, repaired, skipped) with realistic detail JSON. Bulk-loaded with
  ``COPY`` (psycopg 3), the tables' indexes dropped during the load and rebuilt from their own
  definitions after it, then ``VACUUM ANALYZE``: the steady state of a production table.
- EMPTY: the same generator with 8,000 tasks (the same routes and statuses, 120 new per route).

Then, in the same run:

1. The store's calls against both, the two stores called alternately (two warm-up rounds, then median
   and p95 of ``--repeat``, 30): the console's task list (route and status, first page and a deep
   keyset page; a status across routes; no filter; an entity key exact and by prefix; a day two months
   back; everything before it) and its count, a task's page (``task_detail`` + ``task_history``), an
   entity's page, the Tasks overview (``route_figures``, the page's ``route_rows``, and the recount of
   the finished tasks behind it) and a claim of 100 (``TaskStore.claim``, put back after each, so every
   repetition claims the same); also two proposals for the lists that miss (ordered by the filtered
   time; a key prefix through the key index).
2. The pages over HTTP, through Airflow's own API app in process (``create_app``, an admin's token; the
   store by its Airflow connection): the Tasks overview, the task list with those filters, a task's
   page, an entity's page, the count an action on a filter confirms. Empty store first, then full.
3. What migration 0005's indexes cost the writers in the FULL store: ingest of 1,000 entities and a
   claim + settle of 100, with the indexes, without them (dropped), with them again (rebuilt).
4. Prune under load (FULL only): ``prune_tasks`` (on an engine of its own, as the prune job) deletes the
   ~500,000 finished/skipped tasks older than the 30-day retention, and their events, while an export
   runs in a thread on a route of its own (runs of 1,000: claim 100, publish to an in-process publisher,
   settle with events; the store is all it waits for). Its rate is set against the same export alone,
   measured before and after prune. Claim errors and lost claims are counted.

Usage: ``.venv/bin/python bench/store_scale.py`` (4-6 minutes on 2 cores; ``--tasks 100000`` for a quick
try, ``--keep`` keeps both databases, ``--reuse`` measures a kept FULL database again without refilling
it, ``--no-pages``/``--no-index-cost``/``--no-prune`` skip those parts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins")]
HOME = Path(os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sj-bench-home-")))
os.environ.update(
    {  # Airflow's own app serves the pages: no definitions, no configurations, the store by its connection
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "http.access=WARNING alembic=WARNING",
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(HOME / "job_definitions"),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(HOME / "configurations"),
    }
)

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from scheduled_jobs.catalog import Catalog  # noqa: E402
from scheduled_jobs.connectors.base import Publisher  # noqa: E402
from scheduled_jobs.exporting import export_route  # noqa: E402
from scheduled_jobs.models.tasks import Actor  # noqa: E402
from scheduled_jobs.store import TaskStore, route_figures, task_detail, utcnow  # noqa: E402
from scheduled_jobs.store.reports import finished_counts  # noqa: E402
from scheduled_jobs.store.schema import tasks as tasks_table  # noqa: E402
from scheduled_jobs.web.overview import route_rows, stuck_before  # noqa: E402

try:  # the console's store functions (issue 13): measured when this branch has them
    from scheduled_jobs.store import console
except ImportError:  # pragma: no cover - before the store helper's branch is merged
    console = None  # type: ignore[assignment]

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
FULL_DB = "scheduled_jobs_bench_scale"
EMPTY_DB = "scheduled_jobs_bench_scale_empty"
RETENTION = dt.timedelta(days=30)
PAGE_GOAL_MS = 100.0
CLAIM_GOAL = 1.5
EXPORT_SLOWDOWN_GOAL = 2.0
EXPORT_ROUTE = "bench-export"
EXPORT_TASKS = 20_000
EXPORT_RUN = 1_000
EXPORT_ACTOR = Actor("run", dag_id="sj_export_bench", run_id="manual__bench", task_id="export", try_number=1)
"""Tasks per export run: a short run, so the runs during prune end when prune ends."""

KINDS = ("orders", "customers", "products", "invoices", "shipments")
KEY_PREFIX = {"orders": "SO", "customers": "CUST", "products": "SKU", "invoices": "INV", "shipments": "SHP"}
TARGETS = ("erp", "crm", "wms", "shop")


def route_names(count: int) -> list[str]:
    return [f"{KINDS[r % len(KINDS)]}-to-{TARGETS[(r // len(KINDS)) % len(TARGETS)]}-{r:02d}" for r in range(count)]


# -- the data -------------------------------------------------------------------------------------


def _ts(value: dt.datetime) -> str:
    return value.isoformat(sep=" ")


def _escape(text: str) -> str:
    """A value for COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


FINISHED_PATTERN = (1, 3, 2, 5, 1, 4, 3, 1, 5, 5)  # events of a finished task: mean 3


@dataclass
class Shape:
    """What one store holds: every row follows from these numbers (the same rows on every run)."""

    tasks: int
    routes: int
    new_per_route: int
    events: int
    now: dt.datetime
    processing_per_route: int = 5
    stuck_per_route: int = 2
    hot_every: int = 100
    """Every n-th recent task of a route is one more task of its "hot" entity (an entity page of 200+)."""
    names: list[str] = field(default_factory=list)
    per_route: list[int] = field(default_factory=list)
    old: list[int] = field(default_factory=list)
    events_per_finished: float = 3.0

    def __post_init__(self) -> None:
        self.names = route_names(self.routes)
        self.per_route = [self.tasks // self.routes + (1 if r < self.tasks % self.routes else 0) for r in self.routes_]
        self.old = [count // 2 for count in self.per_route]

    @property
    def routes_(self) -> range:
        return range(self.routes)

    def prefix(self, r: int) -> str:
        return KEY_PREFIX[KINDS[r % len(KINDS)]]

    def hot_key(self, r: int) -> str:
        return f"{self.prefix(r)}-HOT-{r:02d}"

    def key(self, r: int, j: int) -> str:
        if j < self.old[r]:
            return f"{self.prefix(r)}-{j:07d}"
        k = j - self.old[r]
        if k % self.hot_every == self.hot_every - 1:
            return self.hot_key(r)
        return f"{self.prefix(r)}-{k - k // self.hot_every:07d}"

    def status(self, r: int, j: int) -> tuple[str, bool]:
        """(status, retryable) of the j-th task of route r."""
        if j < self.old[r]:
            if j % 97 == 5:
                return "skipped", False
            if j % 500 == 7:
                return "failed", False
            return "finished", False
        from_end = self.per_route[r] - 1 - j
        if from_end < self.new_per_route:
            return "new", False
        if from_end < self.new_per_route + self.processing_per_route:
            return "processing", False
        k = j - self.old[r]
        if k % 33 == 3:
            return "failed", k % 66 == 3
        if k % 101 == 50:
            return "skipped", False
        return "finished", False

    def created(self, r: int, j: int) -> dt.datetime:
        """Ids grow with time: the old half spread over 180..31 days ago, the recent half over the last 29 days."""
        old = self.old[r]
        if j < old:
            start, span, position = dt.timedelta(days=180), dt.timedelta(days=149), j / max(1, old)
        else:
            start, span = dt.timedelta(days=29), dt.timedelta(days=29) - dt.timedelta(minutes=1)
            position = (j - old) / max(1, self.per_route[r] - old)
        return self.now - start + span * position + dt.timedelta(milliseconds=r)

    def tasks_in_order(self) -> Iterator[tuple[int, int, int]]:
        """(id, route index, index in route), in id order: the routes interleaved as time goes."""
        task_id = 0
        for j in range(max(self.per_route)):
            for r in self.routes_:
                if j < self.per_route[r]:
                    task_id += 1
                    yield task_id, r, j

    @staticmethod
    def other_events(status: str, retryable: bool, j: int) -> int:
        if status == "new":
            return 2 if j % 10 == 0 else 0
        if status == "failed":
            return 3 if retryable else 1
        if status == "skipped":
            return 2
        return 0

    def plan_events(self) -> None:
        """How many events a finished task has on average, so that all tasks together have ``events``."""
        finished = others = 0
        for _, r, j in self.tasks_in_order():
            status, retryable = self.status(r, j)
            if status == "finished":
                finished += 1
            else:
                others += self.other_events(status, retryable, j)
        self.events_per_finished = max(1.0, (self.events - others) / max(1, finished))


class EventCounts:
    """Events per finished task, following the pattern but drifting towards the planned mean."""

    def __init__(self, mean: float) -> None:
        self.mean = mean
        self.wanted = 0.0
        self.given = 0
        self.n = 0

    def next(self) -> int:
        count = FINISHED_PATTERN[self.n % len(FINISHED_PATTERN)]
        self.n += 1
        self.wanted += self.mean
        drift = self.wanted - (self.given + count)
        count = max(1, count + round(drift)) if abs(drift) >= 1 else count
        self.given += count
        return count


def finished_story(count: int) -> list[str]:
    """The events of a task finished after ``count`` events: failures and requeues, maybe a repair, the export."""
    story: list[str] = []
    rest = count - 1
    if rest % 2:
        story.append("repaired")
        rest -= 1
    story += ["export_failed", "requeued"] * (rest // 2)
    return [*story, "exported"]


def story_of(status: str, retryable: bool, j: int, finished_count: int) -> list[str]:
    if status == "finished":
        return finished_story(finished_count)
    if status == "new":
        return ["export_failed", "requeued"] if j % 10 == 0 else []
    if status == "failed":
        return ["export_failed", "requeued", "export_failed"] if retryable else ["export_failed"]
    if status == "skipped":
        return ["export_failed", "skipped"]
    return []


class Actors:
    """Compact actor JSON, one per run (a 15-minute slot per DAG), cached."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str, int], str] = {}
        self.tokens: dict[tuple[int, int], str] = {}

    def run(self, dag_id: str, task_id: str, at: dt.datetime) -> str:
        slot = int(at.timestamp()) // 900
        key = (dag_id, task_id, slot)
        found = self.cache.get(key)
        if found is None:
            run_id = "scheduled__" + dt.datetime.fromtimestamp(slot * 900, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
            found = self.cache[key] = _compact(
                {"dag_id": dag_id, "kind": "run", "run_id": run_id, "task_id": task_id, "try_number": 1}
            )
        return found

    def token(self, r: int, at: dt.datetime) -> str:
        key = (r, int(at.timestamp()) // 60)
        found = self.tokens.get(key)
        if found is None:
            found = self.tokens[key] = str(uuid.uuid4())
        return found


WEBHOOK = _compact({"kind": "webhook", "user": "shop-webhook"})
USERS = [_compact({"kind": "user", "user": name}) for name in ("alice", "bob", "carol")]
ERRORS = [
    (503, True, "HTTP 503 Service Unavailable from the destination: upstream ERP is down for maintenance"),
    (429, True, "HTTP 429 Too Many Requests: rate limit exceeded, retry after 60 seconds"),
    (None, True, "timed out after 30 seconds waiting for the destination's answer (read timeout)"),
    (
        400,
        False,
        'HTTP 400 Bad Request: {"error":"invalid_field","field":"customer.vat_number","message":"not a VAT number"}',
    ),
    (422, False, 'HTTP 422 Unprocessable Entity: {"errors":[{"code":"unknown_sku","path":"lines.1.sku"}]}'),
]


def payload(key: str, r: int, j: int, revision: int) -> str:
    """An order-like document as stored: canonical JSON (sorted keys, compact), ~400 bytes."""
    c = (j * 7919 + r) % 90_000
    lines = ",".join(
        f'{{"description":"Article {(j + n) % 5000} colour {n}","price_cents":{100 + (j * 31 + n * 17) % 9900},'
        f'"qty":{1 + (j + n) % 5},"sku":"SKU-{(j * 13 + n) % 50_000:05d}"}}'
        for n in range(1 + j % 3)
    )
    return (
        f'{{"currency":"EUR","customer":{{"email":"customer{c}@example.com","id":"C-{c:06d}",'
        f'"name":"Customer {c} B.V."}},"id":"{key}","lines":[{lines}],"revision":{revision},'
        f'"status":"confirmed","total_cents":{(j * 97) % 1_000_000}}}'
    )


def task_rows(shape: Shape, entity_rows: dict[tuple[int, str], str]) -> Iterator[str]:
    """COPY lines of scheduled_jobs_task, in id order; fills ``entity_rows`` with each entity's newest content."""
    actors = Actors()
    counts = EventCounts(shape.events_per_finished)
    stuck_at = shape.now - dt.timedelta(hours=3)
    busy_at = shape.now - dt.timedelta(minutes=1)
    for task_id, r, j in shape.tasks_in_order():
        route = shape.names[r]
        key = shape.key(r, j)
        status, retryable = shape.status(r, j)
        created = shape.created(r, j)
        story = story_of(status, retryable, j, counts.next() if status == "finished" else 0)
        attempts = sum(1 for kind in story if kind in ("exported", "export_failed", "repaired"))
        document = payload(key, r, j, 0 if j < shape.old[r] else 1 + j % 7)
        digest = hashlib.sha256(document.encode()).hexdigest()
        created_by = (
            WEBHOOK if task_id % 10 == 0 else actors.run(f"sj_incoming_{KINDS[r % len(KINDS)]}", "work", created)
        )
        claimed_at = claim_token = claimed_by = last_error = None
        updated = created
        if status == "processing":
            claimed_at = (
                stuck_at if (shape.per_route[r] - j) % shape.processing_per_route < shape.stuck_per_route else busy_at
            )
            updated = claimed_at
            attempts += 1
        elif story:
            updated = created + dt.timedelta(seconds=20 + (task_id % 600) + 900 * (len(story) - 1))
            claimed_at = updated - dt.timedelta(seconds=2)
        if status in ("finished", "failed", "processing") or (status == "new" and story):
            claim_token = actors.token(r, claimed_at or updated)
            claimed_by = actors.run(f"sj_export_{route}", "export", claimed_at or updated)
        if status == "failed":
            last_error = ERRORS[(0 if retryable else 3) + j % 2][2]
        elif status == "skipped":
            last_error = f"skipped by alice: {key} was cancelled in the shop"
        yield (
            "\t".join(
                (
                    str(task_id),
                    route,
                    key,
                    digest,
                    _escape(document),
                    status,
                    str(attempts),
                    _ts(created),
                    _ts(updated),
                    _ts(claimed_at) if claimed_at else "\\N",
                    claim_token or "\\N",
                    _escape(last_error) if last_error else "\\N",
                    "t" if retryable else "f",
                    _escape(created_by),
                    _escape(claimed_by) if claimed_by else "\\N",
                )
            )
            + "\n"
        )
        entity_rows[(r, key)] = f"{route}\t{key}\t{digest}\t{_ts(created)}\n"


def event_rows(shape: Shape) -> Iterator[str]:
    """COPY lines of scheduled_jobs_task_event: each task's story, the same one ``task_rows`` counted."""
    actors = Actors()
    counts = EventCounts(shape.events_per_finished)
    event_id = 0
    for task_id, r, j in shape.tasks_in_order():
        status, retryable = shape.status(r, j)
        story = story_of(status, retryable, j, counts.next() if status == "finished" else 0)
        if not story:
            continue
        route = shape.names[r]
        created = shape.created(r, j)
        step = dt.timedelta(seconds=900)
        at = created + dt.timedelta(seconds=18 + task_id % 600)
        attempt = 0
        for index, kind in enumerate(story):
            at += step if index else dt.timedelta(0)
            export_run = actors.run(f"sj_export_{route}", "export", at)
            if kind in ("exported", "export_failed"):
                attempt += 1
                detail: dict[str, Any] = {
                    "attempt": attempt,
                    "duration_ms": 40 + (task_id * 7 + index) % 900,
                    "idempotency_key": f"{route}-{task_id}",
                    "status_code": 201,
                }
                actor = export_run
                if kind == "export_failed":
                    code, can_retry, error = ERRORS[(0 if retryable or status != "failed" else 3) + (j + index) % 2]
                    if status == "skipped":
                        code, can_retry, error = ERRORS[4]
                    detail.update(status_code=code, retryable=can_retry, error=error)
            elif kind == "requeued":
                detail, actor = {"attempts": attempt}, export_run
            elif kind == "repaired":
                attempt += 1
                detail = {"claimed_by": json.loads(export_run), "stuck_after_minutes": 30, "to": "new"}
                actor = actors.run("sj_repair_stuck_tasks", "work", at)
            else:  # skipped
                detail, actor = {"reason": "cancelled in the shop"}, USERS[j % len(USERS)]
            event_id += 1
            yield f"{event_id}\t{task_id}\t{_ts(at)}\t{kind}\t{_escape(actor)}\t{_escape(_compact(detail))}\n"


# -- loading --------------------------------------------------------------------------------------


def psycopg_connect(url: sa.URL) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )


def create_database(server: sa.URL, name: str) -> sa.URL:
    with psycopg_connect(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name)


def drop_database(server: sa.URL, name: str) -> None:
    with psycopg_connect(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


LOADED = ("scheduled_jobs_task", "scheduled_jobs_task_event", "scheduled_jobs_entity")


def index_definitions(conn: psycopg.Connection[Any]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The loaded tables' primary keys (table, name, definition) and their other indexes (name, CREATE INDEX)."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('p', 'u') ORDER BY 1, 2",
        (list(LOADED),),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = ANY(%s::regclass[])) ORDER BY 1",
        (list(LOADED), list(LOADED)),
    ).fetchall()
    return [tuple(c) for c in constraints], [tuple(i) for i in indexes]  # type: ignore[misc]


def copy_lines(
    conn: psycopg.Connection[Any], table: str, columns: str, lines: Iterator[str], chunk: int = 20_000
) -> int:
    count = 0
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer: list[str] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= chunk:
                copy.write("".join(buffer))
                count += len(buffer)
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))
            count += len(buffer)
    return count


TASK_COLUMNS = (
    "id, route, entity_key, content_hash, payload, status, attempts, created_at, updated_at, claimed_at, "
    "claim_token, last_error, retryable, created_by, claimed_by"
)


def fill(url: sa.URL, shape: Shape, say: Callable[[str], None]) -> dict[str, float]:
    """Migrate through the store, then COPY the shape's rows in with the indexes dropped, rebuild them, VACUUM ANALYZE."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    TaskStore.from_url(url).engine.dispose()  # the store's own migrations, as in production
    shape.plan_events()
    with psycopg_connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        constraints, indexes = index_definitions(conn)
        for table, name, _ in constraints:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        entity_rows: dict[tuple[int, str], str] = {}
        copied = copy_lines(conn, "scheduled_jobs_task", TASK_COLUMNS, task_rows(shape, entity_rows))
        say(f"  {copied:,} tasks copied ({time.perf_counter() - started:.0f} s)")
        copy_lines(
            conn, "scheduled_jobs_entity", "route, entity_key, content_hash, updated_at", iter(entity_rows.values())
        )
        say(f"  {len(entity_rows):,} entities copied ({time.perf_counter() - started:.0f} s)")
        entity_rows.clear()
        events = copy_lines(
            conn, "scheduled_jobs_task_event", "id, task_id, at, kind, actor, detail", event_rows(shape)
        )
        say(f"  {events:,} events copied ({time.perf_counter() - started:.0f} s)")
        timings["copy"] = time.perf_counter() - started
        for table, name, definition in constraints:
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        for _, definition in indexes:
            conn.execute(definition)
        assert index_definitions(conn) == (constraints, indexes), "the indexes came back different"
        for table in ("scheduled_jobs_task", "scheduled_jobs_task_event"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        timings["indexes"] = time.perf_counter() - started - timings["copy"]
        conn.execute("VACUUM ANALYZE")
        timings["vacuum"] = time.perf_counter() - started - timings["copy"] - timings["indexes"]
        conn.execute(f"COMMENT ON DATABASE \"{url.database}\" IS '{shape_tag(shape)}'")
    timings["total"] = time.perf_counter() - started
    return timings


def shape_tag(shape: Shape) -> str:
    return f"store_scale tasks={shape.tasks} routes={shape.routes} new={shape.new_per_route} events={shape.events}"


def database_tag(server: sa.URL, name: str) -> str | None:
    with psycopg_connect(server) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return row[0] if row else None


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class Timing:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


def timed(call: Callable[[], object], repeat: int, after: Callable[[object], None] | None = None) -> Timing:
    samples = []
    for n in range(repeat + 2):
        started = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - started
        if after is not None:
            after(result)
        if n >= 2:  # two warm-up calls: the connection pool and the statement caches
            samples.append(elapsed)
    return Timing(samples)


def timed_alternately(
    calls: dict[str, tuple[Callable[[], object], Callable[[object], None] | None]], repeat: int
) -> dict[str, Timing]:
    """Each call in turn, one after the other (the order swapped every round), so that load from elsewhere
    on a shared machine falls on both stores alike; two warm-up rounds."""
    samples: dict[str, list[float]] = {label: [] for label in calls}
    labels = list(calls)
    for n in range(repeat + 2):
        for label in labels if n % 2 else labels[::-1]:
            call, after = calls[label]
            started = time.perf_counter()
            result = call()
            elapsed = time.perf_counter() - started
            if after is not None:
                after(result)
            if n >= 2:
                samples[label].append(elapsed)
    return {label: Timing(found) for label, found in samples.items()}


@dataclass
class Targets:
    """What the measurements ask for in one store: found in it, so both stores answer the same questions."""

    route: str
    claim_route: str
    deep_before: int
    deep_page: int
    task_id: int
    entity_key: str
    key_prefix: str
    """Two characters short of a key: 100 entities (800 tasks at 1,000,000)."""
    wide_prefix: str
    """Three short: 1,000 entities (8,000 tasks)."""
    hot_route: str
    hot_key: str
    day_start: dt.datetime


def find_targets(store: TaskStore, shape: Shape) -> Targets:
    route, claim_route = shape.names[0], shape.names[3]
    with store.engine.connect() as conn:
        finished = conn.execute(
            sa.text("SELECT count(*) FROM scheduled_jobs_task WHERE route = :r AND status = 'finished'"), {"r": route}
        ).scalar_one()
        offset = min(40_000, int(finished * 0.8))
        deep_before = conn.execute(
            sa.text(
                "SELECT id FROM scheduled_jobs_task WHERE route = :r AND status = 'finished' "
                "ORDER BY id DESC OFFSET :o LIMIT 1"
            ),
            {"r": route, "o": offset},
        ).scalar_one()
        # A recent task with several events, whose entity has an old one too.
        middle = shape.tasks // 2 + shape.tasks // 20
        candidates = conn.execute(
            sa.text(
                "SELECT t.id, t.entity_key, (SELECT count(*) FROM scheduled_jobs_task_event e WHERE e.task_id = t.id) AS n "
                "FROM scheduled_jobs_task t WHERE t.route = :r AND t.status = 'finished' AND t.id > :m "
                "AND t.entity_key NOT LIKE '%HOT%' ORDER BY t.id LIMIT 50"
            ),
            {"r": route, "m": middle},
        ).all()
    task_id, key, _ = max(candidates, key=lambda row: (row.n, -row.id))
    return Targets(
        route=route,
        claim_route=claim_route,
        deep_before=int(deep_before),
        deep_page=offset // 50 + 1,
        task_id=int(task_id),
        entity_key=key,
        key_prefix=key[:-2],
        wide_prefix=key[:-3],
        hot_route=route,
        hot_key=shape.hot_key(0),
        day_start=(shape.now - dt.timedelta(days=60)).replace(hour=0, minute=0, second=0, microsecond=0),
    )


def put_back(store: TaskStore) -> Callable[[object], None]:
    """Undo a claim: the same tasks "new" again, as they were, so the next repetition claims the same."""

    def undo(claimed: object) -> None:
        ids = [task.id for task in claimed]  # type: ignore[attr-defined]
        assert len(ids) == 100, f"claimed {len(ids)}, not 100"
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE scheduled_jobs_task SET status = 'new', claim_token = NULL, claimed_at = NULL, "
                    "claimed_by = NULL, attempts = attempts - 1, updated_at = created_at WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            )

    return undo


@dataclass
class Measurement:
    name: str
    goal: str  # "page" (median under 100 ms), "claim" (within 1.5x of empty), "" (shown only)
    call: Callable[[TaskStore, Targets], Callable[[], object]]
    after: Callable[[TaskStore], Callable[[object], None]] | None = None


def by_time(
    engine: sa.Engine, column: str, after: dt.datetime | None, before: dt.datetime, status: str | None
) -> list[Any]:
    """A page of a list filtered by a time, as it could be: ordered by that time (keyset on (time, id), served
    by the (created_at, id) and (updated_at, id) indexes) instead of by id, which the planner cannot know
    follows the time."""
    time_column = tasks_table.c[column]
    query = sa.select(*console.LISTED).where(time_column < before)
    if after is not None:
        query = query.where(time_column >= after)
    if status is not None:
        query = query.where(tasks_table.c.status == status)
    query = query.order_by(time_column.desc(), tasks_table.c.id.desc()).limit(51)
    with engine.connect() as conn:
        return list(conn.execute(query))


def by_key_index(engine: sa.Engine, prefix: str) -> list[Any]:
    """A page of an entity-key prefix search as it could be: the matching rows found through the
    (entity_key, id) index and sorted, never a walk back from the newest task (``ORDER BY id + 0`` keeps
    the planner off the primary key's order, which it takes when it expects matches spread evenly over
    the ids; a key's tasks are not: they were made when the entity changed)."""
    query = (
        sa.select(*console.LISTED)
        .where(tasks_table.c.entity_key.like(prefix + "%"))
        .order_by((tasks_table.c.id + 0).desc())
        .limit(51)
    )
    with engine.connect() as conn:
        return list(conn.execute(query))


def measurements() -> list[Measurement]:
    found = [
        Measurement(
            "Tasks overview: route_figures", "page", lambda s, t: lambda: route_figures(s.engine, stuck_before())
        ),
        Measurement("Tasks overview page: route_rows", "page", lambda s, t: lambda: route_rows(s.engine, Catalog())),
        Measurement(
            "the overview's finished count, in the background every 30 s",
            "",
            lambda s, t: lambda: finished_counts.count(s.engine),
        ),
    ]
    if console is not None:
        F = console.TaskFilter

        def listing(filters: Any, before: Any = None) -> Callable[[TaskStore, Targets], Callable[[], object]]:
            return lambda s, t: lambda: console.list_tasks(s.engine, filters(t), before=before(t) if before else None)

        def counting(filters: Any) -> Callable[[TaskStore, Targets], Callable[[], object]]:
            return lambda s, t: lambda: console.count_tasks(s.engine, filters(t))

        day = dt.timedelta(days=1)
        cases: list[tuple[str, Callable[[Targets], Any], Any]] = [
            ("route + finished", lambda t: F(route=t.route, status="finished"), None),
            (
                "route + finished, deep keyset page",
                lambda t: F(route=t.route, status="finished"),
                lambda t: t.deep_before,
            ),
            ("route + failed", lambda t: F(route=t.route, status="failed"), None),
            ("will_retry, all routes", lambda t: F(status="will_retry"), None),
            ("no filter", lambda t: F(), None),
            ("entity key, exact", lambda t: F(entity_key=t.entity_key), None),
            ("entity key, prefix", lambda t: F(entity_key=t.key_prefix, prefix=True), None),
            ("entity key, wider prefix", lambda t: F(entity_key=t.wide_prefix, prefix=True), None),
            ("route + entity key prefix", lambda t: F(route=t.route, entity_key=t.key_prefix, prefix=True), None),
            (
                "created on a day 60 days ago",
                lambda t: F(created_after=t.day_start, created_before=t.day_start + day),
                None,
            ),
            ("created before 60 days ago", lambda t: F(created_before=t.day_start), None),
            (
                "updated on a day 60 days ago, finished",
                lambda t: F(status="finished", updated_after=t.day_start, updated_before=t.day_start + day),
                None,
            ),
        ]
        for name, filters, before in cases:
            found.append(Measurement(f"list: {name}", "page", listing(filters, before)))
            if before is None:
                found.append(Measurement(f"count: {name}", "page", counting(filters)))
        proposals: list[tuple[str, Callable[[Targets], tuple[str, Any, Any, Any]]]] = [
            ("created on a day 60 days ago", lambda t: ("created_at", t.day_start, t.day_start + day, None)),
            ("created before 60 days ago", lambda t: ("created_at", None, t.day_start, None)),
            (
                "updated on a day 60 days ago, finished",
                lambda t: ("updated_at", t.day_start, t.day_start + day, "finished"),
            ),
        ]
        for name, prefix in (("entity key, prefix", "key_prefix"), ("entity key, wider prefix", "wide_prefix")):
            found.append(
                Measurement(
                    f"proposal, through the key index: {name}",
                    "",
                    lambda s, t, prefix=prefix: lambda: by_key_index(s.engine, getattr(t, prefix)),  # type: ignore[misc]
                )
            )
        for name, arguments in proposals:
            found.append(
                Measurement(
                    f"proposal, ordered by the time: {name}",
                    "",
                    lambda s, t, arguments=arguments: lambda: by_time(s.engine, *arguments(t)),  # type: ignore[misc]
                )
            )
        found += [
            Measurement(
                "task page: task_detail + task_history",
                "page",
                lambda s, t: lambda: (task_detail(s.engine, t.task_id), console.task_history(s.engine, t.task_id)),
            ),
            Measurement(
                "entity page: entity_view (200 of 250 tasks)",
                "page",
                lambda s, t: lambda: console.entity_view(s.engine, t.hot_route, t.hot_key),
            ),
        ]
    found.append(
        Measurement(
            "claim of 100",
            "claim",
            lambda s, t: lambda: s.claim(t.claim_route, 100, claimed_by=EXPORT_ACTOR),
            after=put_back,
        )
    )
    return found


# -- what the new indexes cost the writers ----------------------------------------------------------

NEW_INDEXES = (
    "ix_scheduled_jobs_task_entity_key_id",
    "ix_scheduled_jobs_task_created_at_id",
    "ix_scheduled_jobs_task_updated_at_id",
    "ix_scheduled_jobs_task_unfinished",
)
"""Migration 0005's indexes on the task table: every insert, and every claim and settle, also writes them."""


@dataclass
class WriteCost:
    label: str
    ingest: Timing
    export: Timing


def write_costs(store: TaskStore, label: str, repeat: int) -> WriteCost:
    """Ingest 1,000 new entities, then claim 100 of them and settle them (with their events), ``repeat`` times."""
    route, ingest, export = "bench-write", [], []
    for _ in range(repeat):
        batch = uuid.uuid4().hex[:8]
        records = [(f"W-{batch}-{n:04d}", {"id": n, "batch": batch, "name": f"entity {n}"}) for n in range(1000)]
        started = time.perf_counter()
        store.add_entities([route], records, created_by=EXPORT_ACTOR)
        ingest.append(time.perf_counter() - started)
        started = time.perf_counter()
        claimed = store.claim(route, 100, claimed_by=EXPORT_ACTOR)
        store.settle(claimed[0].claim_token, [t.id for t in claimed], [], actor=EXPORT_ACTOR)
        export.append(time.perf_counter() - started)
    return WriteCost(label, Timing(ingest), Timing(export))


def index_cost(url: sa.URL, repeat: int, say: Callable[[str], None]) -> list[WriteCost]:
    """The writers with migration 0005's indexes, without them (dropped), and with them again (rebuilt)."""
    store = TaskStore.from_url(url)
    found = [write_costs(store, "with 0005's indexes", repeat)]
    with psycopg_connect(url) as conn:
        definitions = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)", (list(NEW_INDEXES),)
        ).fetchall()
        assert len(definitions) == len(NEW_INDEXES), definitions
        for name, _ in definitions:
            conn.execute(f"DROP INDEX {name}")
        try:
            found.append(write_costs(store, "without them (0004)", repeat))
        finally:
            started = time.perf_counter()
            for _, definition in definitions:
                conn.execute(definition)
            say(f"  0005's indexes rebuilt in {time.perf_counter() - started:.1f} s")
    found.append(write_costs(store, "with them again", repeat))
    store.engine.dispose()
    for cost in found:
        say(
            f"  {cost.label}: ingest of 1,000 {cost.ingest.median:.1f} ms, claim + settle of 100 {cost.export.median:.1f} ms"
        )
    return found


# -- the pages, over HTTP -----------------------------------------------------------------------

PAGES: list[tuple[str, Callable[[Targets], str]]] = [
    ("Tasks overview", lambda t: "/tasks"),
    ("task list: route + finished", lambda t: "/tasks/list?" + urlencode({"route": t.route, "status": "finished"})),
    (
        "task list: route + finished, deep keyset page",
        lambda t: "/tasks/list?" + urlencode({"route": t.route, "status": "finished", "before": t.deep_before}),
    ),
    ("task list: route + failed", lambda t: "/tasks/list?" + urlencode({"route": t.route, "status": "failed"})),
    ("task list: will_retry, all routes", lambda t: "/tasks/list?status=will_retry"),
    ("task list: no filter", lambda t: "/tasks/list"),
    ("task list: entity key, exact", lambda t: "/tasks/list?" + urlencode({"entity_key": t.entity_key})),
    (
        "task list: entity key, prefix",
        lambda t: "/tasks/list?" + urlencode({"entity_key": t.key_prefix, "prefix": "true"}),
    ),
    (
        "task list: created on a day 60 days ago",
        lambda t: (
            "/tasks/list?"
            + urlencode(
                {
                    "created_after": t.day_start.isoformat(),
                    "created_before": (t.day_start + dt.timedelta(days=1)).isoformat(),
                }
            )
        ),
    ),
    ("task's page (payload, history)", lambda t: f"/tasks/{t.task_id}"),
    (
        "entity's page (200 of 250 tasks)",
        lambda t: "/entity?" + urlencode({"route": t.hot_route, "entity_key": t.hot_key}),
    ),
    (
        'JSON: count for "everything matching", route + finished',
        lambda t: "/api/tasks/count?" + urlencode({"route": t.route, "status": "finished"}),
    ),
]


def airflow_client() -> tuple[Any, dict[str, str]]:
    """Airflow's own API app, the plugin mounted, in process; and an admin's bearer token."""
    for folder in ("job_definitions", "configurations"):
        (HOME / folder).mkdir(exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    return client, {"Authorization": f"Bearer {token}"}


def use_store(url: sa.URL) -> None:
    """The pages' store: the Airflow connection ``scheduled_jobs_store`` (its hook keeps one engine per URL)."""
    os.environ["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"] = url.set(drivername="postgresql").render_as_string(
        hide_password=False
    )


def page_timings(
    urls: dict[str, sa.URL], targets: dict[str, Targets], repeat: int, say: Callable[[str], None]
) -> list[tuple[str, Timing, Timing]]:
    client, headers = airflow_client()
    found = []
    for name, path in PAGES:
        timing = {}
        for label in ("empty", "full"):
            use_store(urls[label])
            address = "/scheduled-jobs" + path(targets[label])

            def get(address: str = address) -> None:
                answer = client.get(address, headers=headers)
                assert answer.status_code == 200, (address, answer.status_code, answer.text[:300])

            timing[label] = timed(get, repeat)
        found.append((name, timing["empty"], timing["full"]))
        say(f"  {name}: empty {timing['empty'].median:.1f} ms, full {timing['full'].median:.1f} ms")
    return found


# -- prune under load ---------------------------------------------------------------------------


class NullPublisher(Publisher[Any]):
    """Delivers nothing, at once: the export waits only for the store."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]

    def publish(self, task: Any) -> int:
        return 200


class ClaimTimes(TaskStore):
    """The store, with each claim timed and each failing claim counted."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.seconds: list[float] = []
        self.errors: list[str] = []

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().claim(*args, **kwargs)
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            self.seconds.append(time.perf_counter() - started)


def seed_export_route(store: TaskStore, count: int) -> None:
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scheduled_jobs_task (route, entity_key, content_hash, payload, status, attempts, "
                "created_at, updated_at) SELECT :route, 'EXP-' || lpad(n::text, 7, '0'), md5(n::text) || md5(n::text), "
                "'{\"id\":' || n || ',\"name\":\"export benchmark\"}', 'new', 0, :now, :now "
                "FROM generate_series(1, :count) AS n"
            ),
            {"route": EXPORT_ROUTE, "now": now, "count": count},
        )
        conn.execute(sa.text("ANALYZE scheduled_jobs_task"))


def renew_export_route(store: TaskStore) -> None:
    """The export route's tasks "new" again, for the next round (not timed)."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE scheduled_jobs_task SET status = 'new', claim_token = NULL, claimed_at = NULL, attempts = 0 "
                "WHERE route = :route AND status <> 'new'"
            ),
            {"route": EXPORT_ROUTE},
        )


@dataclass
class ExportRun:
    exported: int = 0
    seconds: float = 0.0
    lost_claims: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.exported / self.seconds if self.seconds else 0.0


def export_while(store: ClaimTimes, keep_going: Callable[[], bool], run: ExportRun) -> None:
    """Export the route in runs of ``EXPORT_RUN`` tasks while ``keep_going()``; its tasks renewed (untimed) when none is left."""
    while keep_going():
        started = time.perf_counter()
        try:
            result = export_route(store, NullPublisher(), EXPORT_ROUTE, limit=EXPORT_RUN, actor=EXPORT_ACTOR)
        except Exception as exc:
            run.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            run.seconds += time.perf_counter() - started
            continue
        run.seconds += time.perf_counter() - started
        run.exported += result.exported
        run.lost_claims += result.lost_claims
        if result.left == 0:
            renew_export_route(store)


@dataclass
class PruneReport:
    seconds: float
    tasks_deleted: int
    events_deleted: int
    batches: int
    expected: int
    left_over: int
    entities_before: int
    entities_after: int
    baseline: ExportRun
    during: ExportRun
    after: ExportRun
    claims_before: Timing
    claims_during: Timing
    claim_errors: list[str]


def prunable(store: TaskStore, older_than: dt.datetime) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM scheduled_jobs_task t WHERE t.status IN ('finished', 'skipped') "
                    "AND t.updated_at < :cut AND EXISTS (SELECT 1 FROM scheduled_jobs_task n "
                    "WHERE n.route = t.route AND n.entity_key = t.entity_key AND n.id > t.id)"
                ),
                {"cut": older_than},
            ).scalar_one()
        )


def entity_count(store: TaskStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM scheduled_jobs_entity")).scalar_one())


def prune_under_load(url: sa.URL, baseline_seconds: float, say: Callable[[str], None]) -> PruneReport:
    store = ClaimTimes(TaskStore.from_url(url).engine)
    seed_export_route(store, EXPORT_TASKS)
    older_than = utcnow() - RETENTION
    expected = prunable(store, older_than)
    entities_before = entity_count(store)
    say(
        f"  {expected:,} tasks are older than {RETENTION.days} days, finished or skipped, and not their entity's newest"
    )

    def alone() -> ExportRun:
        run = ExportRun()
        until = time.monotonic() + baseline_seconds
        export_while(store, lambda: time.monotonic() < until or run.exported == 0, run)
        say(f"  export alone: {run.exported:,} tasks in {run.seconds:.1f} s = {run.rate:,.0f}/s")
        return run

    baseline = alone()
    claims_before, store.seconds = store.seconds, []

    during = ExportRun()
    pruning = threading.Event()
    pruning.set()
    exporter = threading.Thread(target=export_while, args=(store, pruning.is_set, during), name="bench-export")
    exporter.start()
    time.sleep(0.5)  # the export is under way before prune starts
    pruner = sa.create_engine(url)  # as the prune job: a process, and so an engine, of its own
    started = time.perf_counter()
    try:
        result = console.prune_tasks(pruner, older_than)
    finally:
        seconds = time.perf_counter() - started
        pruning.clear()
        exporter.join()
        pruner.dispose()
    claims_during, store.seconds = store.seconds, []
    say(
        f"  prune: {result.tasks_deleted:,} tasks, {result.events_deleted:,} events in {seconds:.1f} s; "
        f"export meanwhile {during.exported:,} tasks in {during.seconds:.1f} s = {during.rate:,.0f}/s"
    )
    after = alone()  # the machine is shared: the export alone once more, after, for a fair reference
    return PruneReport(
        seconds=seconds,
        tasks_deleted=result.tasks_deleted,
        events_deleted=result.events_deleted,
        batches=result.batches,
        expected=expected,
        left_over=prunable(store, older_than),
        entities_before=entities_before,
        entities_after=entity_count(store),
        baseline=baseline,
        during=during,
        after=after,
        claims_before=Timing(claims_before),
        claims_during=Timing(claims_during),
        claim_errors=store.errors + during.failures + baseline.failures + after.failures,
    )


# -- the run --------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f}"


def server_version(url: sa.URL) -> str:
    with psycopg_connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def table_sizes(url: sa.URL) -> str:
    with psycopg_connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relname = ANY(%s) ORDER BY 1",
            (list(LOADED),),
        ).fetchall()
    return ", ".join(f"{name} {size}" for name, size in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, help="default: 3 per task")
    parser.add_argument("--routes", type=int, default=20)
    parser.add_argument(
        "--new", type=int, help="new tasks in all, the newest of each route (default: 1 %%, at least 120 a route)"
    )
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--server", default=SERVER, help="a database URL on the server; the two databases are made beside it"
    )
    parser.add_argument("--keep", action="store_true", help="keep both databases")
    parser.add_argument("--reuse", action="store_true", help="measure a kept FULL database of the same shape again")
    parser.add_argument(
        "--no-prune", action="store_true", help="skip prune under load (the FULL store stays as filled)"
    )
    parser.add_argument("--export-seconds", type=float, default=10.0, help="the export alone, for its rate")
    parser.add_argument("--no-pages", action="store_true", help="skip the pages over HTTP (Airflow's app)")
    parser.add_argument("--no-index-cost", action="store_true", help="skip the writers with and without 0005's indexes")
    args = parser.parse_args()
    say = lambda text: print(text, flush=True)  # noqa: E731
    logging.getLogger("alembic").setLevel(logging.WARNING)
    server = sa.make_url(args.server)
    now = utcnow()
    new_per_route = max(120, (args.new if args.new is not None else args.tasks // 100) // args.routes)
    full_shape = Shape(args.tasks, args.routes, new_per_route, args.events or 3 * args.tasks, now)
    empty_shape = Shape(8_000, args.routes, 120, 24_000, now)

    say(f"machine: {machine()}; {server_version(server)}")
    started = time.perf_counter()
    if args.reuse and database_tag(server, FULL_DB) == shape_tag(full_shape):
        full_url = server.set(database=FULL_DB)
        TaskStore.from_url(full_url).engine.dispose()  # a new migration, if any, runs here
        say(f"FULL: reusing {FULL_DB} ({shape_tag(full_shape)}), migrated in {time.perf_counter() - started:.1f} s")
    else:
        say(
            f"FULL: filling {FULL_DB}: {full_shape.tasks:,} tasks, {full_shape.events:,} events, {full_shape.routes} routes"
        )
        full_url = create_database(server, FULL_DB)
        timings = fill(full_url, full_shape, say)
        say("  " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    say(f"  {table_sizes(full_url)}")
    empty_url = create_database(server, EMPTY_DB)
    fill(empty_url, empty_shape, lambda _: None)
    say(f"EMPTY: {EMPTY_DB}: {empty_shape.tasks:,} tasks, {empty_shape.events:,} events")

    stores = {"empty": TaskStore.from_url(empty_url), "full": TaskStore.from_url(full_url)}
    targets = {"empty": find_targets(stores["empty"], empty_shape), "full": find_targets(stores["full"], full_shape)}
    say(f"  targets (full): {targets['full']}")
    results: list[tuple[Measurement, Timing, Timing]] = []
    for measurement in measurements():
        timing = timed_alternately(
            {
                label: (
                    measurement.call(stores[label], targets[label]),
                    measurement.after(stores[label]) if measurement.after else None,
                )
                for label in ("empty", "full")
            },
            args.repeat,
        )
        results.append((measurement, timing["empty"], timing["full"]))
        say(f"  {measurement.name}: empty {timing['empty'].median:.1f} ms, full {timing['full'].median:.1f} ms")

    pages: list[tuple[str, Timing, Timing]] = []
    if not args.no_pages:
        say("the pages over HTTP, through Airflow's API app")
        pages = page_timings({"empty": empty_url, "full": full_url}, targets, args.repeat, say)

    costs: list[WriteCost] = []
    if not args.no_index_cost:
        say("what 0005's indexes cost the writers (FULL)")
        costs = index_cost(full_url, max(10, args.repeat // 2), say)

    report = None
    if not args.no_prune and console is not None:
        say("prune under load (FULL)")
        with psycopg_connect(server) as conn:
            conn.execute(f'COMMENT ON DATABASE "{FULL_DB}" IS NULL')  # no longer the shape it was filled with
        report = prune_under_load(full_url, args.export_seconds, say)
    for store in stores.values():
        store.engine.dispose()
    print_report(results, pages, costs, report, args, time.perf_counter() - started)
    if not args.keep:
        drop_database(server, EMPTY_DB)
        drop_database(server, FULL_DB)


def print_report(
    results: list[tuple[Measurement, Timing, Timing]],
    pages: list[tuple[str, Timing, Timing]],
    costs: list[WriteCost],
    report: PruneReport | None,
    args: Any,
    seconds: float,
) -> None:
    if pages:
        print()
        print(f"| page over HTTP (median / p95 of {args.repeat}) | empty store | {args.tasks:,} tasks | goal |")
        print("|---|---|---|---|")
        for name, empty, full in pages:
            verdict = f"< {PAGE_GOAL_MS:.0f} ms: {'met' if full.median < PAGE_GOAL_MS else '**missed**'}"
            print(
                f"| {name} | {empty.median:.1f} / {empty.p95:.1f} ms | {full.median:.1f} / {full.p95:.1f} ms | {verdict} |"
            )
    print()
    print(f"| measurement (median / p95 of {args.repeat}) | empty store | {args.tasks:,} tasks | full/empty | goal |")
    print("|---|---|---|---|---|")
    for measurement, empty, full in results:
        ratio = full.median / empty.median if empty.median else float("inf")
        if measurement.goal == "page":
            verdict = f"< {PAGE_GOAL_MS:.0f} ms: {'met' if full.median < PAGE_GOAL_MS else '**missed**'}"
        elif measurement.goal == "claim":
            verdict = f"≤ {CLAIM_GOAL}x: {'met' if ratio <= CLAIM_GOAL else '**missed**'}"
        else:
            verdict = ""
        print(
            f"| {measurement.name} | {empty.median:.1f} / {empty.p95:.1f} ms | {full.median:.1f} / {full.p95:.1f} ms "
            f"| {ratio:.2f}x | {verdict} |"
        )
    if costs:
        print()
        print(
            f"| writers, {args.tasks:,} tasks (median / p95 of {len(costs[0].ingest.samples)}) | ingest of 1,000 | claim + settle of 100 |"
        )
        print("|---|---|---|")
        for cost in costs:
            print(
                f"| {cost.label} | {cost.ingest.median:.1f} / {cost.ingest.p95:.1f} ms "
                f"| {cost.export.median:.1f} / {cost.export.p95:.1f} ms |"
            )
    if report is not None:
        reference = (report.baseline.rate + report.after.rate) / 2
        slowdown = reference / report.during.rate if report.during.rate else float("inf")
        print()
        print("| prune under load | |")
        print("|---|---|")
        print(
            f"| tasks deleted (expected) | {report.tasks_deleted:,} ({report.expected:,}); left over: {report.left_over:,} |"
        )
        print(f"| events deleted | {report.events_deleted:,} |")
        print(
            f"| prune time | {report.seconds:.1f} s, {report.batches} batches, {report.tasks_deleted / report.seconds:,.0f} tasks/s |"
        )
        print(f"| entity rows before / after | {report.entities_before:,} / {report.entities_after:,} |")
        print(
            f"| export alone, before / after prune | {report.baseline.rate:,.0f} / {report.after.rate:,.0f} tasks/s "
            f"({report.baseline.exported:,} in {report.baseline.seconds:.1f} s / {report.after.exported:,} in {report.after.seconds:.1f} s) |"
        )
        print(
            f"| export during prune | {report.during.rate:,.0f} tasks/s ({report.during.exported:,} in {report.during.seconds:.1f} s) |"
        )
        print(
            f"| export slowed by (vs the mean of before and after) | {slowdown:.2f}x (goal ≤ {EXPORT_SLOWDOWN_GOAL}x: {'met' if slowdown <= EXPORT_SLOWDOWN_GOAL else '**missed**'}) |"
        )
        print(
            f"| claim of 100 alone / during prune (median, p95) | {report.claims_before.median:.1f}, {report.claims_before.p95:.1f} ms"
            f" / {report.claims_during.median:.1f}, {report.claims_during.p95:.1f} ms |"
        )
        print(
            f"| claim errors / lost claims | {len(report.claim_errors)} / {report.during.lost_claims + report.baseline.lost_claims + report.after.lost_claims} |"
        )
        for error in report.claim_errors[:5]:
            print(f"  error: {error}")
    print(f"\nwhole run: {seconds:.0f} s; {machine()}")


if __name__ == "__main__":
    main()
