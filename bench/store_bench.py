"""What the store benchmarks share: their common arguments, an emptied store, a loopback server in a process of its own.

Import it after the script has put ``plugins`` on ``sys.path`` and chosen an AIRFLOW_HOME.
"""

from __future__ import annotations

import multiprocessing
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator


def parse_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The script's own arguments, and ``--store`` (PostgreSQL by default) and ``--repeat`` (best of N)."""
    parser.add_argument("--store", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def emptied_store(url: str) -> TaskStore:
    """The store at ``url`` without tasks or entities: every round starts from the same state (on PostgreSQL
    by TRUNCATE: no dead rows or grown indexes left by the round before)."""
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity RESTART IDENTITY"))
        else:
            conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
            conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))
    return store


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database on the PostgreSQL server of ``server_url`` (its URL), dropped on the way out: a
    benchmark never measures the tables other runs and tests left behind."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def serve_in_process(serve: Callable[..., None], *args: Any, timeout: float) -> tuple[multiprocessing.Process, int]:
    """``serve(*args, ports)`` in a daemon process (not sharing the client's interpreter lock); it and its port.

    ``serve`` puts the port it listens on into ``ports`` and then serves until terminated.
    """
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(*args, ports), daemon=True)
    process.start()
    return process, ports.get(timeout=timeout)
