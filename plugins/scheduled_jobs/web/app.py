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
from scheduled_jobs.redaction import shown
from scheduled_jobs.store import (
    Page,
    TaskStore,
    TaskStoreHook,
    latest_errors,
    skipped_page,
    stuck_tasks,
    task_detail,
)
from scheduled_jobs.web import overview
from scheduled_jobs.web.handoff import hand_over
from scheduled_jobs.web.security import (
    SECRET_HEADER,
    authenticated_user,
    require_dag_read,
    require_dag_run_trigger,
)
from scheduled_jobs.web.webhooks import WRONG_SECRET, WebhookRefused, find_incoming, read_body, receive, secret_opens

if TYPE_CHECKING:
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
    check = None if expression is None else await run_in_threadpool(overview.check_cron, expression, timezone)
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
            values["stuck"] = stuck_tasks(engine, route, overview.stuck_before(), stuck_page, PAGE_SIZE)
            values["errors"] = latest_errors(engine, route, errors_page, PAGE_SIZE)
        values["stuck_after_minutes"] = settings.stuck_after_minutes()
        return values

    return _render(request, "tasks.html", "tasks", **await run_in_threadpool(build))


@pages.get("/task")
async def open_task(id: Annotated[int, Query(ge=1, le=MAX_ID)]) -> RedirectResponse:
    """The Tasks page's "open a task" form: on to the task's own page."""
    return RedirectResponse(f"tasks/{id}", status_code=303)


@pages.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: TaskId) -> HTMLResponse:
    detail = await run_in_threadpool(task_detail, _engine(), task_id)
    if detail is None:
        raise HTTPException(404, f"no task has id {task_id}")
    return _render(request, "task.html", "tasks", task=detail, payload=_pretty(detail["payload"]))


@pages.get("/processes")
async def processes_page(request: Request, configuration: str | None = None, page: PageNumber = 1) -> HTMLResponse:
    def build() -> dict[str, Any]:
        engine = _engine()
        return {
            "rows": overview.process_rows(engine),
            "skipped": skipped_page(engine, configuration, page, PAGE_SIZE),
            "configuration": configuration,
        }

    return _render(request, "processes.html", "processes", **await run_in_threadpool(build))


def _pretty(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)


# -- JSON API ---------------------------------------------------------------------------------------

api = APIRouter(prefix="/api", dependencies=[Depends(require_dag_read)])


def _page_dict(page: Page) -> dict[str, Any]:
    return {"rows": page.rows, "total": page.total, "page": page.number, "pages": page.pages, "size": page.size}


@api.get("/jobs")
async def jobs_api(
    name: str = "",
    job: str = "",
    status: Literal["", "enabled", "disabled"] = "",
    page: PageNumber = 1,
    size: int = Query(JOBS_PAGE_SIZE, ge=1, le=1000),
) -> dict[str, Any]:
    filters = overview.JobFilters(name=name, job=job, status=status)
    found = await run_in_threadpool(lambda: overview.jobs_overview(_engine(), filters, page, size))
    return {
        "jobs": [row.as_dict() for row in found.rows],
        "total": found.total,
        "matching": found.matching,
        "page": found.page,
        "pages": found.pages,
        "invalid": [{"path": p.path, "key": p.key, "reason": p.reason} for p in found.problems],
    }


@api.get("/cron")
async def cron_api(
    expression: str = Query(...), timezone: str = "UTC", count: int = Query(10, ge=1, le=100)
) -> dict[str, Any]:
    check = await run_in_threadpool(overview.check_cron, expression, timezone, count)
    return check.as_dict()


@api.get("/routes")
async def routes_api() -> dict[str, Any]:
    rows = await run_in_threadpool(lambda: overview.route_rows(_engine()))
    return {"routes": [row.as_dict() for row in rows], "stuck_after_minutes": settings.stuck_after_minutes()}


@api.get("/routes/{route}/stuck")
async def stuck_api(route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)) -> dict[str, Any]:
    found = await run_in_threadpool(lambda: stuck_tasks(_engine(), route, overview.stuck_before(), page, size))
    return _page_dict(found)


@api.get("/routes/{route}/errors")
async def errors_api(route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)) -> dict[str, Any]:
    found = await run_in_threadpool(lambda: latest_errors(_engine(), route, page, size))
    return _page_dict(found)


