"""The web app mounted in Airflow's API server: the pages, their JSON API and the webhooks.

Every route needs an authenticated Airflow user (``security``); there is no OpenAPI page to leak the
routes. Blocking work (YAML, the store, Airflow's database) runs in worker threads, never on the
API server's event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from scheduled_jobs import settings
from scheduled_jobs.catalog import current_configurations
from scheduled_jobs.cron_checker import check_cron
from scheduled_jobs.exceptions import WebhookRefusedError
from scheduled_jobs.store import TaskStore, TaskStoreHook, latest_errors, skipped_page, stuck_tasks
from scheduled_jobs.web import overview
from scheduled_jobs.web.errors import parameter_errors
from scheduled_jobs.web.handoff import hand_over
from scheduled_jobs.web.responses import (
    CronCheck,
    ErrorBody,
    JobsPage,
    Paged,
    Processes,
    Routes,
    SkippedRun,
    TaskDetail,
    TaskRow,
    WebhookReceipt,
)
from scheduled_jobs.web.security import (
    SECRET_HEADER,
    authenticated_user,
    require_dag_read,
    require_dag_run_trigger,
)
from scheduled_jobs.web.webhooks import WRONG_SECRET, find_incoming, read_body, receive, secret_opens, webhook_actor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import Engine

PAGE_SIZE = 25
JOBS_PAGE_SIZE = 50
MAX_PAGE = 1_000_000
"""The last page number accepted: (page - 1) x size stays far inside any database's integer."""
MAX_ID = 2**63 - 1
"""The largest id a 64-bit integer column holds; a larger one is a 422, never an overflow in the database."""

# Every whole number a caller sends has a range; outside it the answer is a 422 that states the range.
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
TaskId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
_TEMPLATES = Path(__file__).parent / "templates"

# Autoescape everything: names, payloads and errors come from users and from remote systems.
_environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True))
_environment.filters["age"] = overview.human_age
templates = Jinja2Templates(env=_environment)


def store() -> TaskStore:
    """The task store, through its hook: the API server keeps one engine per connection."""
    return TaskStoreHook().get_store()


def _engine() -> Engine:
    return TaskStoreHook().get_engine()


def _relative_root(request: Request) -> str:
    """The app's root relative to this page (``""`` on /jobs, ``"../"`` on /tasks/7): links survive any prefix."""
    inside = request.url.path.removeprefix(request.scope.get("root_path", "")).strip("/")
    return "../" * inside.count("/")


def _render(request: Request, template: str, active: str, **values: Any) -> HTMLResponse:
    context = {"active": active, "root": _relative_root(request), **values}
    return templates.TemplateResponse(request, template, context)


def _task(task_id: int) -> TaskDetail:
    detail = overview.task(_engine(), task_id)
    if detail is None:
        raise HTTPException(404, f"no task has id {task_id}")
    return detail


# -- pages ------------------------------------------------------------------------------------------

pages = APIRouter(dependencies=[Depends(require_dag_read)], default_response_class=HTMLResponse)


@pages.get("/jobs")
async def jobs_page(
    request: Request,
    name: str = "",
    job: str = "",
    status: Literal["", "enabled", "disabled"] = "",
    page: PageNumber = 1,
) -> HTMLResponse:
    filters = overview.JobFilters(name=name, job=job if job in overview.JOB_TYPES else "", status=status)
    found = await run_in_threadpool(lambda: overview.jobs_overview(_engine(), filters, page, JOBS_PAGE_SIZE))
    return _render(
        request,
        "jobs.html",
        "jobs",
        overview=found,
        filters=filters,
        job_types=overview.JOB_TYPE_LABELS,
    )


@pages.get("/cron")
async def cron_page(request: Request, expression: str | None = None, timezone: str = "UTC") -> HTMLResponse:
    check = None if expression is None else await run_in_threadpool(check_cron, expression, timezone)
    return _render(request, "cron.html", "cron", check=check, expression=expression or "", timezone=timezone)


@pages.get("/tasks")
async def tasks_page(
    request: Request, route: str | None = None, stuck_page: PageNumber = 1, errors_page: PageNumber = 1
) -> HTMLResponse:
    def build() -> dict[str, Any]:
        rows = overview.route_rows(_engine())
        values: dict[str, Any] = {"routes": rows, "route": route, "stuck": None, "errors": None}
        if route is not None:
            engine = _engine()
            values["stuck"] = overview.paged(
                stuck_tasks(engine, route, overview.stuck_before(), stuck_page, PAGE_SIZE), TaskRow
            )
            values["errors"] = overview.paged(latest_errors(engine, route, errors_page, PAGE_SIZE), TaskRow)
        values["stuck_after_minutes"] = settings.stuck_after_minutes()
        return values

    return _render(request, "tasks.html", "tasks", **await run_in_threadpool(build))


@pages.get("/task")
async def open_task(id: Annotated[int, Query(ge=1, le=MAX_ID)]) -> RedirectResponse:
    """The Tasks page's "open a task" form: on to the task's own page."""
    return RedirectResponse(f"tasks/{id}", status_code=303)


