"""Airflow Scheduled Jobs: Alumio-style scheduled jobs as Airflow DAGs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed

__version__ = "0.1.0"

SUPPORTED_AIRFLOW = ">=3.1,<4"
"""The Airflow versions this package runs on, as pyproject.toml's dependency says; CI tests 3.1.8, 3.2.2, 3.3.2."""


def require_supported_airflow() -> None:
    """Refuse an Airflow outside ``SUPPORTED_AIRFLOW`` (pip's resolver refuses at install; a ``--no-deps``
    install or a changed environment gets here): one clear sentence instead of an ImportError deep inside a DAG
    file. Read from the distribution's metadata: no import of Airflow for it.

    Called where the package starts to work, not at the package's own import: by the DAG factory (the DAG
    files' import error), the plugin (Airflow's plugin import error) and the CLI (one line, exit 1). The
    provider info Airflow's providers manager reads in every ``airflow`` command imports the package too, and
    a refusal there would stop all of Airflow, ``airflow db migrate`` included."""
    try:
        found = _installed("apache-airflow")
    except PackageNotFoundError:
        return  # Airflow's own import, wherever it happens, will say so
    parts = found.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return
    if (major, minor) < (3, 1) or major >= 4:
        raise ImportError(
            f"airflow-scheduled-jobs {__version__} supports apache-airflow{SUPPORTED_AIRFLOW} "
            f"(tested: 3.1, 3.2, 3.3); this environment has apache-airflow {found}"
        )
