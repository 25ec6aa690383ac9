"""What Airflow's providers manager learns of this package (the ``apache_airflow_provider`` entry point).

``airflow providers list`` lists it; ``airflow config list`` shows the ``[scheduled_jobs]`` settings with their
descriptions and defaults. The defaults here are the ones settings.py applies (a test keeps them equal); a
setting without a default is ``None``. Nothing here is imported at run time but by Airflow's providers manager,
so this module imports nothing of Airflow's.
"""

from __future__ import annotations

from typing import Any

from scheduled_jobs import __version__


def _option(description: str, type_: str, default: str | None, example: str | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": type_,
        "example": example,
        "default": default,
    }


OPTIONS: dict[str, dict[str, Any]] = {
    "definitions_folder": _option(
        "The folder of the job definitions: one YAML file per scheduled job. No default for an installed package "
        "(a source checkout uses its job_definitions/).",
        "string",
        None,
        "/opt/airflow/dags/repo/job_definitions",
    ),
    "configurations_folder": _option(
        "The folder of the configurations: incoming/, outgoing/ and routes/. No default for an installed "
        "package (a source checkout uses its configurations/).",
        "string",
        None,
        "/opt/airflow/dags/repo/configurations",
    ),
    "data_folder": _option(
        "Where relative folders in configurations (inboxes, outboxes) are resolved. Default: "
        "AIRFLOW_HOME/scheduled_jobs_data.",
        "string",
        None,
        "/opt/airflow/data",
    ),
    "store_conn_id": _option(
        "The Airflow connection of the task store (a postgres or sqlite connection). When it does not exist, "
        "the store is the SQLite file AIRFLOW_HOME/scheduled_jobs_store.db, which only one machine can use.",
        "string",
        "scheduled_jobs_store",
    ),
    "store_auto_migrate": _option(
        "Whether a process may upgrade an older task store's schema itself. Off: run `scheduled-jobs db upgrade` "
        "once per deployment after an upgrade; workers refuse an older schema and say so. An empty store is "
        "created on first use either way.",
        "boolean",
        "False",
    ),
    "prevent_duplicates": _option(
        "The duplicate rule: a job's run is not started while another run of the same configuration is "
        "scheduled or running. False turns it off.",
        "boolean",
        "True",
    ),
    "guard_design": _option(
        "How a guarded job's DAG applies the duplicate rule: inline (the work task decides, one task instance "
        "per run) or teardown (a guard sensor and a release teardown, three per run).",
        "string",
        "inline",
    ),
    "guard_lease_minutes": _option(
        "How long a run's hold on its configuration outlives the run when nothing else says it is over.",
        "integer",
        "60",
    ),
    "guard_poll_seconds": _option(
        "How often a waiting run checks, in the triggerer, whether its configuration is free.",
        "float",
        "5.0",
    ),
    "stuck_after_minutes": _option(
        "A task claimed this long ago without an answer counts as stuck (repair_stuck_tasks).",
        "integer",
        "30",
    ),
    "max_attempts": _option(
        "How many times a task is exported before it counts as failed for good.",
        "integer",
        "3",
    ),
    "ui_editing": _option(
        "Whether the Scheduled jobs pages may save job definitions into the definitions folder. Off, the form "
        "validates and shows the YAML to commit.",
        "boolean",
        "False",
    ),
    "yaml_max_bytes": _option("The largest definition or configuration file read, in bytes.", "integer", "1048576"),
    "yaml_max_nodes": _option(
        "The most values (YAML nodes) one definition or configuration file may hold.", "integer", "10000"
    ),
    "webhook_max_bytes": _option(
        "The largest webhook body accepted, in bytes; larger is answered 413.", "integer", "10485760"
    ),
    "webhook_max_records": _option(
        "The most records one webhook request may carry; more is answered 413.", "integer", "10000"
    ),
}


ALLOWED: dict[str, str] = {
    "definitions_folder": "a path without control characters",
    "configurations_folder": "a path without control characters",
    "data_folder": "a path without control characters",
    "store_conn_id": "an Airflow connection id: letters, digits, _, -, ., at most 250 characters",
    "store_auto_migrate": "true or false (also 1/0, yes/no, on/off)",
    "stuck_after_minutes": "1 to 525600 (a year)",
    "max_attempts": "1 to 1000",
    "prevent_duplicates": "true or false (also 1/0, yes/no, on/off)",
    "guard_lease_minutes": "1 to 525600 (a year)",
    "guard_poll_seconds": "0.1 to 3600",
    "guard_design": "inline or teardown",
    "webhook_max_bytes": "1 to 1073741824 (1 GiB)",
    "webhook_max_records": "1 to 10000000",
    "yaml_max_bytes": "1 to 1073741824 (1 GiB)",
    "ui_editing": "true or false (also 1/0, yes/no, on/off)",
    "yaml_max_nodes": "1 to 100000000",
}
"""What each setting accepts: settings.py checks every value when it is read, and says this when one is not."""
for _key, _allowed in ALLOWED.items():
    OPTIONS[_key]["description"] += f" Allowed: {_allowed}."


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-scheduled-jobs",
        "name": "Scheduled jobs",
        "description": "Alumio-style scheduled jobs as Airflow DAGs, from YAML: incoming configurations, route "
        "exports and stuck-task repair on a cron expression, with a priority and no duplicate runs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Scheduled jobs",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "Scheduled jobs", "python-modules": ["scheduled_jobs.store.hook"]}],
        "triggers": [{"integration-name": "Scheduled jobs", "python-modules": ["scheduled_jobs.triggers.guard"]}],
        "config": {
            "scheduled_jobs": {
                "description": "Airflow Scheduled Jobs: the job definitions, the task store, the duplicate rule.",
                "options": OPTIONS,
            }
        },
    }
