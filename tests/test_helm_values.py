"""What can be checked of deploy/helm/values.yaml without Helm or a Kubernetes cluster.

The values are validated against the official Apache Airflow chart's own values.schema.json (a copy in
tests/helm_schema/, SOURCE.md names its chart version and commit). Then: every Airflow setting they name
exists (in Airflow's config.yml, or in this package's provider info for ``[scheduled_jobs]``), the folders
are where the chart's git-sync puts the repository, the migration job also migrates the task store, and no
password, key or token is written in the file: each one comes from a Kubernetes secret.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT

VALUES = ROOT / "deploy" / "helm" / "values.yaml"
SCHEMA = ROOT / "tests" / "helm_schema" / "values.schema.json"

# The chart's git-sync container (chart/templates/_helpers.yaml, "git_sync_container") mounts the dags volume
# at /git and links the checkout as "repo"; the Airflow containers mount the same volume at dags.mountPath
# (default <airflowHome>/dags), so the repository is at <mountPath>/repo.
GIT_SYNC_ROOT = "/git"
GIT_SYNC_LINK = "repo"

# The chart's literal values for a secret, and the key that names an existing Kubernetes secret instead.
SECRET_REFERENCES = {
    "fernetKey": "fernetKeySecretName",
    "apiSecretKey": "apiSecretKeySecretName",
    "jwtSecret": "jwtSecretName",
    "webserverSecretKey": "webserverSecretKeySecretName",
    "data.metadataConnection": "data.metadataSecretName",
    "data.brokerUrl": "data.brokerUrlSecretName",
    "redis.password": "redis.passwordSecretName",
}
SECRET_LOOKING = re.compile(r"^pass$|passw|secret|key|token|fernet|connection|credential", re.IGNORECASE)
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CREDENTIAL_URL = re.compile(r"://[^/\s@]*:[^/\s@]+@")
ENV_REFERENCE = re.compile(r"^\$\([A-Z_][A-Z0-9_]*\)$")
"""``$(VAR)``: Kubernetes puts the container variable's value there (the variable itself comes from a secret)."""


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()))


@cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in _validator().iter_errors(document)
    ]


def at(document: dict[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# -- 1. the chart's schema --------------------------------------------------------------------------------------


def test_the_schema_copy_names_its_source() -> None:
    source = (SCHEMA.parent / "SOURCE.md").read_text()
    assert re.search(r"\b1\.19\.0\b", source), "SOURCE.md names the chart version"
    assert re.search(r"\b[0-9a-f]{40}\b", source), "SOURCE.md names the commit"


def test_values_are_valid_against_the_charts_schema(values: dict[str, Any]) -> None:
    assert schema_errors(values) == []


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("an unknown key in dags.gitSync", lambda v: v["dags"]["gitSync"].__setitem__("subFolder", "dags")),
        ("a wrong type", lambda v: v["dags"]["gitSync"].__setitem__("enabled", "yes")),
        ("an unknown key in images.airflow", lambda v: v["images"]["airflow"].__setitem__("name", "x")),
        ("a config value that is a list", lambda v: v["config"]["scheduled_jobs"].__setitem__("ui_editing", [])),
        ("a secret entry without secretName", lambda v: v["secret"][0].pop("secretName")),
        ("an executor the chart does not know", lambda v: v.__setitem__("executor", "celery")),
    ],
)
def test_the_schema_check_catches_a_mistake(values: dict[str, Any], where: str, mutate: Any) -> None:
    broken = copy.deepcopy(values)
    mutate(broken)
    assert schema_errors(broken), f"{where} passed the schema"


# -- 2. every setting exists ------------------------------------------------------------------------------------


@cache
def _airflow_options() -> dict[str, set[str]]:
    """Airflow's own settings, from the config.yml it ships (no provider's, no local airflow.cfg)."""
    from airflow.configuration import retrieve_configuration_description

    description = retrieve_configuration_description(include_airflow=True, include_providers=False)
    return {section: set(body.get("options", {})) for section, body in description.items()}


