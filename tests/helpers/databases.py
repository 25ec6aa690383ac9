"""A fresh PostgreSQL database of its own, for a test or a fixture, dropped when it is done; a task store at an
older schema revision."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[sa.URL]:
    """A new database named ``<prefix>_<random>`` on the server of ``server_url``; its URL.

    On the way out it is dropped WITH (FORCE): a process that still holds a connection (a stopped
    Airflow's last one) must not keep it alive.
    """
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(server_url).set(database=name)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def store_at_revision(url: str, revision: str) -> None:
    """Migrate the task store at ``url`` with the package's own Alembic scripts up to ``revision`` only: a store
    an older version of the package left behind."""
    from alembic import command
    from alembic.config import Config

    from scheduled_jobs.store import engine as store_engine

    config = Config()
    config.set_main_option("script_location", str(Path(store_engine.__file__).parent / "migrations"))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()
