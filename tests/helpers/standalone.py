"""``airflow standalone`` on a home of its own, for the tests and benchmarks that need a real scheduler.

It runs in its own process group (SQLite unless given ``metadata_url``: the tests that check scheduling give
a fresh PostgreSQL database, the ``airflow_metadata_url`` fixture; LocalExecutor, the triggerer, the
dag-processor, the API server); ``stop`` ends that group, and any of its processes that left it, and
nothing else. Users come from a passwords file written here, so a caller can get a real token from
``POST /auth/token``. Use it as a context manager, or ``start`` and ``stop`` it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import sqlalchemy as sa

from helpers.ports import free_port
from helpers.users import PASSWORDS, ROLES

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class Standalone:
    """``env`` comes last: it may replace any setting here (the store's connection, say)."""

    def __init__(
        self,
        home: Path,
        *,
        definitions: Path,
        configurations: Path,
        metadata_url: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.home = home
        self.port = free_port()
        self.log_path = home.parent / f"{home.name}-standalone.log"
        self.store_path = home.parent / f"{home.name}-store.db"
        self.metadata_url = metadata_url or f"sqlite:///{home / 'airflow.db'}"
        home.mkdir(parents=True, exist_ok=True)
        passwords = home.parent / f"{home.name}-passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        self.env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ROLES,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                # Their own log server ports: another instance on this machine may hold Airflow's defaults.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
                "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(configurations),
                "AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER": str(home.parent / f"{home.name}-data"),
                "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": json.dumps({"conn_type": "sqlite", "host": str(self.store_path)}),
                # This checkout's package, whatever else is installed (an editable install of another one).
                "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]).rstrip(
                    os.pathsep
                ),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                **(env or {}),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Standalone:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "airflow"), "standalone"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends exactly what it started
            )
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        # Its processes now: one that started a session of its own would outlive the group's end.
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait()
        self.process = None

    def __enter__(self) -> Standalone:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def metadata(self) -> sa.Engine:
        return sa.create_engine(self.metadata_url)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:] if self.log_path.exists() else ""

    def wait_for(self, predicate: Callable[[], Any], seconds: float, what: str, every: float = 0.5) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                found = predicate()
            except (sa.exc.DBAPIError, httpx.HTTPError):
                found = None  # the database is still being migrated, the API server still starting
            if found:
                return found
            time.sleep(every)
        raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{self.log_tail()}")

    def token(self, username: str) -> str:
        def issued() -> str | None:
            answer = httpx.post(
                f"{self.url}/auth/token", json={"username": username, "password": PASSWORDS[username]}, timeout=10
            )
            return str(answer.json()["access_token"]) if answer.status_code == 201 else None

        token: str = self.wait_for(issued, 240, f"a token for {username} from the API server")
        return token

    def dag_ready(self, dag_id: str, asset_uri: str | None = None) -> Callable[[], bool]:
        """Airflow parsed the DAG (unpaused) and, if given, knows the asset it is scheduled on."""
        engine = self.metadata()

        def ready() -> bool:
            with engine.connect() as conn:
                dag = conn.execute(
                    sa.text("SELECT count(*) FROM dag WHERE dag_id = :dag AND NOT is_paused AND NOT is_stale"),
                    {"dag": dag_id},
                ).scalar()
                if not dag:
                    return False
                if asset_uri is None:
                    return True
                assets = conn.execute(
                    sa.text("SELECT count(*) FROM asset a JOIN asset_active x ON x.uri = a.uri WHERE a.uri = :uri"),
                    {"uri": asset_uri},
                ).scalar()
                return bool(assets)

        return ready
