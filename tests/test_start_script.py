"""End to end: the README's start command, on a fresh AIRFLOW_HOME, moves the example data.

This starts the real ``airflow standalone`` (scheduler, dag-processor, triggerer, API server) and
waits for the example jobs to run on their cron schedule; then Ctrl-C must stop every process.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.e2e
BUDGET_SECONDS = 120


def test_start_moves_example_data_within_two_minutes_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
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
    finally:
        everything = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=60)
        log.close()
    time.sleep(1)
    alive = [p for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    assert "Stopped." in (tmp_path / "start.out").read_text()
