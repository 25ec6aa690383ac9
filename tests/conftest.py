"""Test set-up: a throw-away AIRFLOW_HOME with a migrated metadata database, and a copy of the project.

Airflow reads its configuration at import, so the environment is set here, before any test imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers.databases import fresh_database
from helpers.sink import Sink

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx
    from helpers.live_api import Server

    from scheduled_jobs.store import TaskStore

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="sj-airflow-home-"))
INSTALLED = os.environ.get("SCHEDULED_JOBS_TEST_INSTALLED", "") == "1"
"""The compatibility runs (scripts/compat.sh): the package is the built wheel installed into a fresh environment of
another Airflow, not this checkout's plugins/ folder, which is then neither on sys.path nor Airflow's plugins folder."""
_PLUGINS = _HOME / "plugins" if INSTALLED else ROOT / "plugins"
_PLUGINS.mkdir(exist_ok=True)
_BASE_ENV = {
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(_PLUGINS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
}
os.environ.update(_BASE_ENV)
for key in [k for k in os.environ if k.startswith(("AIRFLOW__SCHEDULED_JOBS__", "AIRFLOW_CONN_"))]:
    del os.environ[key]
if not INSTALLED and str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))
if INSTALLED:
    import scheduled_jobs

    assert not Path(scheduled_jobs.__file__).resolve().is_relative_to(ROOT / "plugins"), (
        f"SCHEDULED_JOBS_TEST_INSTALLED=1, but scheduled_jobs comes from this checkout: {scheduled_jobs.__file__}"
    )

POSTGRES_URL = os.environ.get("SCHEDULED_JOBS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
_postgres_skipped: list[str] = []


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def pytest_sessionstart(session: pytest.Session) -> None:
    result = subprocess.run([airflow_bin(), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _postgres_skipped:
        terminalreporter.section("PostgreSQL", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"PostgreSQL tests were SKIPPED ({len(_postgres_skipped)}): no server at {POSTGRES_URL}: {_postgres_skipped[0]}"
        )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; skipped (loudly) where no server answers.

    Under CI (CI=true) a missing server is a failure, not a skip: CI must run these tests.
    """
    import sqlalchemy as sa

    with contextlib.ExitStack() as database:
        try:
            url = database.enter_context(fresh_database(POSTGRES_URL, "sj_test"))
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0]
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI must run the PostgreSQL tests, but no server answers at {POSTGRES_URL}: {reason}")
            _postgres_skipped.append(reason)
            pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {reason}")
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def airflow_metadata_url(postgres_server_url: str) -> Iterator[str]:
    """Airflow's metadata database for a test that starts a real scheduler: a fresh PostgreSQL database of
    its own (dropped after the test), as ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``. SQLite locks under load."""
    with fresh_database(postgres_server_url, "sj_meta") as url:
        yield url.render_as_string(hide_password=False)


def connection_json(url: str) -> str:
    """An Airflow connection (JSON form) for a SQLAlchemy PostgreSQL URL."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    connection = {
        "conn_type": "postgres",
        "host": parsed.host,
        "port": parsed.port,
        "login": parsed.username,
        "password": parsed.password or "",
        "schema": parsed.database,
    }
    return json.dumps(connection)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    """A loopback HTTP destination behind the Airflow connection ``sink``."""
    server = Sink().start()
    monkeypatch.setenv("AIRFLOW_CONN_SINK", server.connection_env)
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example definitions and configurations, with their own data folder and store."""
    shutil.copytree(ROOT / "job_definitions", tmp_path / "job_definitions")
    shutil.copytree(ROOT / "configurations", tmp_path / "configurations")
    shutil.copytree(ROOT / "examples" / "inbox", tmp_path / "data" / "inbox")
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER", str(tmp_path / "job_definitions"))
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER", str(tmp_path / "configurations"))
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER", str(tmp_path / "data"))
    store = {"conn_type": "sqlite", "host": str(tmp_path / "store.db")}
    monkeypatch.setenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE", json.dumps(store))
    return tmp_path


# -- the live API server of the web tests (helpers.live_api); imported in the fixtures, once Airflow's
# environment above is set.


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """Airflow's API server with the plugin, for one test module; the users of helpers.users sign in."""
    from helpers.live_api import Server
    from helpers.users import PASSWORDS, ROLES

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ROLES)
        passwords = _HOME / "web-test-passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        from airflow.api_fastapi.app import create_app, purge_cached_app

        with Server(create_app()) as running:
            yield running
        purge_cached_app()


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    """A real token of each user, by name."""
    from helpers.live_api import token_for
    from helpers.users import PASSWORDS

    return {name: token_for(server, name) for name in PASSWORDS}


@pytest.fixture
def client(server: Server, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    """A client of the plugin's app (base URL at its prefix), as the admin."""
    import httpx
    from helpers.live_api import PREFIX

    with httpx.Client(
        base_url=server.url + PREFIX, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=30
    ) as session:
        yield session


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch) -> TaskStore:
    """The project's task store on SQLite, or on a fresh PostgreSQL database behind the same connection."""
    import sqlalchemy as sa
    from helpers.live_api import store_of

    from scheduled_jobs.store import TaskStore

    if request.param == "sqlite":
        return store_of(project)
    url: str = request.getfixturevalue("postgres_server_url")
    store = TaskStore.from_url(url)
    with store.engine.begin() as conn:
        for table in (
            "scheduled_jobs_task",
            "scheduled_jobs_entity",
            "scheduled_jobs_process",
            "scheduled_jobs_skipped_run",
        ):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    monkeypatch.setenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE", connection_json(url))
    return store
