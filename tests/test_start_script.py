"""The README's start command: its environment (fast), and end to end on a fresh AIRFLOW_HOME.

The end-to-end test starts the real ``airflow standalone`` (scheduler, dag-processor, triggerer, API
server) and waits for the example jobs to run on their cron schedule; the API server listens on
loopback only and the log servers on ports of their instance; then Ctrl-C must stop every process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import psutil
import pytest
from conftest import ROOT
from helpers.ports import free_port

if TYPE_CHECKING:
    from pathlib import Path

BUDGET_SECONDS = 120


def sourced(**given: str) -> subprocess.CompletedProcess[str]:
    """``scripts/env.sh`` sourced in a clean environment; its exported variables on stdout."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **given}
    script = 'set -e; source "$1"; env -0'
    return subprocess.run(
        ["bash", "-c", script, "_", str(ROOT / "scripts" / "env.sh")], env=env, capture_output=True, text=True
    )


def exported(**given: str) -> dict[str, str]:
    result = sourced(**given)
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


def ports_of(env: dict[str, str]) -> set[str]:
    return {
        env["AIRFLOW__API__PORT"],
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"],
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"],
    }


def test_by_default_the_api_server_listens_on_loopback_and_the_log_servers_on_airflows_ports() -> None:
    env = exported()
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert ports_of(env) == {"8080", "8793", "8794"}
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"


def test_a_second_instance_on_another_port_shares_no_port_with_the_first() -> None:
    first, second = exported(), exported(AIRFLOW__API__PORT="8090")
    logs = (second["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], second["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"])
    assert logs == ("8803", "8804")
    assert ports_of(first).isdisjoint(ports_of(second))
    assert second["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8090/execution/"


def test_the_host_and_the_log_ports_can_be_overridden() -> None:
    env = exported(
        AIRFLOW__API__HOST="0.0.0.0",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="9001",
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="9002",
    )
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert ports_of(env) == {"8080", "9001", "9002"}
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
    assert exported(AIRFLOW__API__HOST="10.1.2.3")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://10.1.2.3:8080/execution/"
    )


@pytest.mark.parametrize("port", ["64900", "http", "0"])
def test_a_port_that_leaves_no_room_for_the_log_servers_is_refused(port: str) -> None:
    result = sourced(AIRFLOW__API__PORT=port)
    assert result.returncode != 0
    assert result.stderr.startswith(f"AIRFLOW__API__PORT: '{port}' is not a port from 1 to 64821"), result.stderr


def listening(processes: list[psutil.Process]) -> dict[int, set[str]]:
    """Port -> the addresses the given processes listen on it."""
    found: dict[int, set[str]] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.setdefault(conn.laddr.port, set()).add(conn.laddr.ip)
    return found


@pytest.mark.e2e
def test_start_moves_example_data_within_two_minutes_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(port), "PYTHONUNBUFFERED": "1"})
    log = (tmp_path / "start.out").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    outbox = home / "scheduled_jobs_data" / "outbox" / "erp-orders"
    try:
        while time.monotonic() - started < BUDGET_SECONDS:
            if outbox.exists() and len(list(outbox.glob("*.json"))) == 4:
                break
            assert process.poll() is None, (tmp_path / "start.out").read_text()[-3000:]
            time.sleep(1)
        elapsed = time.monotonic() - started
        written = sorted(p.name for p in outbox.glob("*.json")) if outbox.exists() else []
        assert written == ["order-SO-1001.json", "order-SO-1002.json", "order-SO-1003.json", "order-SO-1004.json"], (
            f"after {elapsed:.0f}s: {written}\n" + (home / "standalone.log").read_text()[-3000:]
        )
        print(f"example data moved {elapsed:.0f}s after the start command")
        banner = (tmp_path / "start.out").read_text()
        assert "login: admin / " in banner
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert any("standalone" in " ".join(p.cmdline()) for p in descendants)
        listeners = listening(descendants)
        assert listeners.get(port) == {"127.0.0.1"}, listeners  # not 0.0.0.0: this machine only
        # The worker's and the triggerer's log servers on ports of this instance, not 8793 and 8794.
        assert {port + 713, port + 714} <= set(listeners), listeners
    finally:
        everything = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=60)
        log.close()
    time.sleep(1)
    alive = [p for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    assert "Stopped." in (tmp_path / "start.out").read_text()