@cache
def _package_options() -> set[str]:
    from scheduled_jobs.provider_info import get_provider_info

    return set(get_provider_info()["config"]["scheduled_jobs"]["options"])


def unknown_setting(section: str, key: str) -> str | None:
    if section == "scheduled_jobs":
        return None if key in _package_options() else f"[{section}] {key}: not in scheduled_jobs' provider info"
    if key not in _airflow_options().get(section, set()):
        return f"[{section}] {key}: not an Airflow {_airflow_version()} option"
    return None


def _airflow_version() -> str:
    from airflow import __version__

    return __version__


def test_the_setting_lookup_knows_real_options_from_invented_ones() -> None:
    assert unknown_setting("core", "dags_are_paused_at_creation") is None
    assert unknown_setting("dag_processor", "refresh_interval") is None
    assert unknown_setting("scheduled_jobs", "definitions_folder") is None
    assert unknown_setting("core", "definitions_folder")
    assert unknown_setting("scheduled_jobs", "no_such_setting")
    assert unknown_setting("no_such_section", "load_examples")


def test_every_config_setting_is_an_airflow_or_a_scheduled_jobs_option(values: dict[str, Any]) -> None:
    problems = [
        problem
        for section, options in values["config"].items()
        for key in options
        if (problem := unknown_setting(section, key))
    ]
    assert problems == []


def test_the_scheduled_jobs_settings_the_deployment_needs_are_set(values: dict[str, Any]) -> None:
    settings = values["config"]["scheduled_jobs"]
    assert {"definitions_folder", "configurations_folder", "store_conn_id", "ui_editing"} <= set(settings)
    # Every value is a string: airflow.cfg is text, and YAML's False would be written as "false" by Helm.
    assert all(isinstance(value, str) for value in settings.values())
    # git-sync's checkout is read-only: the pages must not offer to save.
    assert settings["ui_editing"] == "False"


def dags_mount_path(values: dict[str, Any]) -> str:
    """Where the chart mounts the dags volume in Airflow containers ("airflow_dags_mount")."""
    return values["dags"].get("mountPath") or f"{values.get('airflowHome', '/opt/airflow')}/dags"


def dags_folder(values: dict[str, Any]) -> str:
    """[core] dags_folder as the chart computes it (chart/templates/_helpers.yaml, "airflow_dags")."""
    if values["dags"]["gitSync"]["enabled"]:
        return f"{dags_mount_path(values)}/{GIT_SYNC_LINK}/{values['dags']['gitSync']['subPath']}"
    return dags_mount_path(values)


def test_the_folders_are_in_the_git_sync_checkout(values: dict[str, Any]) -> None:
    git_sync = values["dags"]["gitSync"]
    assert git_sync["enabled"] is True
    assert values["dags"]["persistence"]["enabled"] is False
    assert git_sync["subPath"] == "dags"
    assert git_sync["branch"] == git_sync["ref"], "git-sync v3 reads branch, v4 ref: the same branch for both"
    repository = f"{dags_mount_path(values)}/{GIT_SYNC_LINK}"
    assert repository == "/opt/airflow/dags/repo"
    assert dags_folder(values) == f"{repository}/dags"
    settings = values["config"]["scheduled_jobs"]
    assert settings["definitions_folder"] == f"{repository}/job_definitions"
    assert settings["configurations_folder"] == f"{repository}/configurations"
    # The chart sets [core] dags_folder itself; a value here would have to agree with the checkout.
    assert values["config"].get("core", {}).get("dags_folder", dags_folder(values)) == dags_folder(values)


def test_the_folders_match_the_examples_in_the_provider_info(values: dict[str, Any]) -> None:
    from scheduled_jobs.provider_info import get_provider_info

    options = get_provider_info()["config"]["scheduled_jobs"]["options"]
    settings = values["config"]["scheduled_jobs"]
    for key in ("definitions_folder", "configurations_folder"):
        assert options[key]["example"] == settings[key], f"{key}: the provider info's example and the Helm values"


