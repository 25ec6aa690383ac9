"""``TaskStoreHook``: the one way to the task store, one engine per process per connection.

Operators, the guard's trigger and the web pages each make a hook for the work at hand; the engine
behind it is shared, so a task, a trigger poll or a page request never pays for a new connection
pool or a migration check. The engines are kept here, keyed by the connection id and a keyed hash of the
resolved URL without its password: another host or database gets a new engine, and the old one is
disposed. A new password (rotated, or an IAM token that the postgres hook makes anew on every call) keeps
the engine: its next new connection logs in with the newest password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from sqlalchemy import event

from scheduled_jobs import settings
from scheduled_jobs.store.engine import create_store_engine, url_from_airflow
from scheduled_jobs.store.processes import ProcessLedger
from scheduled_jobs.store.tasks import TaskStore

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine


_DIGEST_KEY = secrets.token_bytes(32)
"""A key of this process's own: a digest that leaked could not be tried against guessed URLs elsewhere."""


def url_digest(url: URL) -> str:
    """A keyed hash (HMAC-SHA-256) of the URL without its password: where the store is, not how one logs in."""
    where = url.render_as_string(hide_password=True)  # the password as ***, whatever it is
    return hmac.new(_DIGEST_KEY, where.encode(), hashlib.sha256).hexdigest()


class EngineCache:
    """This process's engines, keyed by (connection id, ``url_digest``): never the URL in clear."""

    def __init__(self) -> None:
        self.engines: dict[tuple[str, str], Engine] = {}
        self._passwords: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def engine_for(self, conn_id: str, url: URL) -> Engine:
        """The engine for a connection at this URL; built (and migrated) on first use."""
        key = (conn_id, url_digest(url))
        with self._lock:
            # The newest password: the engine's next new connection logs in with it.
            self._passwords[key] = url.password
            engine = self.engines.get(key)
            if engine is None:
                # Under the lock: threads asking at once share one engine, and one migration check.
                engine = create_store_engine(url)
                self._log_in_with_newest_password(engine, key)
                for stale in [k for k in self.engines if k[0] == conn_id]:
                    # The connection moved: in-flight work on the old engine finishes, its pool closes.
                    self.engines.pop(stale).dispose()
                    self._passwords.pop(stale, None)
                self.engines[key] = engine
            return engine

    def _log_in_with_newest_password(self, engine: Engine, key: tuple[str, str]) -> None:
        @event.listens_for(engine, "do_connect")
        def _newest_password(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
            password = self._passwords.get(key)
            if password is not None and "password" in params:
                params["password"] = password

    def forget_parents_engines(self) -> None:
        """In a forked child: never touch the parent's pooled connections (SQLAlchemy, "Using Connection
        Pools with Multiprocessing"). ``dispose(close=False)`` drops them without closing the parent's
        sockets; the child builds its own engines on first use. A new lock too: another thread of the
        parent may have held this one at the fork."""
        self._lock = threading.Lock()
        self._passwords.clear()
        for engine in self.engines.values():
            engine.dispose(close=False)
        self.engines.clear()


engines = EngineCache()
os.register_at_fork(after_in_child=engines.forget_parents_engines)


class TaskStoreHook(BaseHook):
    """The task store behind an Airflow connection (``[scheduled_jobs] store_conn_id``), or the default
    SQLite file in ``AIRFLOW_HOME`` when that connection does not exist.

    The connection may be a ``postgres`` one (or any type whose hook has a SQLAlchemy URL) or a
    ``sqlite`` one whose host is the database file.
    """

    conn_name_attr = "store_conn_id"
    default_conn_name = settings.DEFAULT_STORE_CONN_ID
    # The store is reached through an ordinary postgres (or sqlite) connection: no type of its own.
    conn_type = "postgres"
    hook_name = "Scheduled jobs task store"

    def __init__(self, store_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id or settings.store_conn_id()

    @cached_property
    def url(self) -> URL:
        """The connection resolved once per hook, so once per task phase, trigger run or page request.

        Not cached for the process: a secrets-backend lookup is cheap next to the work a hook serves,
        and a changed connection (a rotated password, another database) is then seen by the next task
        or request, as every ``[scheduled_jobs]`` setting is, without restarting a worker or the API
        server.
        """
        return url_from_airflow(self.store_conn_id)

    def get_engine(self) -> Engine:
        return engines.engine_for(self.store_conn_id, self.url)

    def get_conn(self) -> Engine:
        return self.get_engine()

    def get_store(self) -> TaskStore:
        return TaskStore(self.get_engine())

    def get_ledger(self) -> ProcessLedger:
        return ProcessLedger(self.get_engine())
