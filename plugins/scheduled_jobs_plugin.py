"""Registers the Scheduled jobs plugin (pages, JSON API and webhooks) with Airflow.

Airflow's plugin manager imports the .py files directly under plugins/; the package itself is in
.airflowignore, so the plugin class is found here, once.
"""

from __future__ import annotations

from scheduled_jobs.web.plugin import ScheduledJobsPlugin

__all__ = ["ScheduledJobsPlugin"]