@api.get("/tasks/{task_id}")
async def task_api(task_id: TaskId) -> dict[str, Any]:
    detail = await run_in_threadpool(task_detail, _engine(), task_id)
    if detail is None:
        raise HTTPException(404, f"no task has id {task_id}")
    return detail


@api.get("/processes")
async def processes_api() -> dict[str, Any]:
    rows = await run_in_threadpool(lambda: overview.process_rows(_engine()))
    return {"processes": [row.as_dict() for row in rows]}


@api.get("/processes/skipped")
async def skipped_api(
    configuration: str | None = None, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)
) -> dict[str, Any]:
    found = await run_in_threadpool(lambda: skipped_page(_engine(), configuration, page, size))
    return _page_dict(found)


# -- webhooks ---------------------------------------------------------------------------------------

webhooks = APIRouter(prefix="/webhooks")


@webhooks.post("/{incoming_configuration}", status_code=202)
async def push(incoming_configuration: str, request: Request) -> JSONResponse:
    """Entities in, 202 with the new task ids; the real-time routes' exports are handed to Airflow.

    Authentication before existence: a caller without a valid token, or with a secret that does not
    open this webhook, gets one answer whether the configuration exists or not. Only then 400 (bad
    body), 404 (unknown configuration), 409 (no route), 413 (too many bytes or records).
    """
    offered = request.headers.get(SECRET_HEADER) or None  # an empty secret is no secret: a token is needed
    if offered is None:
        require_dag_run_trigger(await authenticated_user(request))
    configurations = await run_in_threadpool(current_configurations)
    if offered is not None and not await run_in_threadpool(
        secret_opens, configurations, incoming_configuration, offered
    ):
        return JSONResponse({"detail": WRONG_SECRET}, 403)
    try:
        incoming = find_incoming(configurations, incoming_configuration)
        body = await read_body(request.stream(), request.headers.get("content-length"), settings.webhook_max_bytes())
        the_store = await run_in_threadpool(store)
        limit = settings.webhook_max_records()
        receipt = await run_in_threadpool(receive, configurations, incoming, body, the_store, limit)
    except WebhookRefused as refused:
        return JSONResponse({"detail": refused.message}, refused.status)
    if receipt.realtime_routes and receipt.task_ids:
        # Only an event per route: the export itself runs as an Airflow DAG run, never in this server.
        receipt.realtime_exports = await run_in_threadpool(
            hand_over, receipt.realtime_routes, incoming.identifier, len(receipt.task_ids)
        )
    return JSONResponse(receipt.as_dict(), 202)


def _bounds(request: Request, where: str, name: str) -> tuple[int, int] | None:
    """The declared range of a whole-number parameter of the route that answered, if it has one."""
    import annotated_types

    dependant = getattr(request.scope.get("route"), "dependant", None)
    params = {"query": "query_params", "path": "path_params"}.get(where)
    for param in getattr(dependant, params, []) if params else []:
        if param.alias == name and param.field_info.annotation is int:
            metadata = param.field_info.metadata
            low = [m.ge for m in metadata if isinstance(m, annotated_types.Ge) and isinstance(m.ge, int)]
            high = [m.le for m in metadata if isinstance(m, annotated_types.Le) and isinstance(m.le, int)]
            if low and high:
                return low[0], high[0]
    return None


def _shown(value: object) -> str:
    return shown(value, 40)


def parameter_errors(request: Request, exc: RequestValidationError) -> str:
    """``name: reason`` per refused parameter, a whole number's with its range (``page: must be ...``)."""
    reasons = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        where, name = (location[0], location[-1]) if len(location) > 1 else ("", ".".join(location) or "request")
        if error.get("type") == "missing":
            reasons.append(f"{name}: is required")
            continue
        bounds = _bounds(request, where, name)
        if bounds is not None:
            low, high = bounds
            reasons.append(f"{name}: must be a whole number from {low} to {high}, got {_shown(error.get('input'))}")
        else:
            reasons.append(f"{name}: {error.get('msg', 'is not valid')}, got {_shown(error.get('input'))}")
    return "; ".join(reasons)


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
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": parameter_errors(request, exc)}, 422)

    return app
