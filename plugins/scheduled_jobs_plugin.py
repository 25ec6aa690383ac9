"""Registers the Scheduled jobs plugin (pages, JSON API and webhooks) with Airflow from a plugins/ folder.

The package registers itself through its ``airflow.plugins`` entry point once it is installed (pip, or this
checkout's editable install): then this file defines nothing, so that Airflow does not see the plugin twice
("Plugin 'scheduled_jobs' already registered" as an import error). It is kept for a plugins folder that holds
the package without installing it. Airflow's plugin manager imports the .py files directly under plugins/; the
package itself is in .airflowignore.
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(entry.value.startswith("scheduled_jobs.") for entry in entry_points(group="airflow.plugins")):
    from scheduled_jobs.web.plugin import ScheduledJobsPlugin

    __all__ = ["ScheduledJobsPlugin"]
