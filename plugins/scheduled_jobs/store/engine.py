"""Reaching the store: the Airflow connection ``scheduled_jobs_store``, else an SQLite file.

SQLite gets ``BEGIN IMMEDIATE`` for every transaction and a busy timeout: writers queue for the lock
instead of failing with "database is locked" half-way through a transaction.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError

from scheduled_jobs import settings
from scheduled_jobs.connections import sqlalchemy_url
from scheduled_jobs.store.schema import VERSION_TABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

SQLITE_BUSY_TIMEOUT_SECONDS = 60
_MIGRATIONS = Path(__file__).parent / "migrations"
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _forget_parents_lock() -> None:
    """In a forked child: a new lock, since another thread of the parent may have held this one at the fork
    (the child would wait for it forever)."""
    global _migrate_lock  # noqa: PLW0603 (one lock per process, replaced only at a fork)
    _migrate_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parents_lock)


def url_from_airflow(conn_id: str | None = None) -> URL:
    """The store's URL from its Airflow connection (``[scheduled_jobs] store_conn_id`` unless given), or the
    default SQLite file when that connection does not exist."""
    from scheduled_jobs.compat import AirflowNotFoundException

    try:
        return sqlalchemy_url(conn_id or settings.store_conn_id())
    except AirflowNotFoundException:
        path = settings.default_store_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite", database=str(path))


def _sqlite_transactions(engine: Engine) -> None:
    """Take SQLite's write lock at BEGIN, so a transaction never fails half-way on a lock upgrade."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_store_engine(url: URL | str, *, check_schema: bool = True) -> Engine:
    """An engine for the store at ``url``; with ``check_schema``, one whose schema is this code's (``migrate``)."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        _sqlite_transactions(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if check_schema:
        migrate(engine)
    return engine


HEAD_REVISION = "0005"
"""The schema revision this code needs: the newest file in migrations/versions (a test keeps the two equal)."""
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", HEAD_REVISION)
_VERSION_QUERY = text(f"SELECT version_num FROM {VERSION_TABLE}")  # a constant of ours


def where(engine: Engine) -> str:
    """The store's URL as an error may show it: the password as ***."""
    return engine.url.render_as_string(hide_password=True)


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, or None for a store that has none yet (an empty database): one query."""
    with engine.connect() as connection:
        try:
            return connection.execute(_VERSION_QUERY).scalar()
        except DBAPIError:
            connection.rollback()  # PostgreSQL: the failed statement aborted the transaction
            if _has_version_table(connection):
                raise  # a refused login, a server gone: not ours to hide
            return None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to ``HEAD_REVISION`` with Alembic (``scheduled-jobs db upgrade``): (before, after)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Two workers starting at once on a new database: one migrates, the other waits.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('scheduled_jobs_migrate'))"))
        before = connection.execute(_VERSION_QUERY).scalar() if _has_version_table(connection) else None
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, HEAD_REVISION


def _has_version_table(connection: Connection) -> bool:
    return inspect(connection).has_table(VERSION_TABLE)


def schema_problem(revision: str | None, engine: Engine) -> str | None:
    """Why a store at ``revision`` cannot be used by this code as it is, or None when it can."""
    if revision == HEAD_REVISION:
        return None
    if revision is None:
        return f"the task store at {where(engine)} has no schema yet: run `scheduled-jobs db upgrade`"
    if revision in KNOWN_REVISIONS:
        return (
            f"the task store at {where(engine)} has schema revision {revision}, older than this version of "
            f"airflow-scheduled-jobs needs ({HEAD_REVISION}): run `scheduled-jobs db upgrade` "
            f"(or set [scheduled_jobs] store_auto_migrate = true)"
        )
    return (
        f"the task store at {where(engine)} has schema revision {revision!r}, which this version of "
        f"airflow-scheduled-jobs does not know (it knows up to {HEAD_REVISION}): a newer version migrated it; "
        f"install that version here too"
    )


def migrate(engine: Engine) -> None:
    """Make sure the schema is the one this code needs, once per process and database.

    At the newest revision (every start but the first): one query. An empty store is created here, so a first
    start needs no step of its own; an older one is upgraded only with ``[scheduled_jobs] store_auto_migrate``,
    else refused with the command to run, since a deployment migrates once (``scheduled-jobs db upgrade``) and
    not from every worker at once.
    """
    key = where(engine)
    with _migrate_lock:
        if key in _migrated:
            return
        revision = current_revision(engine)
        if revision != HEAD_REVISION:
            if revision is None or (revision in KNOWN_REVISIONS and settings.store_auto_migrate()):
                upgrade(engine)
            else:
                from scheduled_jobs.exceptions import StoreSchemaError

                raise StoreSchemaError(schema_problem(revision, engine))
        _migrated.add(key)
