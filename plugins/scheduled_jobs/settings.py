"""Settings from Airflow's own configuration, section ``[scheduled_jobs]``.

Every key can be set in ``airflow.cfg`` or as ``AIRFLOW__SCHEDULED_JOBS__<KEY>``. Values are read on
each call, so a changed environment is seen without a restart of the process.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from scheduled_jobs.exceptions import Problem

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


def _invalid(key: str, raw: str, expected: str) -> Exception:
    """The error of a value outside what ``key`` allows: the value as typed (escaped, cut), what it may be,
    and where it is set."""
    from scheduled_jobs.exceptions import InvalidSettingError
    from scheduled_jobs.redaction import shown

    return InvalidSettingError(
        SECTION,
        key,
        f"got {shown(raw, 60)}, expected {expected} (set in airflow.cfg or as AIRFLOW__{SECTION.upper()}__"
        f"{key.upper()})",
    )


# ASCII digits only: int() would also take "١٢", "1_000" and " 12 ".
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)


def _get_int(key: str, default: int, *, minimum: int = 1, maximum: int) -> int:
    raw = _get(key)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw.strip()) or not minimum <= int(raw) <= maximum:
        raise _invalid(key, raw, f"a whole number from {minimum} to {maximum}")
    return int(raw)


def _get_seconds(key: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = _get(key)
    if raw is None:
        return default
    try:
        value = float(raw) if len(raw) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and minimum <= value <= maximum):  # nan compares false: refused too
        raise _invalid(key, raw, f"a number of seconds from {minimum:g} to {maximum:g}")
    return value


def _get_bool(key: str, *, default: bool) -> bool:
    raw = _get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise _invalid(key, raw, "true or false")


def _get_text(key: str) -> str | None:
    """A text setting, refused when it holds a NUL or another control character (no path or id has one)."""
    raw = _get(key)
    if raw is not None and any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in raw):
        raise _invalid(key, raw, "text without control characters")
    return raw


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).expanduser()


def _folder(key: str, checkout_default: str, holds: str) -> Path:
    raw = _get_text(key)
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


MAX_BYTES_LIMIT = 1024**3
"""The largest byte limit a setting may give (1 GiB): a file or a webhook body is held in memory whole."""


def yaml_max_bytes() -> int:
    """The largest definition or configuration file read (1 MiB by default); a larger one is a problem."""
    return _get_int("yaml_max_bytes", DEFAULT_YAML_MAX_BYTES, maximum=MAX_BYTES_LIMIT)


def yaml_max_nodes() -> int:
    """The most values (YAML nodes: scalars, lists, mappings) one file may hold (10,000 by default)."""
    return _get_int("yaml_max_nodes", DEFAULT_YAML_MAX_NODES, maximum=100_000_000)


def data_folder() -> Path:
    """Where relative folders in configurations (inboxes, outboxes) are resolved."""
    return Path(_get_text("data_folder") or airflow_home() / "scheduled_jobs_data").expanduser()


# Airflow's own rule for a connection id (airflow.utils.helpers.validate_key): letters, digits, "_", "-", ".".
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}", re.ASCII)


def store_conn_id() -> str:
    raw = _get("store_conn_id")
    if raw is None:
        return DEFAULT_STORE_CONN_ID
    if not _CONN_ID.fullmatch(raw):
        raise _invalid("store_conn_id", raw, "an Airflow connection id (letters, digits, _ - and ., at most 250)")
    return raw


def default_store_path() -> Path:
    return airflow_home() / "scheduled_jobs_store.db"


MAX_MINUTES = 525_600
"""The longest a minutes setting may say: a year (a longer one is a typo, and overflows a timedelta soon after)."""


def stuck_after_minutes() -> int:
    return _get_int("stuck_after_minutes", DEFAULT_STUCK_AFTER_MINUTES, maximum=MAX_MINUTES)


def max_attempts() -> int:
    return _get_int("max_attempts", DEFAULT_MAX_ATTEMPTS, maximum=1000)


def store_auto_migrate() -> bool:
    """Whether a process may upgrade an older task store's schema itself (``[scheduled_jobs] store_auto_migrate``).

    Off by default: a deployment upgrades once, with ``scheduled-jobs db upgrade`` (a Helm migration job, the compose
    init service), and its workers and API servers only check the revision. An empty store is created on first use
    either way. This checkout's standalone turns it on (scripts/env.sh).
    """
    return _get_bool("store_auto_migrate", default=False)


def ui_editing() -> bool:
    """Whether the pages may save job definitions (``[scheduled_jobs] ui_editing``; off by default).

    Off, the form still validates and shows the YAML to copy or download: definitions come from the repository.
    """
    return _get_bool("ui_editing", default=False)


def prevent_duplicates() -> bool:
    """The seed's switch: ``AIRFLOW__SCHEDULED_JOBS__PREVENT_DUPLICATES=false`` turns the guard off."""
    return _get_bool("prevent_duplicates", default=True)


