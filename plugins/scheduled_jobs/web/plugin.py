"""The Airflow plugin: the web app mounted at /scheduled-jobs and its pages in Airflow's navigation."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

URL_PREFIX = "/scheduled-jobs"
CATEGORY = "Scheduled jobs"


class LazyApp:
    """The web app, built on its first request.

    Airflow imports every plugin in every process, each task process included (for macros), but only
    the API server serves the app: building it at import would cost every task about a second of
    imports (FastAPI and Airflow's core API).
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    def get(self) -> FastAPI:
        with self._lock:
            if self._app is None:
                from scheduled_jobs.web.app import create_app

                self._app = create_app()
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            from starlette.concurrency import run_in_threadpool

            app = await run_in_threadpool(self.get)  # the imports stay off the event loop
        await app(scope, receive, send)


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
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Scheduled jobs"}]
    external_views = [
        _view("Scheduled jobs", "jobs", top_level=True),
        _view("Cron checker", "cron"),
        _view("Tasks", "tasks"),
        _view("Processes", "processes"),
    ]