def _containers(values: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(values.get("apiServer", {}).get(key) or [])


def test_the_api_server_has_the_same_checkout_at_the_same_path(values: dict[str, Any]) -> None:
    """The chart gives git-sync to the dag processor, triggerer and workers, not to the API server, where the
    plugin's pages read the definitions: the values add an init container and a sidecar for it."""
    volumes = {volume["name"]: volume for volume in values["apiServer"]["extraVolumes"]}
    mounts = {mount["name"]: mount for mount in values["apiServer"]["extraVolumeMounts"]}
    (name,) = set(volumes) & set(mounts)
    assert mounts[name]["mountPath"] == dags_mount_path(values)
    assert mounts[name]["readOnly"] is True
    init, sidecar = _containers(values, "extraInitContainers"), _containers(values, "extraContainers")
    assert len(init) == 1 and len(sidecar) == 1
    assert init[0]["args"] == ["--one-time"]
    for container in (init[0], sidecar[0]):
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["GITSYNC_ROOT"] == GIT_SYNC_ROOT
        assert env["GITSYNC_LINK"] == GIT_SYNC_LINK
        # Templated by the chart (tpl), so the repository and branch are written once, in dags.gitSync.
        assert env["GITSYNC_REPO"] == "{{ .Values.dags.gitSync.repo }}"
        assert env["GITSYNC_REF"] == "{{ .Values.dags.gitSync.ref }}"
        assert "images.gitSync" in container["image"]
        assert [m["mountPath"] for m in container["volumeMounts"] if m["name"] == name] == [GIT_SYNC_ROOT]


# -- 3. environment variables -----------------------------------------------------------------------------------


def env_names(document: Any) -> list[str]:
    """Every environment variable the values define: `secret:` entries and each `env:` list, at any depth."""
    names: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "secret" and isinstance(value, list):
                names += [item["envName"] for item in value]
            elif key == "env" and isinstance(value, list):
                names += [item["name"] for item in value if isinstance(item, dict) and "name" in item]
            else:
                names += env_names(value)
    elif isinstance(document, list):
        for item in document:
            names += env_names(item)
    return names


def unknown_env_setting(name: str) -> str | None:
    match = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+?)(_CMD|_SECRET)?", name)
    if match is None:
        return f"{name}: not of the form AIRFLOW__SECTION__KEY"
    return unknown_setting(match.group(1).lower(), match.group(2).lower())


def test_every_airflow_setting_variable_names_an_existing_option(values: dict[str, Any]) -> None:
    problems = [
        problem for name in env_names(values) if name.startswith("AIRFLOW__") and (problem := unknown_env_setting(name))
    ]
    assert problems == []


def test_the_variable_check_catches_a_misspelt_setting(values: dict[str, Any]) -> None:
    assert unknown_env_setting("AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER") is None
    assert unknown_env_setting("AIRFLOW__CORE__LOAD_EXAMPLES") is None
    broken = copy.deepcopy(values)
    broken.setdefault("env", []).append({"name": "AIRFLOW__SCHEDULED_JOBS__DEFINITION_FOLDER", "value": "/x"})
    broken["apiServer"].setdefault("env", []).append({"name": "AIRFLOW__CORE__LOAD_EXAMPLE", "value": "False"})
    assert {name for name in env_names(broken) if name.startswith("AIRFLOW__") and unknown_env_setting(name)} == {
        "AIRFLOW__SCHEDULED_JOBS__DEFINITION_FOLDER",
        "AIRFLOW__CORE__LOAD_EXAMPLE",
    }


