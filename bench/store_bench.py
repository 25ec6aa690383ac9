"""What the store benchmarks share: their common arguments, an emptied store, a loopback server in a process of its own.

Import it after the script has put ``plugins`` on ``sys.path`` and chosen an AIRFLOW_HOME.
"""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable


def parse_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The script's own arguments, and ``--store`` (PostgreSQL by default) and ``--repeat`` (best of N)."""
    parser.add_argument("--store", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def emptied_store(url: str) -> TaskStore:
    """The store at ``url`` without tasks or entities: every round starts from the same state."""
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
        conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))
    return store


def serve_in_process(serve: Callable[..., None], *args: Any, timeout: float) -> tuple[multiprocessing.Process, int]:
    """``serve(*args, ports)`` in a daemon process (not sharing the client's interpreter lock); it and its port.

    ``serve`` puts the port it listens on into ``ports`` and then serves until terminated.
    """
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(*args, ports), daemon=True)
    process.start()
    return process, ports.get(timeout=timeout)