@pages.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: TaskId) -> HTMLResponse:
    detail = await run_in_threadpool(_task, task_id)
    return _render(request, "task.html", "tasks", task=detail, payload=_pretty(detail.payload))


@pages.get("/processes")
async def processes_page(request: Request, configuration: str | None = None, page: PageNumber = 1) -> HTMLResponse:
    def build() -> dict[str, Any]:
        engine = _engine()
        return {
            "rows": overview.process_rows(engine),
            "skipped": overview.paged(skipped_page(engine, configuration, page, PAGE_SIZE), SkippedRun),
            "configuration": configuration,
        }

    return _render(request, "processes.html", "processes", **await run_in_threadpool(build))


def _pretty(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)


# -- JSON API ---------------------------------------------------------------------------------------

api = APIRouter(prefix="/api", dependencies=[Depends(require_dag_read)])


@api.get("/jobs")
async def jobs_api(
    name: str = "",
    job: str = "",
    status: Literal["", "enabled", "disabled"] = "",
    page: PageNumber = 1,
    size: int = Query(JOBS_PAGE_SIZE, ge=1, le=1000),
) -> JobsPage:
    filters = overview.JobFilters(name=name, job=job, status=status)
    return await run_in_threadpool(lambda: overview.jobs_overview(_engine(), filters, page, size))


@api.get("/cron")
async def cron_api(
    expression: str = Query(...), timezone: str = "UTC", count: int = Query(10, ge=1, le=100)
) -> CronCheck:
    return await run_in_threadpool(check_cron, expression, timezone, count)


@api.get("/routes")
async def routes_api() -> Routes:
    rows = await run_in_threadpool(lambda: overview.route_rows(_engine()))
    return Routes(routes=rows, stuck_after_minutes=settings.stuck_after_minutes())


@api.get("/routes/{route}/stuck")
async def stuck_api(route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)) -> Paged[TaskRow]:
    found = await run_in_threadpool(lambda: stuck_tasks(_engine(), route, overview.stuck_before(), page, size))
    return overview.paged(found, TaskRow)


@api.get("/routes/{route}/errors")
async def errors_api(route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)) -> Paged[TaskRow]:
    found = await run_in_threadpool(lambda: latest_errors(_engine(), route, page, size))
    return overview.paged(found, TaskRow)


@api.get("/tasks/{task_id}")
async def task_api(task_id: TaskId) -> TaskDetail:
    return await run_in_threadpool(_task, task_id)


@api.get("/processes")
async def processes_api() -> Processes:
    rows = await run_in_threadpool(lambda: overview.process_rows(_engine()))
    return Processes(processes=rows)


@api.get("/processes/skipped")
async def skipped_api(
    configuration: str | None = None, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)
) -> Paged[SkippedRun]:
    found = await run_in_threadpool(lambda: skipped_page(_engine(), configuration, page, size))
    return overview.paged(found, SkippedRun)


# -- webhooks ---------------------------------------------------------------------------------------

webhooks = APIRouter(prefix="/webhooks")


def _refused(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status, headers=headers)


@webhooks.post("/{incoming_configuration}", status_code=202, response_model=WebhookReceipt)
async def push(incoming_configuration: str, request: Request) -> WebhookReceipt | JSONResponse:
    """Entities in, 202 with the new task ids; the real-time routes' exports are handed to Airflow.

    Authentication before existence: a caller without a valid token, or with a secret that does not
    open this webhook, gets one answer whether the configuration exists or not. Only then 400 (bad
    body), 404 (unknown configuration), 409 (no route), 413 (too many bytes or records).
    """
    offered = request.headers.get(SECRET_HEADER) or None  # an empty secret is no secret: a token is needed
    user_name = None
    if offered is None:
        user = await authenticated_user(request)
        require_dag_run_trigger(user)
        user_name = user.get_name()
    configurations = await run_in_threadpool(current_configurations)
    if offered is not None and not await run_in_threadpool(
        secret_opens, configurations, incoming_configuration, offered
    ):
        return _refused(403, WRONG_SECRET)
    try:
        incoming = find_incoming(configurations, incoming_configuration)
        body = await read_body(request.stream(), request.headers.get("content-length"), settings.webhook_max_bytes())
        the_store = await run_in_threadpool(store)
        limit = settings.webhook_max_records()
        pusher = webhook_actor(incoming, user_name)
        receipt = await run_in_threadpool(receive, configurations, incoming, body, the_store, limit, created_by=pusher)
    except WebhookRefusedError as refused:
        return _refused(refused.status, refused.message)
    if receipt.realtime_routes and receipt.task_ids:
        # Only an event per route: the export itself runs as an Airflow DAG run, never in this server.
        receipt.realtime_exports = await run_in_threadpool(
            hand_over, receipt.realtime_routes, incoming.identifier, len(receipt.task_ids)
        )
    return receipt


def create_app() -> FastAPI:
    app = FastAPI(
        title="Scheduled jobs",
        # No /docs, /redoc or /openapi.json: they would be routes without authentication.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(pages)
    app.include_router(api)
    app.include_router(webhooks)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _refused(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _refused(422, parameter_errors(request, exc))

    return app