def guard_lease_minutes() -> int:
    """How long a run's hold on its configuration outlives the run if nothing else says it is over."""
    return _get_int("guard_lease_minutes", DEFAULT_GUARD_LEASE_MINUTES, maximum=MAX_MINUTES)


GUARD_DESIGNS = ("inline", "teardown")
"""How a guarded job's DAG applies the duplicate rule (``[scheduled_jobs] guard_design``).

``inline`` (the default): the work task decides itself, defers to the guard's trigger when it must wait,
and frees its hold in its own ``finally``: one task instance per run. ``teardown``: a ``guard`` sensor
before the work and a ``release_guard`` teardown after the run's last task, three task instances per run
(bench/schedule_lateness.py: on 2 cores it fell behind at 25 every-minute jobs, where ``inline`` kept up).
"""


def guard_design() -> str:
    """``inline`` or ``teardown`` (see ``GUARD_DESIGNS``); read when the DAGs are built."""
    raw = _get("guard_design")
    if raw is None:
        return GUARD_DESIGNS[0]
    if raw.strip().lower() not in GUARD_DESIGNS:
        raise _invalid("guard_design", raw, f"one of: {', '.join(GUARD_DESIGNS)}")
    return raw.strip().lower()


def guard_poll_seconds() -> float:
    """How often a waiting run checks, in the triggerer, whether its configuration is free."""
    return _get_seconds("guard_poll_seconds", 5.0, minimum=0.1, maximum=3600)


def default_timezone() -> str:
    """Airflow's ``[core] default_timezone``, spelled as an IANA name."""
    from scheduled_jobs.compat import conf

    value = conf.get("core", "default_timezone", fallback="utc") or "utc"
    return "UTC" if value.lower() == "utc" else value


DEFAULT_WEBHOOK_MAX_BYTES = 10 * 1024 * 1024


def webhook_max_bytes() -> int:
    """The largest webhook body accepted (10 MiB by default); a larger one is answered 413."""
    return _get_int("webhook_max_bytes", DEFAULT_WEBHOOK_MAX_BYTES, maximum=MAX_BYTES_LIMIT)


DEFAULT_WEBHOOK_MAX_RECORDS = 10_000


def webhook_max_records() -> int:
    """The most records one webhook request may carry (10,000 by default); more is answered 413.

    The byte limit alone lets one small-record body hold hundreds of thousands of entities.
    """
    return _get_int("webhook_max_records", DEFAULT_WEBHOOK_MAX_RECORDS, maximum=10_000_000)


CHECKED: dict[str, Callable[[], object]] = {
    "data_folder": data_folder,
    "store_conn_id": store_conn_id,
    "store_auto_migrate": store_auto_migrate,
    "prevent_duplicates": prevent_duplicates,
    "guard_design": guard_design,
    "guard_lease_minutes": guard_lease_minutes,
    "guard_poll_seconds": guard_poll_seconds,
    "stuck_after_minutes": stuck_after_minutes,
    "max_attempts": max_attempts,
    "ui_editing": ui_editing,
    "yaml_max_bytes": yaml_max_bytes,
    "yaml_max_nodes": yaml_max_nodes,
    "webhook_max_bytes": webhook_max_bytes,
    "webhook_max_records": webhook_max_records,
}
"""Every setting with a value to check, read as the code reads it. The two folders are the catalog's own
problems (``catalog.load_catalog``: not set, or not a folder)."""


def problems() -> list[Problem]:
    """A problem per setting of ``CHECKED`` whose value cannot be used: all of them at once.

    ``catalog.load_catalog`` reports them with the files' problems, so a typo is the problems DAG file's
    import error and a ``scheduled-jobs validate`` line, not only a log line of the DAG processor.
    """
    from scheduled_jobs.exceptions import SettingError

    found = []
    for read in CHECKED.values():
        try:
            read()
        except SettingError as exc:
            found.append(exc.problem)
    return found
