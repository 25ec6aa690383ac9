"""The Airflow plugin: the web app mounted at /scheduled-jobs and its pages in Airflow's navigation."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from scheduled_jobs.web.app import URL_PREFIX, create_app

CATEGORY = "Scheduled jobs"


def _view(name: str, page: str, *, top_level: bool = False) -> dict[str, object]:
    # href without a leading slash: relative to Airflow's base URL, so it works behind a proxy prefix.
    return {
        "name": name,
        "href": f"{URL_PREFIX.lstrip('/')}/{page}",
        "url_route": f"scheduled-jobs-{page}",
        "destination": "nav",
        "category": CATEGORY,
        "nav_top_level": top_level,
    }


class ScheduledJobsPlugin(AirflowPlugin):
    name = "scheduled_jobs"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Scheduled jobs"}]
    external_views = [
        _view("Scheduled jobs", "jobs", top_level=True),
        _view("Cron checker", "cron"),
        _view("Tasks", "tasks"),
        _view("Processes", "processes"),
    ]
