"""Airflow import errors for invalid scheduled job files: this file defines no DAG.

Every problem in the job definitions and configurations is raised here, so the Airflow UI shows it
as this file's import error while the valid jobs' DAGs keep running.
"""

from __future__ import annotations

from scheduled_jobs.factory import raise_problems

raise_problems()
