"""Airflow DAGs of the scheduled jobs: one DAG per YAML file in the job definitions folder.

The folder is ``[scheduled_jobs] definitions_folder`` (AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER).
"""

from __future__ import annotations

from scheduled_jobs.factory import build_dags

globals().update(build_dags())
