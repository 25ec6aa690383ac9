"""The Airflow plugin: the web app mounted at /scheduled-jobs and its pages in Airflow's navigation."""

from __future__ import annotations

from scheduled_jobs import require_supported_airflow

# Before any import of Airflow, which in an unsupported version fails somewhere else first
# (Airflow records a plugin that cannot load as an import error and goes on).
require_supported_airflow()

import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin

from scheduled_jobs.timetables import TIMETABLES

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

URL_PREFIX = "/scheduled-jobs"
CATEGORY = "Scheduled jobs"
# The sidebar shows a top-level item's name in 56 px of 10 px text on one line, cut with an ellipsis:
# "Scheduled jobs" needs 76 px (Chromium, DejaVu Sans), "Scheduled" 52 px. Airflow's own items are one
# word too (Dags, Assets, Browse); the page itself and the Plugins menu keep "Scheduled jobs".
NAV_LABEL = "Scheduled"

# A calendar with a clock, drawn like Airflow's own sidebar icons (24 px grid, 2 px round strokes).
# Airflow shows a plugin's icon as an <img>, which does not inherit the text colour: one image per colour
# scheme, in the colour Airflow gives its own icons (fg.muted: oklch(0.45 0.055 251) light,
# oklch(0.75 0.025 252) dark). Under the strokes runs a wider one in the sidebar's opposite tone, so the
# icon still shows on the highlighted item, whose background is that same colour. A data: URL needs no
# route, no login and no base-URL prefix.
_SHAPES = (
    '<path d="M20 9V6a2 2 0 0 0-2-2H5a2 2 0 0 0-2 2v13a2 2 0 0 0 2 2h5"/>'
    '<path d="M8 2v4M15 2v4M3 10h7"/>'
    '<circle cx="17" cy="17" r="5"/><path d="M17 14.5V17l1.5 1.5"/>'
)
_ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke-linecap="round" '
    'stroke-linejoin="round"><g stroke="{halo}" stroke-width="3.5" stroke-opacity="0.85">{shapes}</g>'
    '<g stroke="{colour}" stroke-width="2">{shapes}</g></svg>'
)


def _icon(colour: str, halo: str) -> str:
    return "data:image/svg+xml," + quote(_ICON.format(colour=colour, halo=halo, shapes=_SHAPES), safe="")


ICON = _icon("#3e5873", halo="#ffffff")
ICON_DARK_MODE = _icon("#a3afbe", halo="#1a202c")


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
        "icon": ICON,
        "icon_dark_mode": ICON_DARK_MODE,
    }


class ScheduledJobsPlugin(AirflowPlugin):
    name = "scheduled_jobs"
    # The jobs' timetables: the scheduler and the API server deserialize only the ones a plugin registers.
    timetables = TIMETABLES
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Scheduled jobs"}]
    external_views = [
        _view(NAV_LABEL, "jobs", top_level=True),
        _view("Cron checker", "cron"),
        _view("Tasks", "tasks"),
        _view("Processes", "processes"),
    ]
