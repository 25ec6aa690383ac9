"""Settings from Airflow's own configuration, section ``[scheduled_jobs]``.

Every key can be set in ``airflow.cfg`` or as ``AIRFLOW__SCHEDULED_JOBS__<KEY>``. Values are read on
each call, so a changed environment is seen without a restart of the process.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "scheduled_jobs"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = Path(__file__).resolve().parents[1].name == "plugins" and (PROJECT_ROOT / "pyproject.toml").is_file()
"""This package runs from its own source checkout (plugins/scheduled_jobs, itself or installed editable), where
the folders default to the checkout's job_definitions/ and configurations/. An installed package has no such
default: a silent guess inside site-packages would build no DAG and say nothing."""

DEFAULT_STUCK_AFTER_MINUTES = 30
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_STORE_CONN_ID = "scheduled_jobs_store"
DEFAULT_GUARD_LEASE_MINUTES = 60
LEASE_REFRESH_SECONDS = 30.0
"""How often an export renews its claim on the tasks it is pushing (and the longest it waits between renewals)."""


def _get(key: str) -> str | None:
    from scheduled_jobs.compat import conf

    value = conf.get(SECTION, key, fallback=None)
    return value if value not in (None, "") else None


def _get_int(key: str, default: int) -> int:
    raw = _get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        from scheduled_jobs.exceptions import ScheduledJobsError

        raise ScheduledJobsError(
            f"[{SECTION}] {key}: expected a whole number, got {raw!r} "
            f"(set in airflow.cfg or AIRFLOW__{SECTION.upper()}__{key.upper()})"
        ) from None


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).expanduser()


def _folder(key: str, checkout_default: str, holds: str) -> Path:
    raw = _get(key)
    if raw is not None:
        return Path(raw).expanduser()
    if IN_CHECKOUT:
        return PROJECT_ROOT / checkout_default
    from scheduled_jobs.exceptions import MissingSettingError

    raise MissingSettingError(
        SECTION,
        key,
        f"is not set: set it to the folder that holds {holds}, in airflow.cfg or as AIRFLOW__{SECTION.upper()}__"
        f"{key.upper()} (an installed package has no default)",
    )


def definitions_folder() -> Path:
    """``[scheduled_jobs] definitions_folder``: one YAML file per scheduled job."""
    return _folder("definitions_folder", "job_definitions", "the job definition files (one YAML file per job)")


def configurations_folder() -> Path:
    """``[scheduled_jobs] configurations_folder``: the incoming configurations, routes and outgoing configurations."""
    return _folder("configurations_folder", "configurations", "the incoming, outgoing and route configurations")


DEFAULT_YAML_MAX_BYTES = 1024 * 1024
DEFAULT_YAML_MAX_NODES = 10_000


def _get_positive(key: str, default: int) -> int:
    value = _get_int(key, default)
    if value < 1:
        from scheduled_jobs.exceptions import ScheduledJobsError

        raise ScheduledJobsError(f"[{SECTION}] {key}: must be at least 1, got {value}")
    return value


def yaml_max_bytes() -> int:
    """The largest definition or configuration file read (1 MiB by default); a larger one is a problem."""
    return _get_positive("yaml_max_bytes", DEFAULT_YAML_MAX_BYTES)


def yaml_max_nodes() -> int:
    """The most values (YAML nodes: scalars, lists, mappings) one file may hold (10,000 by default)."""
    return _get_positive("yaml_max_nodes", DEFAULT_YAML_MAX_NODES)


def data_folder() -> Path:
    """Where relative folders in configurations (inboxes, outboxes) are resolved."""
    return Path(_get("data_folder") or airflow_home() / "scheduled_jobs_data").expanduser()


def store_conn_id() -> str:
    return _get("store_conn_id") or DEFAULT_STORE_CONN_ID


def default_store_path() -> Path:
    return airflow_home() / "scheduled_jobs_store.db"


def stuck_after_minutes() -> int:
    return _get_int("stuck_after_minutes", DEFAULT_STUCK_AFTER_MINUTES)


def max_attempts() -> int:
    return _get_int("max_attempts", DEFAULT_MAX_ATTEMPTS)


def store_auto_migrate() -> bool:
    """Whether a process may upgrade an older task store's schema itself (``[scheduled_jobs] store_auto_migrate``).

    Off by default: a deployment upgrades once, with ``scheduled-jobs db upgrade`` (a Helm migration job, the compose
    init service), and its workers and API servers only check the revision. An empty store is created on first use
    either way. This checkout's standalone turns it on (scripts/env.sh).
    """
    return _get_bool("store_auto_migrate", default=False)


def _get_bool(key: str, *, default: bool) -> bool:
    raw = _get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    from scheduled_jobs.exceptions import ScheduledJobsError

    raise ScheduledJobsError(f"[{SECTION}] {key}: expected true or false, got {raw!r}")


def ui_editing() -> bool:
    """Whether the pages may save job definitions (``[scheduled_jobs] ui_editing``; off by default).

    Off, the form still validates and shows the YAML to copy or download: definitions come from the repository.
    """
    raw = (_get("ui_editing") or "false").strip().lower()
    return raw in ("true", "1", "yes", "on")


def prevent_duplicates() -> bool:
    """The seed's switch: ``AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES=false`` turns the guard off."""
    raw = (_get("prevent_duplicates") or "true").strip().lower()
    return raw not in ("false", "0", "no", "off")


