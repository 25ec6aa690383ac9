"""No deployment file we ship carries a usable secret (issue 26: "a token forged with any default secret found in
the repository"). Compose takes every secret from .env, which scripts/compose-env.sh writes with random values,
and refuses to start when one is missing (``${VAR:?...}``); the Helm values name Kubernetes secrets
(tests/test_helm_values.py). The checker below is tried on a planted mistake of each kind, so it can fail.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

SHIPPED = [
    "docker-compose.yaml",
    ".env.example",
    "Dockerfile",
    "deploy/helm/values.yaml",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docker").iterdir() if path.is_file()),
]
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|FERNET|TOKEN|(^|_)KEY($|_)|_CONN_|SQL_ALCHEMY_CONN|RESULT_BACKEND|BROKER_URL"
)
# A setting that names a file or a command holding the secret is not the secret.
NAMES_A_PLACE = re.compile(r"_(FILE|CMD)$")
# ${NAME:-default} / ${NAME-default}: a default that applies whenever the variable is unset.
INTERPOLATION_DEFAULT = re.compile(r"\$\{(?P<name>\w+)(?::?-)(?P<default>[^}]*)\}")
REQUIRED = re.compile(r"^\$\{(?P<name>\w+):\?[^}]*\}$")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:(?P<password>\$\{[^}]*\}|[^@\s]+)@")
# Strings published in this repository's history as defaults: none may work against a deployment.
KNOWN_PUBLIC = ("change-me", "admin:admin", "airflow:airflow@")


def secret_problems(name: str, text: str) -> list[str]:
    problems = []
    document, text = text, "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for match in INTERPOLATION_DEFAULT.finditer(text):
        if SECRET_NAME.search(match["name"]) and match["default"]:
            problems.append(f"{name}: ${{{match['name']}}} falls back to {match['default']!r}")
    for match in URL_PASSWORD.finditer(text):
        if not REQUIRED.match(match["password"]) and not match["password"].startswith("$("):
            problems.append(f"{name}: a URL carries the password {match['password']!r}")
    problems += [f"{name}: holds {known!r}" for known in KNOWN_PUBLIC if known in text]
    if name == "docker-compose.yaml":
        problems += compose_problems(document)
    if name == ".env.example":
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if line and not line.startswith("#") and SECRET_NAME.search(key) and value.strip():
                problems.append(f"{name}: {key} has the value {value.strip()!r}")
    return problems


def compose_problems(text: str) -> list[str]:
    """Every secret-looking environment entry of every service is ``${VAR:?...}`` (or a URL whose password is)."""
    problems = []
    document = yaml.safe_load(text)
    blocks = [document.get("x-airflow-common", {}).get("environment", {})]
    blocks += [service.get("environment", {}) for service in document["services"].values()]
    for environment in blocks:
        for key, value in (environment or {}).items():
            if key == "<<" or not SECRET_NAME.search(key) or NAMES_A_PLACE.search(key):
                continue
            value = str(value)
            if URL_PASSWORD.search(value) or value.startswith(("redis://:@", "redis://redis")):
                continue  # the password part is checked above; Redis has none and is reachable only inside compose
            if not REQUIRED.match(value):
                problems.append(f"docker-compose.yaml: {key} is {value!r}, not a required ${{VAR:?...}}")
    return problems


def test_no_shipped_deployment_file_carries_a_default_secret() -> None:
    problems = [problem for name in SHIPPED for problem in secret_problems(name, (ROOT / name).read_text())]
    assert problems == []


@pytest.mark.parametrize(
    ("name", "planted", "expected"),
    [
        ("docker-compose.yaml", "${AIRFLOW_JWT_SECRET:?", "falls back to"),
        ("docker-compose.yaml", "AIRFLOW__CORE__FERNET_KEY: ${AIRFLOW_FERNET_KEY:?", "not a required"),
        ("docker-compose.yaml", "postgres://airflow:${POSTGRES_PASSWORD:?", "a URL carries the password"),
        (".env.example", "AIRFLOW_JWT_SECRET=", "has the value"),
    ],
)
def test_the_check_finds_a_planted_default(name: str, planted: str, expected: str) -> None:
    text = (ROOT / name).read_text()
    assert planted in text
    broken = {
        "${AIRFLOW_JWT_SECRET:?": "${AIRFLOW_JWT_SECRET:-not-so-secret}${UNUSED:?",
        "AIRFLOW__CORE__FERNET_KEY: ${AIRFLOW_FERNET_KEY:?": "AIRFLOW__CORE__FERNET_KEY: 'x' # ${AIRFLOW_FERNET_KEY:?",
        "postgres://airflow:${POSTGRES_PASSWORD:?": "postgres://airflow:hunter2@postgres:5432/x # ${POSTGRES_PASSWORD:?",
        "AIRFLOW_JWT_SECRET=": "AIRFLOW_JWT_SECRET=not-so-secret",
    }[planted]
    problems = secret_problems(name, text.replace(planted, broken, 1))
    assert any(expected in problem for problem in problems), problems


def required_variables() -> set[str]:
    text = (ROOT / "docker-compose.yaml").read_text()
    return {
        name
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for name in re.findall(r"\$\{(\w+):\?", line)
    }


def test_every_secret_compose_needs_is_required_and_written_by_compose_env(tmp_path: Path) -> None:
    required = required_variables()
    assert {"AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "_AIRFLOW_WWW_USER_PASSWORD", "POSTGRES_PASSWORD"} <= required

    def write(path: Path) -> dict[str, str]:
        done = subprocess.run(
            [str(ROOT / "scripts" / "compose-env.sh"), str(path)], capture_output=True, text=True, check=True
        )
        assert "=" not in done.stdout, "compose-env.sh printed a value"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))

    first = write(tmp_path / "a.env")
    assert required <= {key for key, value in first.items() if value}
    assert first["AIRFLOW_UID"] == (str(os.getuid()) if os.getuid() else "50000")  # never root
    other = write(tmp_path / "b.env")
    for key in required - {"_AIRFLOW_WWW_USER_USERNAME"}:
        assert first[key] != other[key], f"{key} is not random"
        assert re.fullmatch(r"[-_A-Za-z0-9]{16,}={0,2}", first[key]), key
    assert write(tmp_path / "a.env") == first  # a second run keeps every value


def test_compose_env_keeps_an_operators_values_and_never_writes_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=mine\nEXTRA=kept\n")
    outside = tmp_path / "outside"
    outside.write_text("untouched\n")
    (tmp_path / ".env.tmp").symlink_to(outside)
    subprocess.run([str(ROOT / "scripts" / "compose-env.sh"), str(target)], capture_output=True, check=True)
    values = dict(line.split("=", 1) for line in target.read_text().splitlines() if line and not line.startswith("#"))
    assert values["POSTGRES_PASSWORD"] == "mine" and values["EXTRA"] == "kept"
    assert outside.read_text() == "untouched\n"


def test_git_ignores_the_written_env_file() -> None:
    done = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert done.returncode == 0
