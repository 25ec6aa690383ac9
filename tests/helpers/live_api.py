"""Airflow's own API server app (``create_app``), with the plugin's app mounted, served by uvicorn on
loopback in the test process; the fixtures ``server``, ``tokens``, ``client`` and ``any_store`` (in
conftest.py) are built from these.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx

from helpers.ports import free_port
from helpers.users import PASSWORDS
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

PREFIX = "/scheduled-jobs"


class Server:
    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the API server did not start within 30 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def token_for(server: Server, username: str, password: str | None = None) -> str:
    """A real token of ``username``, with the password of helpers.users unless another is given."""
    password = PASSWORDS[username] if password is None else password
    answer = httpx.post(f"{server.url}/auth/token", json={"username": username, "password": password}, timeout=10)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["access_token"]
    return token


def store_of(project: Path) -> TaskStore:
    """The task store of the ``project`` fixture (SQLite)."""
    return TaskStore.from_url(f"sqlite:///{project / 'store.db'}")