def test_the_store_connection_comes_from_a_secret_under_the_default_connection_id(values: dict[str, Any]) -> None:
    from scheduled_jobs import settings
    from scheduled_jobs.provider_info import get_provider_info

    default = get_provider_info()["config"]["scheduled_jobs"]["options"]["store_conn_id"]["default"]
    assert default == settings.DEFAULT_STORE_CONN_ID == "scheduled_jobs_store"
    assert values["config"]["scheduled_jobs"]["store_conn_id"] == default
    (entry,) = [item for item in values["secret"] if item["envName"].startswith("AIRFLOW_CONN_")]
    assert entry["envName"] == f"AIRFLOW_CONN_{default.upper()}" == "AIRFLOW_CONN_SCHEDULED_JOBS_STORE"
    assert KUBERNETES_NAME.match(entry["secretName"])
    assert entry["secretKey"] == "connection"


# -- 4. the migration job ---------------------------------------------------------------------------------------


def test_the_migration_job_migrates_airflow_then_the_task_store(values: dict[str, Any]) -> None:
    job = values["migrateDatabaseJob"]
    assert job.get("enabled", True) is True
    assert job.get("command") is None, "the chart's default command (the image's entrypoint) runs the args"
    assert job["args"][:2] == ["bash", "-c"] and len(job["args"]) == 3
    steps = [shlex.split(step) for step in job["args"][2].split("&&")]
    assert steps[0] == ["airflow", "db", "migrate"], "exec here would end the shell before the store's step"
    assert steps[-1][-3:] == ["scheduled-jobs", "db", "upgrade"]
    assert len(steps) == 2
    # The job must run this image (the command is in it) and get the store's connection from `secret:`.
    assert values["images"]["useDefaultImageForMigration"] is False
    assert job.get("applyCustomEnv", True) is True


def test_db_upgrade_is_a_command_of_scheduled_jobs() -> None:
    from scheduled_jobs.cli import build_parser

    args = build_parser().parse_args(["db", "upgrade"])
    assert (args.command, args.action) == ("db", "upgrade")


def test_the_image_is_this_products_on_airflow_3_3_2(values: dict[str, Any]) -> None:
    assert values["images"]["airflow"] == {
        "repository": "airflow-scheduled-jobs",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    }
    assert values["airflowVersion"] == values["defaultAirflowTag"] == "3.3.2"
    # The Airflow the Dockerfile builds on by default (the image is FROM apache/airflow:<that>).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1) == values["airflowVersion"]


# -- 5. no literal secret ---------------------------------------------------------------------------------------