def guard_lease_minutes() -> int:
    """How long a run's hold on its configuration outlives the run if nothing else says it is over."""
    return _get_int("guard_lease_minutes", DEFAULT_GUARD_LEASE_MINUTES)


GUARD_DESIGNS = ("inline", "teardown")
"""How a guarded job's DAG applies the duplicate rule (``[scheduled_jobs] guard_design``).

``inline`` (the default): the work task decides itself, defers to the guard's trigger when it must wait,
and frees its hold in its own ``finally``: one task instance per run. ``teardown``: a ``guard`` sensor
before the work and a ``release_guard`` teardown after the run's last task, three task instances per run
(bench/schedule_lateness.py: on 2 cores it fell behind at 25 every-minute jobs, where ``inline`` kept up).
"""


def guard_design() -> str:
    """``inline`` or ``teardown`` (see ``GUARD_DESIGNS``); read when the DAGs are built."""
    raw = (_get("guard_design") or GUARD_DESIGNS[0]).strip().lower()
    if raw not in GUARD_DESIGNS:
        from scheduled_jobs.exceptions import ScheduledJobsError

        raise ScheduledJobsError(f"[{SECTION}] guard_design: expected one of {', '.join(GUARD_DESIGNS)}, got {raw!r}")
    return raw


def guard_poll_seconds() -> float:
    """How often a waiting run checks, in the triggerer, whether its configuration is free."""
    raw = _get("guard_poll_seconds")
    return float(raw) if raw else 5.0


def default_timezone() -> str:
    """Airflow's ``[core] default_timezone``, spelled as an IANA name."""
    from scheduled_jobs.compat import conf

    value = conf.get("core", "default_timezone", fallback="utc") or "utc"
    return "UTC" if value.lower() == "utc" else value


DEFAULT_WEBHOOK_MAX_BYTES = 10 * 1024 * 1024


def webhook_max_bytes() -> int:
    """The largest webhook body accepted (10 MiB by default); a larger one is answered 413."""
    return _get_int("webhook_max_bytes", DEFAULT_WEBHOOK_MAX_BYTES)


DEFAULT_WEBHOOK_MAX_RECORDS = 10_000


def webhook_max_records() -> int:
    """The most records one webhook request may carry (10,000 by default); more is answered 413.

    The byte limit alone lets one small-record body hold hundreds of thousands of entities.
    """
    return _get_int("webhook_max_records", DEFAULT_WEBHOOK_MAX_RECORDS)
