"""docs/tutorial.md, run as a user would: every file it shows is written, every command it shows is run in a copy
of the checkout, and every output line it shows must appear (``...`` stands for any text; runs of spaces count as
one). The shop API's port 8099 becomes a free one. ``scripts/start.sh`` is tests/test_start_script.py's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import INSTALLED, ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

TUTORIAL = ROOT / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(?P<lang>\w+)(?: title=\"(?P<title>[^\"]+)\")?\n(?P<body>.*?)^```$", re.M | re.S)
NOT_RUN = {"scripts/start.sh"}

pytestmark = pytest.mark.skipif(INSTALLED, reason="the tutorial is about this checkout's scripts/")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def steps() -> list[tuple[str, Path | Command]]:
    """The tutorial's files (written as shown) and commands, in the order a reader meets them."""
    found: list[tuple[str, Path | Command]] = []
    for block in FENCE.finditer(TUTORIAL.read_text()):
        if block["title"]:
            found.append((block["body"], Path(block["title"])))
        elif block["lang"] == "console":
            commands: list[Command] = []
            for line in block["body"].splitlines():
                if line.startswith("$ "):
                    commands.append(Command(line[2:]))
                elif line.strip():
                    commands[-1].expected.append(line)
            found += [("", command) for command in commands]
        elif block["lang"] == "bash":
            assert set(block["body"].split()) <= NOT_RUN, f"a bash block the test cannot run: {block['body']!r}"
    return found


def shown(expected: str, output: str) -> bool:
    pattern = r"\s+".join(re.escape(part).replace(re.escape("..."), ".*") for part in expected.split())
    return any(re.fullmatch(pattern, line.strip()) for line in output.splitlines())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the checkout as the reader has it: the example definitions and configurations, the scripts."""
    for name in ("scripts", ".venv", "examples", "dags", "plugins"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "job_definitions", tmp_path / "job_definitions")
    shutil.copytree(ROOT / "configurations", tmp_path / "configurations")
    env = {
        **os.environ,
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(tmp_path / "job_definitions"),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(tmp_path / "configurations"),
        "AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER": str(tmp_path / ".airflow" / "scheduled_jobs_data"),
        "AIRFLOW_CONN_SCHEDULED_JOBS_STORE": f'{{"conn_type": "sqlite", "host": "{tmp_path / "store.db"}"}}',
        "PYTHONWARNINGS": "ignore",
    }
    yield tmp_path, env
    subprocess.run(
        [str(ROOT / "scripts" / "airflow"), "connections", "delete", "tutorial_shop"], env=env, capture_output=True
    )


def test_the_tutorial_runs_as_written(checkout: tuple[Path, dict[str, str]]) -> None:
    folder, env = checkout
    port = str(free_port())
    background: list[subprocess.Popen[bytes]] = []
    try:
        for text, step in steps():
            if isinstance(step, Path):
                target = folder / step
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text.replace("8099", port))
                continue
            line = step.line.replace("8099", port)
            if line.endswith(" &"):
                background.append(
                    subprocess.Popen(["bash", "-c", line[:-2]], cwd=folder, env=env, start_new_session=True)
                )
                deadline = time.monotonic() + 30
                while socket.socket().connect_ex(("127.0.0.1", int(port))) != 0:
                    assert time.monotonic() < deadline, f"{line}: nothing listens on {port}"
                    time.sleep(0.1)
                continue
            done = subprocess.run(
                ["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True, timeout=300
            )
            output = done.stdout + done.stderr
            problem = "1 problem found" in step.expected
            assert done.returncode == (1 if problem else 0), f"{line}: exit {done.returncode}\n{output[-3000:]}"
            for expected in step.expected:
                assert shown(expected.replace("8099", port), output), f"{line}: {expected!r} not in\n{output}"
    finally:
        for process in background:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


def test_the_check_reads_every_step_and_tells_a_wrong_output() -> None:
    found = steps()
    commands = [step for _, step in found if isinstance(step, Command)]
    files = [step for _, step in found if isinstance(step, Path)]
    assert len(commands) >= 20 and len(files) == 6
    assert sum(len(command.expected) for command in commands) >= 25
    assert shown("100", "100\n") and not shown("100", "1000\n") and not shown("100", "99\n")
    row = "200  tutorial-orders  SO-1200     failed  1      2026-12-08 00:29:01  2026-12-08 00:29:53  cannot write /x"
    assert shown("200 tutorial-orders SO-1200 failed 1 ... cannot write ...", row)
    assert not shown("200 tutorial-orders SO-1200 failed 1 ... cannot write ...", row.replace("failed", "new"))
