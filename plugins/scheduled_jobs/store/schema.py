"""Tables of the task store. Changes go through a new Alembic revision in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
_ID = BigInteger().with_variant(Integer(), "sqlite")

tasks = Table(
    "scheduled_jobs_task",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("route", String(200), nullable=False),
    Column("entity_key", String(500), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("claimed_at", DateTime, nullable=True),
    Column("claim_token", String(36), nullable=True),
    Column("last_error", Text, nullable=True),
    # A failure the destination may get over (timeout, 5xx, 429): retried on a later run when the route says so.
    Column("retryable", Boolean, nullable=False, server_default=false()),
    # Who made the task and who holds (or last held) its claim: an ``Actor`` as compact JSON
    # (``models/tasks.py``). Columns, not events: ingest stays one insert per batch.
    Column("created_by", Text, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Index("ix_scheduled_jobs_task_route_status_id", "route", "status", "id"),
    Index("ix_scheduled_jobs_task_status_claimed_at", "status", "claimed_at"),
    Index("ix_scheduled_jobs_task_route_entity_key_id", "route", "entity_key", "id"),
    # Migration 0005, for the console at production size (bench/store_scale.py): an entity-key search
    # without a route (exact, or a prefix: pattern_ops lets PostgreSQL serve LIKE under any collation)
    # and time-range filters.
    Index(
        "ix_scheduled_jobs_task_entity_key_id",
        "entity_key",
        "id",
        postgresql_ops={"entity_key": "varchar_pattern_ops"},
    ),
    Index("ix_scheduled_jobs_task_created_at_id", "created_at", "id"),
    Index("ix_scheduled_jobs_task_updated_at_id", "updated_at", "id"),
    # The Tasks overview's counts and oldest new task per route, without reading the finished tasks.
    Index(
        "ix_scheduled_jobs_task_unfinished",
        "route",
        "status",
        "created_at",
        postgresql_where=text("status <> 'finished'"),
        sqlite_where=text("status <> 'finished'"),
    ),
)

# A task's history after it was made: each export attempt (its outcome, status code, duration,
# idempotency key), repairs, requeues by retry_failed_tasks, and what users did (retry, skip).
# Deleted with its task (by a user's delete or by prune).
task_events = Table(
    "scheduled_jobs_task_event",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("task_id", _ID, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("actor", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_scheduled_jobs_task_event_task_id_id", "task_id", "id"),
)

# What each guarded job run did, for the Processes page's history: written by the job's work task
# when it starts and when it ends.
job_runs = Table(
    "scheduled_jobs_job_run",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("configuration", String(250), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime, nullable=True),
    Column("state", String(16), nullable=False),
    Column("figures", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_scheduled_jobs_job_run_configuration_id", "configuration", "id"),
)

# The last content seen per entity and route: the rule that keeps re-imports from duplicating tasks.
entities = Table(
    "scheduled_jobs_entity",
    metadata,
    Column("route", String(200), primary_key=True),
    Column("entity_key", String(500), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# What a subscriber keeps between runs, e.g. the last value of a SQL watermark column (as typed JSON).
watermarks = Table(
    "scheduled_jobs_watermark",
    metadata,
    Column("incoming_configuration", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# The process ledger: per configuration at most one run executing and one waiting, enforced by the
# database (a unique key), so concurrent runs cannot both win.
processes = Table(
    "scheduled_jobs_process",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("configuration", String(250), nullable=False),
    Column("slot", String(10), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    Column("lease_expires_at", DateTime, nullable=False),
    UniqueConstraint("configuration", "slot", name="uq_scheduled_jobs_process_configuration_slot"),
)

skipped_runs = Table(
    "scheduled_jobs_skipped_run",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("configuration", String(250), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("duplicate_of_dag_id", String(250), nullable=False),
    Column("duplicate_of_run_id", String(250), nullable=False),
    Column("reason", Text, nullable=False),
    Column("skipped_at", DateTime, nullable=False),
)

VERSION_TABLE = "scheduled_jobs_alembic_version"