def literal_secrets(document: Any, path: str = "", parent: str = "") -> list[str]:
    """Every non-empty string under a key that looks secret, except what only names a secret or a variable."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                found += literal_secrets(value, where, str(key))
            elif (
                isinstance(value, str)
                and value
                and SECRET_LOOKING.search(str(key))
                and not _reference(key, value, parent)
            ):
                found.append(where)
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found += literal_secrets(item, f"{path}[{index}]", parent)
    return found


def _reference(key: str, value: str, parent: str) -> bool:
    if parent in ("secretKeyRef", "secretRef"):
        return key in ("name", "key")  # which secret and which of its keys
    if key.endswith(("SecretName", "secretName")) or key in ("credentialsSecret", "sshKeySecret"):
        return bool(KUBERNETES_NAME.match(value))
    if key == "secretKey":  # a `secret:` entry's key inside its secret
        return bool(SECRET_DATA_KEY.match(value))
    return bool(ENV_REFERENCE.match(value))


def test_no_password_key_or_token_is_written_in_the_values(values: dict[str, Any]) -> None:
    assert literal_secrets(values) == []


def credential_urls(document: Any, path: str = "") -> list[str]:
    """Every string, under any key, that is a URL with a password in it (a connection written out)."""
    if isinstance(document, dict):
        return [
            found
            for key, value in document.items()
            for found in credential_urls(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(document, list):
        return [found for index, item in enumerate(document) for found in credential_urls(item, f"{path}[{index}]")]
    return [path] if isinstance(document, str) and CREDENTIAL_URL.search(document) else []


def test_no_value_is_a_url_with_credentials(values: dict[str, Any]) -> None:
    assert credential_urls(values) == []


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("fernetKey", lambda v: v.__setitem__("fernetKey", "c2VjcmV0LWZlcm5ldC1rZXktZm9yLXRlc3Rpbmc=")),
        (
            "createUserJob.defaultUser.password",
            lambda v: v["createUserJob"]["defaultUser"].__setitem__("password", "admin"),
        ),
        ("data.metadataConnection.pass", lambda v: v["data"].__setitem__("metadataConnection", {"pass": "hunter2"})),
        ("jwtSecretName", lambda v: v.__setitem__("jwtSecretName", "not a secret name: the key itself")),
        ("jwtSecret", lambda v: v.__setitem__("jwtSecret", "looks-like-a-name")),
        ("env[0].value", lambda v: v.__setitem__("env", [{"name": "AIRFLOW_CONN_X", "value": "postgresql://u:p@h/d"}])),
    ],
)
def test_the_secret_checks_catch_a_literal(values: dict[str, Any], where: str, mutate: Any) -> None:
    broken = copy.deepcopy(values)
    mutate(broken)
    assert where in literal_secrets(broken) + credential_urls(broken)


def schema_declares(schema: dict[str, Any], dotted: str) -> bool:
    node = schema
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return False
    return True


def test_every_chart_secret_is_read_from_a_secret_the_user_creates(values: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    for literal, reference in SECRET_REFERENCES.items():
        assert schema_declares(schema, reference), f"{reference}: not in the chart's schema (renamed?)"
        assert schema_declares(schema, literal), f"{literal}: not in the chart's schema (renamed?)"
        assert KUBERNETES_NAME.match(str(at(values, reference) or "")), f"{reference}: names no secret"
        assert at(values, literal) in (None, "", {}), f"{literal}: set in the values, use {reference}"
    # The bundled PostgreSQL would bring its own default password; the metadata database is external.
    assert values["postgresql"]["enabled"] is False
    # The first login's password: from a secret, through a variable of the create-user job.
    password = values["createUserJob"]["defaultUser"]["password"]
    variable = ENV_REFERENCE.match(password) and password[2:-1]
    (entry,) = [item for item in values["createUserJob"]["env"] if item["name"] == variable]
    assert KUBERNETES_NAME.match(entry["valueFrom"]["secretKeyRef"]["name"])


def test_the_kubectl_commands_create_every_secret_the_values_name(values: dict[str, Any]) -> None:
    """The comments tell how to create each secret: one `kubectl create secret` per name, with the right key."""
    text = VALUES.read_text()
    created = dict(
        re.findall(r"kubectl -n airflow create secret generic (\S+)\s+(?:\\\s*#?\s*)?--from-literal=([-\w]+)=", text)
    )
    wanted = {at(values, reference): None for reference in SECRET_REFERENCES.values()}
    wanted |= {item["secretName"]: item["secretKey"] for item in values["secret"]}
    wanted |= {
        item["valueFrom"]["secretKeyRef"]["name"]: item["valueFrom"]["secretKeyRef"]["key"]
        for item in values["createUserJob"]["env"]
    }
    keys = {
        "fernetKeySecretName": "fernet-key",
        "apiSecretKeySecretName": "api-secret-key",
        "jwtSecretName": "jwt-secret",
        "webserverSecretKeySecretName": "webserver-secret-key",
        "data.metadataSecretName": "connection",
        "data.brokerUrlSecretName": "connection",
        "redis.passwordSecretName": "password",
    }
    wanted |= {at(values, reference): key for reference, key in keys.items()}
    assert {name: created.get(name) for name in wanted} == wanted


def test_the_readme_exists_and_points_at_the_values() -> None:
    readme = Path(VALUES.parent / "README.md").read_text()
    assert "values.yaml" in readme and "1.19.0" in readme
