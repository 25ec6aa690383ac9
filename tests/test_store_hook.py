"""TaskStoreHook: one engine per process per connection, on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from conftest import connection_json

from scheduled_jobs.store import Holder, TaskStoreHook
from scheduled_jobs.store.hook import engines
from scheduled_jobs.triggers.guard import GuardTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONN = "AIRFLOW_CONN_SCHEDULED_JOBS_STORE"
PASSWORD = "pw-that-must-never-be-a-cache-key"
ROUTE = "route:orders-to-erp"
RUNNING = Holder("nightly-erp-export", "scheduled__2026-11-24T02:00:00+00:00")
WAITER = Holder("manual-erp-export", "manual__2026-11-24T02:01:00+00:00")


@pytest.fixture(autouse=True)
def no_engines() -> Iterator[None]:
    """Each test starts and ends with no engine in this process's cache."""

    def clear() -> None:
        for engine in engines.engines.values():
            engine.dispose()
        engines.engines.clear()

    clear()
    yield
    clear()


def sqlite_connection(path: Path) -> str:
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store connection ``scheduled_jobs_store`` on SQLite, or on PostgreSQL with a password."""
    if request.param == "sqlite":
        monkeypatch.setenv(CONN, sqlite_connection(tmp_path / "store.db"))
    else:
        url = sa.make_url(request.getfixturevalue("postgres_server_url")).set(password=PASSWORD)
        # The server trusts loopback: the password is never checked, only there to be leaked.
        monkeypatch.setenv(CONN, connection_json(url.render_as_string(hide_password=False)))
    return str(request.param)


def test_two_hooks_on_one_connection_share_one_engine(backend: str) -> None:
    first, second = TaskStoreHook(), TaskStoreHook("scheduled_jobs_store")
    assert first.get_engine() is second.get_engine()
    assert first.get_store().engine is second.get_ledger().engine is first.get_conn()
    assert first.get_engine().dialect.name == backend
    ((conn_id, digest),) = engines.engines
    assert conn_id == "scheduled_jobs_store"
    assert len(digest) == 64  # a SHA-256, never the URL


def test_threads_asking_at_once_get_one_engine(backend: str) -> None:
    found: list[sa.Engine] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        found.append(TaskStoreHook().get_engine())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8
    assert len({id(engine) for engine in found}) == 1
    assert len(engines.engines) == 1


def test_the_password_is_in_no_cache_key(backend: str) -> None:
    engine = TaskStoreHook().get_engine()
    TaskStoreHook().get_store().counts()
    keys = json.dumps(list(engines.engines))
    assert PASSWORD not in keys
    assert engine.url.render_as_string(hide_password=False) not in keys
    if backend == "postgresql":
        assert engine.url.password == PASSWORD  # the engine has it; only the keys must not


def test_a_changed_connection_gets_a_new_engine_and_the_old_one_is_disposed(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = TaskStoreHook().get_engine()
    TaskStoreHook().get_store().add_entities(["r"], [("a", {})])
    old_pool = old.pool
    monkeypatch.setenv(CONN, sqlite_connection(tmp_path / "moved.db"))
    new = TaskStoreHook().get_engine()
    assert new is not old
    assert new.url.database == str(tmp_path / "moved.db")
    assert old.pool is not old_pool  # disposed: its pool was replaced
    assert list(engines.engines.values()) == [new]
    assert TaskStoreHook().get_store().counts("r")["new"] == 0  # the new store, migrated
    assert TaskStoreHook().get_engine() is new


def test_a_hook_resolves_its_connection_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN, sqlite_connection(tmp_path / "store.db"))
    hook = TaskStoreHook()
    engine = hook.get_engine()
    monkeypatch.setenv(CONN, sqlite_connection(tmp_path / "moved.db"))
    assert hook.get_engine() is engine  # the same hook: the same resolution
    assert TaskStoreHook().get_engine() is not engine  # a new hook sees the changed connection


def test_a_forked_child_gets_its_own_engine_and_leaves_the_parents_connections(backend: str) -> None:
    engine = TaskStoreHook().get_engine()
    backend_pid = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT 1"
    with engine.connect() as conn:
        parents = conn.execute(sa.text(backend_pid)).scalar_one()
        parents_dbapi = conn.connection.dbapi_connection
    reads, writes = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(reads)
        answer: dict[str, Any] = {}
        try:
            mine = TaskStoreHook().get_engine()
            with mine.connect() as conn:
                answer["own_engine"] = mine is not engine
                answer["cached"] = list(engines.engines.values()) == [mine]
                answer["backend"] = conn.execute(sa.text(backend_pid)).scalar_one()
            answer["counts"] = TaskStoreHook().get_store().counts()["new"]
        except BaseException as exc:
            answer["error"] = repr(exc)
        finally:
            os.write(writes, json.dumps(answer).encode())
            os._exit(0)
    os.close(writes)
    with os.fdopen(reads) as pipe:
        answer = json.loads(pipe.read() or "{}")
    os.waitpid(child, 0)
    assert answer.get("own_engine") and answer.get("cached"), answer
    assert isinstance(answer["counts"], int)  # the child's store answers
    if backend == "postgresql":
        assert answer["backend"] != parents  # its own server connection, not one from the parent's pool
    # The parent's pooled connection is still the one it had, and still works.
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is parents_dbapi
        assert conn.execute(sa.text(backend_pid)).scalar_one() == parents
    assert TaskStoreHook().get_engine() is engine


def test_without_the_connection_the_store_is_the_default_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__STORE_CONN_ID", "scheduled_jobs_store_absent")
    hook = TaskStoreHook()
    assert hook.store_conn_id == "scheduled_jobs_store_absent"
    hook.get_store().add_entities(["r"], [("a", {})])
    default = tmp_path / "home" / "scheduled_jobs_store.db"
    assert hook.get_engine().url.database == str(default)
    assert default.is_file()
    assert [conn_id for conn_id, _digest in engines.engines] == ["scheduled_jobs_store_absent"]


def test_the_guard_trigger_polls_on_the_cached_engine_and_leaves_it_open(backend: str) -> None:
    hook = TaskStoreHook()
    engine, ledger = hook.get_engine(), hook.get_ledger()
    with engine.begin() as conn:  # the PostgreSQL database is the session's: start from an empty ledger
        conn.execute(sa.text("DELETE FROM scheduled_jobs_process"))
    ledger.enter(ROUTE, RUNNING, dt.timedelta(hours=1))
    assert ledger.enter(ROUTE, WAITER, dt.timedelta(hours=1)).action == "wait"
    pool = engine.pool
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    trigger = GuardTrigger(
        configuration=ROUTE,
        dag_id=WAITER.dag_id,
        run_id=WAITER.run_id,
        store_conn_id="scheduled_jobs_store",
        lease_seconds=3600,
        poll_seconds=0.05,
    )

    async def wait_for_the_slot() -> list[Any]:
        events = trigger.run()
        first = asyncio.ensure_future(anext(events))
        started = time.monotonic()
        while sum(s.startswith("UPDATE") and "SET lease_expires_at" in s for s in statements) < 3:  # 3 polls
            assert time.monotonic() - started < 30, statements
            await asyncio.sleep(0.05)
        await asyncio.to_thread(ledger.leave, RUNNING)
        return [(await first).payload]

    try:
        events = asyncio.run(wait_for_the_slot())
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert events == [{"status": "running", "configuration": ROUTE}]
    assert list(engines.engines.values()) == [engine]  # every poll on the one engine
    assert engine.pool is pool  # not disposed: other triggers in the triggerer share it
    with engine.connect() as conn:
        held = conn.execute(sa.text("SELECT slot, run_id FROM scheduled_jobs_process")).all()
    assert [tuple(row) for row in held] == [("running", WAITER.run_id)]


@pytest.mark.postgres
def test_a_new_password_keeps_the_engine_and_new_connections_log_in_with_it(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotated password, or an IAM token the postgres hook makes anew on every call, is no new engine:
    disposing the pool in use by every other thread on each hook would break their work."""
    url = sa.make_url(postgres_server_url)
    monkeypatch.setenv(CONN, connection_json(url.set(password="first").render_as_string(hide_password=False)))
    engine = TaskStoreHook().get_engine()
    used: list[str | None] = []
    sa.event.listen(engine, "do_connect", lambda _d, _r, _a, params: used.append(params.get("password")))
    monkeypatch.setenv(CONN, connection_json(url.set(password="second").render_as_string(hide_password=False)))
    assert TaskStoreHook().get_engine() is engine
    assert len(engines.engines) == 1
    engine.dispose()  # the next connection is a new one
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert used == ["second"]


def test_a_child_forked_while_a_thread_migrates_is_not_locked_out(tmp_path: Path) -> None:
    """A thread of the parent holds the migration lock at the fork: the child must not wait for it forever."""
    import select

    from scheduled_jobs.store import engine as engine_module

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine_module._migrate_lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    reads, writes = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(reads)
        try:
            engine = engine_module.create_store_engine(f"sqlite:///{tmp_path / 'child.db'}")
            engine.dispose()
            os.write(writes, b"ok")
        finally:
            os._exit(0)
    os.close(writes)
    try:
        ready, _, _ = select.select([reads], [], [], 15)
        answer = os.read(reads, 10) if ready else b""
    finally:
        release.set()
        holder.join()
        os.close(reads)
        if not answer:
            os.kill(child, 9)
        os.waitpid(child, 0)
    assert answer == b"ok", "the child waited for a lock its parent's thread held at the fork"
