"""Reaching the store: the Airflow connection ``scheduled_jobs_store``, else an SQLite file.

SQLite gets ``BEGIN IMMEDIATE`` for every transaction and a busy timeout: writers queue for the lock
instead of failing with "database is locked" half-way through a transaction.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url

from scheduled_jobs import settings
from scheduled_jobs.connections import sqlalchemy_url

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
    from airflow.sdk.exceptions import AirflowNotFoundException

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


def create_store_engine(url: URL | str) -> Engine:
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        _sqlite_transactions(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, once per process and database."""
    from alembic import command
    from alembic.config import Config

    key = engine.url.render_as_string(hide_password=True)
    with _migrate_lock:
        if key in _migrated:
            return
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Two workers starting at once on a new database: one migrates, the other waits.
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('scheduled_jobs_migrate'))"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _migrated.add(key)
