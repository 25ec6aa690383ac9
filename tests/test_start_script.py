"""The README's start command: its environment (fast), and end to end on a fresh AIRFLOW_HOME.

The end-to-end test starts the real ``airflow standalone`` (scheduler, dag-processor, triggerer, API
server) and waits for the example jobs to run on their cron schedule; the API server listens on
loopback only and the log servers on ports of their instance; then Ctrl-C must stop every process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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


def test_local_standalone_lets_the_ui_save_job_definitions_unless_told_otherwise() -> None:
    assert exported()["AIRFLOW__SCHEDULED_JOBS__UI_EDITING"] == "True"
    assert exported(AIRFLOW__SCHEDULED_JOBS__UI_EDITING="False")["AIRFLOW__SCHEDULED_JOBS__UI_EDITING"] == "False"


PATHSPEC_WARNING = "GitWildMatchPattern ('gitwildmatch') is deprecated"


def _plugins_scan(env: dict[str, str]) -> str:
    """The output of Airflow's own scan of plugins/ (which reads plugins/.airflowignore), under ``env``."""
    script = "from airflow import plugins_manager; plugins_manager._get_plugins()"
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr  # Airflow logs warnings to stdout


def test_the_pathspec_deprecation_is_filtered_by_message_category_and_module_only(tmp_path: Path) -> None:
    env = exported(AIRFLOW_HOME=str(tmp_path / "home"))
    filters = env["PYTHONWARNINGS"].split(",")
    assert filters == [
        f"ignore:{PATHSPEC_WARNING}:DeprecationWarning:airflow._shared.module_loading.file_discovery",
        f"ignore:{PATHSPEC_WARNING}:DeprecationWarning:airflow.sdk._shared.module_loading.file_discovery",
        "ignore:Could not import graphviz:UserWarning:airflow.cli.commands.dag_command",
        "ignore:Using `httpx` with `starlette.testclient` is deprecated:Warning",
    ]
    assert _plugins_scan(env).count(PATHSPEC_WARNING) == 0
    # Airflow's execution API imports starlette's test client: its httpx2 note, filtered by its message.
    python = str(ROOT / ".venv" / "bin" / "python")
    imported = [python, "-c", "import airflow.api_fastapi.execution_api.app"]
    quiet = subprocess.run(imported, env=env, capture_output=True, text=True, timeout=120)
    noisy = subprocess.run(imported, env={**env, "PYTHONWARNINGS": ""}, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "httpx2" not in quiet.stdout + quiet.stderr, quiet.stderr[-2000:]
    assert "httpx2" in noisy.stdout + noisy.stderr  # the control: Airflow logs the note without the filter
    # The control: without the filter the same scan warns, so the check above can fail.
    assert _plugins_scan({**env, "PYTHONWARNINGS": ""}).count(PATHSPEC_WARNING) == 1


def test_a_pythonwarnings_of_ones_own_is_kept_even_empty() -> None:
    assert exported(PYTHONWARNINGS="error")["PYTHONWARNINGS"] == "error"
    assert exported(PYTHONWARNINGS="")["PYTHONWARNINGS"] == ""


def _throwaway_checkout(base: Path) -> Path:
    """A checkout whose scripts are this one's, with this .venv, dags and plugins: its .airflow is its own."""
    checkout = base / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for script in ("env.sh", "airflow", "scheduled-jobs"):
        shutil.copy2(ROOT / "scripts" / script, checkout / "scripts" / script)
    for name in (".venv", "dags", "plugins"):
        (checkout / name).symlink_to(ROOT / name)
    return checkout


def _new_shell(base: Path) -> dict[str, str]:
    """The environment of a new login shell: no AIRFLOW_HOME, no venv activated."""
    home = base / "user-home"
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.mark.parametrize(("script", "what"), [("airflow", "Airflow"), ("scheduled-jobs", "scheduled-jobs")])
def test_a_wrapper_without_a_venv_says_what_to_run(tmp_path: Path, script: str, what: str) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / script, checkout / "scripts" / script)
    result = subprocess.run(
        [str(checkout / "scripts" / script), "--help"], env=_new_shell(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"scripts/{script}: {checkout}/.venv has no {what} yet: run scripts/start.sh (or scripts/install.sh) first\n"
    )


@pytest.mark.e2e
def test_scripts_airflow_in_a_new_shell_uses_the_checkouts_airflow_home(tmp_path: Path) -> None:
    """README's `scripts/airflow ...` commands, in a shell that never sourced anything: .airflow, not ~/airflow."""
    checkout = _throwaway_checkout(tmp_path)
    env = _new_shell(tmp_path)

    def airflow(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(checkout / "scripts" / "airflow"), *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
        output = result.stdout + result.stderr
        assert "migrat" not in output or args[0] == "db", (args, output[-2000:])
        assert "graphviz" not in output and PATHSPEC_WARNING not in output, output[-2000:]
        return result

    airflow("db", "migrate")  # what scripts/start.sh's `airflow standalone` does first
    airflow("connections", "add", "shop_api", "--conn-uri", "https://user:pass@shop.example.com")
    got = json.loads(airflow("connections", "get", "shop_api", "-o", "json").stdout)
    assert [(c["conn_id"], c["host"], c["login"]) for c in got] == [("shop_api", "shop.example.com", "user")]
    airflow("dags", "reserialize")  # what the DAG processor of scripts/start.sh does
    dags = {dag["dag_id"] for dag in json.loads(airflow("dags", "list", "-o", "json").stdout)}
    assert {"shop-orders-incoming", "orders-to-erp-export", "repair-stuck-tasks"} <= dags, dags
    # scheduled-jobs the same way: its tasks commands reach the store of .airflow.
    tasks = subprocess.run(
        [str(checkout / "scripts" / "scheduled-jobs"), "tasks", "list"], env=env, capture_output=True, text=True
    )
    assert (tasks.returncode, tasks.stdout) == (0, "no tasks\n"), tasks.stderr[-2000:]
    assert (checkout / ".airflow" / "airflow.db").is_file()
    assert (checkout / ".airflow" / "scheduled_jobs_store.db").is_file()
    assert not (tmp_path / "user-home" / "airflow").exists(), "a new shell's command used ~/airflow"


def listening(processes: list[psutil.Process]) -> dict[int, set[str]]:
    """Port -> the addresses the given processes listen on it."""
    found: dict[int, set[str]] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.setdefault(conn.laddr.port, set()).add(conn.laddr.ip)
    return found


def wait_for_final_banner(out: Path, process: subprocess.Popen[bytes], timeout: float = 120) -> str:
    """start.sh's output once its last banner is printed (it follows the first parse of the job definitions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text()
        if " Ctrl-C stops everything.\n" + "=" * 78 + "\n" in text:
            return text
        assert process.poll() is None, text[-3000:]
        time.sleep(0.5)
    raise AssertionError("no final banner:\n" + out.read_text()[-3000:])


@pytest.mark.e2e
def test_start_moves_example_data_within_two_minutes_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)  # as a umask of 022 leaves it
    # A login.txt that is a link to someone else's file: replaced, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    (home / "login.txt").symlink_to(victim)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.pop("PYTHONWARNINGS", None)  # the filter of scripts/env.sh, as a new shell gets it
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
        screen = wait_for_final_banner(tmp_path / "start.out", process)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        login = home / "login.txt"
        assert login.stat().st_mode & 0o777 == 0o600
        assert not login.is_symlink()
        assert victim.read_text() == "someone else's file\n"
        # The password is also in the passwords file and in standalone.log ("Password for user 'admin'"):
        # only the owner may enter the home that holds them.
        assert home.stat().st_mode & 0o077 == 0, oct(home.stat().st_mode)
        assert (home / "jwt_secret").stat().st_mode & 0o777 == 0o600
        started_log = (home / "standalone.log").read_text()
        # Neither the generated short JWT secret's warning nor starlette's httpx2 note.
        assert "HMAC key" not in started_log and "httpx2" not in started_log
        assert login.read_text() == f"url: http://127.0.0.1:{port}\nuser: admin\npassword: {password}\n"
        # Once when the API server answers, again once everything is up: then the log goes to the file only,
        # so the URL and the login stay the last thing on the screen, below the start-up noise.
        first = screen.index(f"The API server is up:  http://127.0.0.1:{port}   login: admin / {password}")
        final = screen.index(f"Airflow is up:  http://127.0.0.1:{port}   login: admin / {password}")
        assert first < final
        assert f"(also in {login})" in screen[final:]
        task_logs = list((home / "logs").glob("dag_id=*/run_id=*/task_id=*/attempt=*.log"))
        assert task_logs, "no task ran"
        noisy = [p for p in [home / "standalone.log", *task_logs] if "GitWildMatchPattern" in p.read_text()]
        assert noisy == [], noisy
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert any("standalone" in " ".join(p.cmdline()) for p in descendants)
        listeners = listening(descendants)
        assert listeners.get(port) == {"127.0.0.1"}, listeners  # not 0.0.0.0: this machine only
        # The worker's and the triggerer's log servers on ports of this instance, not 8793 and 8794.
        assert {port + 713, port + 714} <= set(listeners), listeners
        # Tasks ran meanwhile (the example data moved), yet nothing came after the banner on the screen.
        screen = (tmp_path / "start.out").read_text()
        after = screen[screen.index("Airflow is up:") :].split("=" * 78 + "\n", 1)[1]
        assert after.strip() == "", f"output after the banner: {after[:2000]}"
    finally:
        everything = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=60)
        log.close()
    time.sleep(1)
    alive = [p for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
    assert "Stopped." in (tmp_path / "start.out").read_text()


@pytest.mark.parametrize(("script", "args"), [("scheduled-jobs", ["--help"]), ("airflow", ["version"])])
def test_a_symlink_to_a_wrapper_runs_the_checkouts_command(tmp_path: Path, script: str, args: list[str]) -> None:
    """`ln -s $PWD/scripts/airflow ~/bin/airflow`: on main ROOT is the link's folder's parent
    (``dirname "${BASH_SOURCE[0]}"``, unresolved), so it says "<~>/.venv has no Airflow yet: run
    scripts/start.sh" on a checkout that has it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / script).symlink_to(ROOT / "scripts" / script)
    result = subprocess.run(
        [str(bin_dir / script), *args], env=_new_shell(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_an_airflow_home_of_the_callers_shell_does_not_silently_replace_the_checkouts(tmp_path: Path) -> None:
    """A shell with `export AIRFLOW_HOME=~/airflow` (a former Airflow set-up; README: scripts/airflow works
    "from any shell"): on main scripts/scheduled-jobs answers "no tasks" from a new, empty store it creates
    in that other home, and scripts/airflow dags list says "Database migration required", the very
    frictions issue 14 is about. Either the checkout's .airflow is used, or stderr says which home is."""
    checkout = _throwaway_checkout(tmp_path)
    other = tmp_path / "user-home" / "airflow"
    env = {**_new_shell(tmp_path), "AIRFLOW_HOME": str(other)}
    result = subprocess.run(
        [str(checkout / "scripts" / "scheduled-jobs"), "tasks", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    used_checkout = (checkout / ".airflow" / "scheduled_jobs_store.db").exists()
    assert used_checkout or str(other) in result.stderr, (result.returncode, result.stdout, result.stderr)
