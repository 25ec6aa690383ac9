"""A fresh PostgreSQL database of its own, for a test or a fixture, dropped when it is done."""

from __future__ import annotations

import contextlib
import uuid
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
