"""The web app mounted in Airflow's API server: the pages, their JSON API and the webhooks.

Every route needs an authenticated Airflow user (``security``); there is no OpenAPI page to leak the
routes. Blocking work (YAML, the store, Airflow's database) runs in worker threads, never on the
API server's event loop.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from scheduled_jobs import settings
from scheduled_jobs.catalog import current_configurations
from scheduled_jobs.cron_checker import check_cron
from scheduled_jobs.exceptions import StoreSchemaError, WebhookRefusedError
from scheduled_jobs.store import (
    STATUS_FILTERS,
    TaskFilter,
    TaskStore,
    TaskStoreHook,
    latest_errors,
    skipped_page,
    stuck_tasks,
)
from scheduled_jobs.web import access, console, overview
from scheduled_jobs.web import authoring as authoring_pages
from scheduled_jobs.web.access import Access
from scheduled_jobs.web.errors import parameter_errors
from scheduled_jobs.web.handoff import hand_over
from scheduled_jobs.web.responses import (
    ActionOutcome,
    CountChanged,
    CronCheck,
    CsrfToken,
    EntityPage,
    ErrorBody,
    JobsPage,
    Paged,
    Processes,
    ProcessHistory,
    Routes,
    SkippedRun,
    TaskCount,
    TaskList,
    TaskRow,
    TaskWithHistory,
    WebhookReceipt,
)
from scheduled_jobs.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SECRET_HEADER,
    USER_STATE,
    csrf_token,
    may_edit,
    require_csrf,
    require_dag_edit,
    require_dag_run_trigger,
)
from scheduled_jobs.web.webhooks import (
    WRONG_SECRET,
    find_incoming,
    read_body,
    receive,
    require_json,
    secret_opens,
    webhook_actor,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import Engine

    from scheduled_jobs.models.configurations import Configurations

PAGE_SIZE = 25
JOBS_PAGE_SIZE = 50
MAX_PAGE = 1_000_000
"""The last page number accepted: (page - 1) x size stays far inside any database's integer."""
MAX_ID = 2**63 - 1
"""The largest id a 64-bit integer column holds; a larger one is a 422, never an overflow in the database."""

# Every whole number a caller sends has a range; outside it the answer is a 422 that states the range.
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
TaskId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID)]
"""The task list's keyset: tasks with a smaller id (older) than this; absent for the newest."""
Filter = Annotated[TaskFilter, Depends(console.task_filter)]
"""The task list's filters as query parameters, each checked (422 naming the one refused)."""
Reader = Annotated[Access, Depends(access.reader)]
"""The caller's rights (``access``): every read is filtered to the DAGs the caller may read."""
SignedIn = Annotated[Access, Depends(access.signed_in)]
_TEMPLATES = Path(__file__).parent / "templates"

# Autoescape everything: names, payloads and errors come from users and from remote systems.
_environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True))
_environment.filters["age"] = overview.human_age
_environment.filters["duration"] = console.human_duration
_environment.filters["path"] = lambda value: quote(str(value), safe="")
_environment.globals["STATUS_LABELS"] = console.STATUS_LABELS
_environment.globals["ACTION_LABELS"] = console.ACTION_LABELS
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


def _render(request: Request, template: str, active: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    context = {"active": active, "root": _relative_root(request), **_forms(request), **values}
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _forms(request: Request) -> dict[str, Any]:
    """What a page's action forms need: whether the user may act, and the user's CSRF token."""
    user = getattr(request.state, USER_STATE, None)
    if user is None:
        return {"can_edit": False, "csrf": ""}
    try:
        token = csrf_token(request, user)
    except HTTPException:  # no secret to sign with: the forms are shown, and refused when sent
        token = ""
    return {"can_edit": may_edit(user), "csrf": token, "csrf_field": CSRF_FIELD}


def _scoped(found: TaskFilter, who: Access, method: Literal["GET", "PUT"] = "GET") -> TaskFilter:
    """The filter within the routes the caller may read (GET) or act on (PUT)."""
    return dataclasses.replace(found, routes=who.routes(method))


def _no_task(task_id: int) -> HTTPException:
    return HTTPException(404, f"no task has id {task_id}")


# -- the pages' scripts ---------------------------------------------------------------------------------

_STATIC = Path(__file__).parent / "static"
SCRIPTS = {path.name: path.read_bytes() for path in sorted(_STATIC.glob("*.js"))}
"""The pages' scripts by name, read once: the only files the app serves, so no name reaches the file system."""
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",  # our static/*.js only: no inline script, no on... attribute, no eval
        "style-src 'self' 'unsafe-inline'",  # the pages' own <style> blocks; styles run no code
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",  # only Airflow's own UI (this origin) may frame the pages
    )
)

assets = APIRouter(dependencies=[Depends(access.reader)])


@assets.get("/static/{name}")
async def script(name: str) -> Response:
    """One of the pages' scripts (``static/*.js``), to a signed-in reader; any other name is a 404."""
    found = SCRIPTS.get(name)
    if found is None:
        raise HTTPException(404, "no such script")
    return Response(found, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "private, no-cache"})


# -- pages ------------------------------------------------------------------------------------------

pages = APIRouter(dependencies=[Depends(access.reader)], default_response_class=HTMLResponse)


@pages.get("/jobs")
async def jobs_page(
    request: Request,
    who: Reader,
    *,
    name: str = "",
    job: str = "",
    status: Literal["", "enabled", "disabled"] = "",
    page: PageNumber = 1,
) -> HTMLResponse:
    filters = overview.JobFilters(name=name, job=job if job in overview.JOB_TYPES else "", status=status)
    found = await run_in_threadpool(
        lambda: overview.jobs_overview(_engine(), filters, page, JOBS_PAGE_SIZE, catalog=who.catalog, access=who)
    )
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
    request: Request, who: Reader, route: str | None = None, stuck_page: PageNumber = 1, errors_page: PageNumber = 1
) -> HTMLResponse:
    route = console.text("route", route, console.ROUTE_MAX)

    def build() -> dict[str, Any]:
        rows = overview.route_rows(_engine(), who.catalog, access=who)
        values: dict[str, Any] = {"routes": rows, "route": route, "stuck": None, "errors": None}
        if route is not None:
            values["stuck"] = _stuck(who, route, stuck_page, PAGE_SIZE)
            values["errors"] = _errors(who, route, errors_page, PAGE_SIZE)
        values["stuck_after_minutes"] = settings.stuck_after_minutes()
        return values

    return _render(request, "tasks.html", "tasks", **await run_in_threadpool(build))


@pages.get("/task")
async def open_task(id: Annotated[int, Query(ge=1, le=MAX_ID)]) -> RedirectResponse:
    """The Tasks page's "open a task" form: on to the task's own page."""
    return RedirectResponse(f"tasks/{id}", status_code=303)


def _stuck(who: Access, route: str, page: int, size: int) -> Paged[TaskRow]:
    """A route's stuck tasks; a route the caller may not read has none, as a route that does not exist."""
    if not who.may_route("GET", route):
        return overview.paged(overview.empty_page(page, size), TaskRow)
    return overview.paged(stuck_tasks(_engine(), route, overview.stuck_before(), page, size), TaskRow)


def _errors(who: Access, route: str, page: int, size: int) -> Paged[TaskRow]:
    if not who.may_route("GET", route):
        return overview.paged(overview.empty_page(page, size), TaskRow)
    return overview.paged(latest_errors(_engine(), route, page, size), TaskRow)


def _configured_routes(who: Access) -> list[str]:
    readable = who.routes("GET")
    return sorted(r for r in current_configurations().routes.valid if readable is None or r in readable)


@pages.get("/tasks/list")
async def task_list_page(request: Request, who: Reader, found: Filter, before: Before = None) -> HTMLResponse:
    """Every task the filters keep, newest first, 50 a page (keyset: ``before`` an id), with the actions."""

    def build() -> dict[str, Any]:
        listed = console.task_list(_engine(), _scoped(found, who), before, console.LIST_SIZE)
        return {"listed": listed, "routes": _configured_routes(who)}

    values = console.filter_values(found)
    return _render(
        request,
        "task_list.html",
        "tasks",
        **await run_in_threadpool(build),
        filter=found,
        filter_values=values,
        filter_query=urlencode(values),
        filter_text=console.describe_filter(found),
        before=before,
        statuses=STATUS_FILTERS,
    )


@pages.get("/tasks/{task_id}")
async def task_page(request: Request, who: Reader, task_id: TaskId) -> HTMLResponse:
    detail = await run_in_threadpool(_task_with_history, who, task_id)
    return _render(request, "task.html", "tasks", task=detail, payload=_pretty(detail.payload))


@pages.get("/entity")
async def entity_page(request: Request, who: Reader, route: str = "", entity_key: str = "") -> HTMLResponse:
    """Every task made for one entity key on a route, newest first, and the content it last had."""
    found = await run_in_threadpool(_entity, who, route, entity_key)
    return _render(request, "entity.html", "tasks", entity=found, payload=_pretty(found.last_payload))


def _task_with_history(who: Access, task_id: int) -> TaskWithHistory:
    detail = console.task_with_history(_engine(), task_id)
    if detail is None or not who.may_route("GET", detail.route):
        raise _no_task(task_id)  # one that may not be read is one that does not exist
    return detail


def _entity(who: Access, route: str, entity_key: str) -> EntityPage:
    found = console.entity_page(_engine(), route, entity_key) if who.may_route("GET", route) else None
    if found is None:
        raise HTTPException(404, f"no entity {entity_key!r} on route {route!r}")
    return found


@pages.get("/processes")
async def processes_page(
    request: Request, who: Reader, configuration: str | None = None, page: PageNumber = 1
) -> HTMLResponse:
    configuration = console.text("configuration", configuration, console.CONFIGURATION_MAX)

    def build() -> dict[str, Any]:
        engine = _engine()
        rows = overview.process_rows(engine, who.catalog, access=who)
        history = _history(who, None, console.HISTORY_PER_CONFIGURATION)
        names = [row.configuration for row in rows]
        return {
            "rows": rows,
            "skipped": _skipped(who, configuration, page, PAGE_SIZE),
            "configuration": configuration,
            "history": history.configurations,
            "skipped_of": console.skipped_of(engine, names, 5, dag_ids=who.skipped_dags()),
        }

    return _render(request, "processes.html", "processes", **await run_in_threadpool(build))


def _pretty(payload: Any) -> str:
    return console.pretty(payload)


def _skipped(who: Access, configuration: str | None, page: int, size: int) -> Paged[SkippedRun]:
    found = skipped_page(_engine(), configuration, page, size, dag_ids=who.skipped_dags())
    return overview.paged(found, SkippedRun)


def _history(who: Access, configuration: str | None, per_configuration: int) -> ProcessHistory:
    """The runs of the configurations the caller may see, and of the DAGs it may see only."""
    found = console.process_history(_engine(), configuration, per_configuration)
    visible, dags = who.configurations("GET"), who.skipped_dags()
    if visible is None and dags is None:
        return found
    kept = {
        name: [run for run in runs if dags is None or run.dag_id in dags]
        for name, runs in found.configurations.items()
        if visible is None or name in visible
    }
    return ProcessHistory(configurations={name: runs for name, runs in kept.items() if runs})


# -- the pages' actions (forms) -----------------------------------------------------------------------

# Not under ``pages``: a form is authenticated first, then its CSRF token and the right to edit DAGs are
# checked, in that order, before anything is read from the store.
page_actions = APIRouter(default_response_class=HTMLResponse)
_FILTER_FIELDS = (
    "route",
    "status",
    "entity_key",
    "prefix",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
)


async def _form(request: Request) -> list[tuple[str, str]]:
    body = await console.read_body(request.stream(), request.headers.get("content-length"))
    try:
        return parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=console.MAX_IDS + 50
        )
    except UnicodeDecodeError:
        raise console.refuse("body", "is not UTF-8") from None
    except ValueError:
        raise console.too_many_ids(body.count(b"&") + 1) from None


def _field(form: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in form if key == name), None)


@page_actions.post("/tasks/actions")
async def task_action_form(request: Request, who: SignedIn) -> HTMLResponse:
    """The forms of the task list and a task's page: ``do`` is ``<action>-selected`` or ``<action>-matching``.

    Selected tasks are acted on at once. "Everything matching" first shows the count and asks to
    confirm; the confirmation sends that count back, and a filter whose count changed meanwhile is
    shown again with the new count, changing nothing.
    """
    user = who.user
    form = await _form(request)
    require_csrf(request, user, _field(form, CSRF_FIELD))
    require_dag_edit(user)
    back = _field(form, "back") or ""
    try:
        do = _field(form, "do") or ""
        named, _, scope = do.partition("-")
        act = next((a for a in console.ACTIONS if a == named), None)
        if act is None or scope not in ("selected", "matching"):
            raise console.refuse("do", f"must be <retry|skip|delete>-<selected|matching>, got {do[:40]!r}")
        reason = console.reason_text(_field(form, "reason")) if act == "skip" else None
        if act != "skip" and (_field(form, "reason") or "").strip():
            # Enter in the reason box submits with the form's first button (Retry): a reason means Skip.
            raise console.refuse(
                "reason",
                f"goes with Skip, not {act.capitalize()}: press Skip, or clear the reason; nothing was changed",
            )
        if scope == "selected":
            named_ids = console.task_ids([value for key, value in form if key == "id"])
            selection = dataclasses.replace(named_ids, routes=who.routes("PUT"))
            outcome = await run_in_threadpool(
                lambda: console.run_action(_engine(), act, selection, user=user, reason=reason, via="page")
            )
            return _render(request, "action_done.html", "tasks", outcome=outcome, back=back, filter_query="")
        values = {name: _field(form, name) for name in _FILTER_FIELDS}
        asked = console.task_filter(**{**values, "prefix": values["prefix"] in ("1", "true", "on")})  # type: ignore[arg-type]
        found = _scoped(asked, who, "PUT")
        count = await run_in_threadpool(console.current_count, _engine(), found)
        confirmed_text = _field(form, "confirm_count") or ""
        confirmed = (
            int(confirmed_text) if console.is_whole_number(confirmed_text) and len(confirmed_text) < 10 else None
        )
        filter_values = console.filter_values(asked)
        console.require_within_action_cap(count)
        if confirmed is None or confirmed != count:
            return _render(
                request,
                "action_confirm.html",
                "tasks",
                status_code=200 if confirmed is None else 409,
                action=act,
                count=count,
                cap=console.COUNT_CAP,
                changed_from=confirmed,
                reason=reason,
                filter_values=filter_values,
                filter_text=console.describe_filter(asked),
                filter_query=urlencode(filter_values),
            )
        outcome = await run_in_threadpool(
            lambda: console.run_action(_engine(), act, found, user=user, reason=reason, via="page")
        )
        return _render(
            request, "action_done.html", "tasks", outcome=outcome, back=back, filter_query=urlencode(filter_values)
        )
    except HTTPException as refused:
        if refused.status_code not in (409, 413, 422):
            raise
        return _render(
            request, "action_done.html", "tasks", status_code=refused.status_code, refused=refused.detail, back=back
        )


# -- JSON API ---------------------------------------------------------------------------------------

api = APIRouter(prefix="/api", dependencies=[Depends(access.reader)])


@api.get("/jobs")
async def jobs_api(
    who: Reader,
    *,
    name: str = "",
    job: str = "",
    status: Literal["", "enabled", "disabled"] = "",
    page: PageNumber = 1,
    size: int = Query(JOBS_PAGE_SIZE, ge=1, le=1000),
) -> JobsPage:
    filters = overview.JobFilters(name=name, job=job, status=status)
    return await run_in_threadpool(
        lambda: overview.jobs_overview(_engine(), filters, page, size, catalog=who.catalog, access=who)
    )


@api.get("/cron")
async def cron_api(
    expression: str = Query(...), timezone: str = "UTC", count: int = Query(10, ge=1, le=100)
) -> CronCheck:
    return await run_in_threadpool(check_cron, expression, timezone, count)


@api.get("/routes")
async def routes_api(who: Reader) -> Routes:
    rows = await run_in_threadpool(lambda: overview.route_rows(_engine(), who.catalog, access=who))
    return Routes(routes=rows, stuck_after_minutes=settings.stuck_after_minutes())


@api.get("/routes/{route}/stuck")
async def stuck_api(
    who: Reader, route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)
) -> Paged[TaskRow]:
    console.text("route", route, console.ROUTE_MAX)
    return await run_in_threadpool(_stuck, who, route, page, size)


@api.get("/routes/{route}/errors")
async def errors_api(
    who: Reader, route: str, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)
) -> Paged[TaskRow]:
    console.text("route", route, console.ROUTE_MAX)
    return await run_in_threadpool(_errors, who, route, page, size)


@api.get("/tasks")
async def task_list_api(
    who: Reader,
    found: Filter,
    before: Before = None,
    size: int = Query(console.LIST_SIZE, ge=1, le=console.MAX_LIST_SIZE),
) -> TaskList:
    """Tasks newest first; the next (older) page is ``before=<next_before>``, with the same filters."""
    return await run_in_threadpool(console.task_list, _engine(), _scoped(found, who), before, size)


@api.get("/tasks/count")
async def task_count_api(who: Reader, found: Filter) -> TaskCount:
    """How many tasks a filter matches among those the caller may act on: the ``confirm_count`` an action sends."""
    count = await run_in_threadpool(console.current_count, _engine(), _scoped(found, who, "PUT"))
    return TaskCount(count=count, cap=console.COUNT_CAP, more_than_cap=count > console.COUNT_CAP)


@api.get("/tasks/{task_id}")
async def task_api(who: Reader, task_id: TaskId) -> TaskWithHistory:
    """The task, its payload, and its history (oldest first)."""
    return await run_in_threadpool(_task_with_history, who, task_id)


@api.get("/entities/{route}/{entity_key:path}")
async def entity_api(who: Reader, route: str, entity_key: str) -> EntityPage:
    """An entity's tasks (newest first) and its last content; the key may hold ``/`` (or send it encoded)."""
    return await run_in_threadpool(_entity, who, route, entity_key)


@api.get("/entity")
async def entity_query_api(who: Reader, route: str = "", entity_key: str = "") -> EntityPage:
    """The same as ``/entities/<route>/<key>``, for keys easier sent as query parameters."""
    return await run_in_threadpool(_entity, who, route, entity_key)


@api.get("/csrf-token")
async def csrf_token_api(request: Request, who: Reader) -> CsrfToken:
    """The token a script signed in by the UI's session cookie sends as the X-CSRF-Token header of a POST."""
    return CsrfToken(token=csrf_token(request, who.user), header=CSRF_HEADER, field=CSRF_FIELD)


@api.get("/processes")
async def processes_api(who: Reader) -> Processes:
    rows = await run_in_threadpool(lambda: overview.process_rows(_engine(), who.catalog, access=who))
    return Processes(processes=rows)


@api.get("/processes/history")
async def process_history_api(
    who: Reader, configuration: str | None = None, per_configuration: int = Query(10, ge=1, le=100)
) -> ProcessHistory:
    """Per configuration its last runs: state (Airflow's when ours was left running), duration, figures, links."""
    checked = console.text("configuration", configuration, console.CONFIGURATION_MAX)
    return await run_in_threadpool(_history, who, checked, per_configuration)


@api.get("/processes/skipped")
async def skipped_api(
    who: Reader, configuration: str | None = None, page: PageNumber = 1, size: int = Query(PAGE_SIZE, ge=1, le=500)
) -> Paged[SkippedRun]:
    configuration = console.text("configuration", configuration, console.CONFIGURATION_MAX)
    return await run_in_threadpool(_skipped, who, configuration, page, size)


# -- the JSON API's actions ---------------------------------------------------------------------------

actions = APIRouter(prefix="/api/tasks")


async def _api_action(request: Request, who: Access, action: console.Action) -> ActionOutcome | JSONResponse:
    user = who.user
    require_csrf(request, user, request.headers.get(CSRF_HEADER))
    require_dag_edit(user)
    body = await console.read_body(request.stream(), request.headers.get("content-length"))
    asked, confirmed, reason = console.action_request(body, action)
    selection = dataclasses.replace(asked, routes=who.routes("PUT"))
    if confirmed is not None and isinstance(selection, TaskFilter):
        count = await run_in_threadpool(console.current_count, _engine(), selection)
        console.require_within_action_cap(count)
        if count != confirmed:
            detail = (
                f"confirm_count: the filter now matches {count} tasks, not the {confirmed} confirmed; "
                f"nothing was changed: send confirm_count {count} to go on"
            )
            return JSONResponse(CountChanged(detail=detail, count=count).model_dump(), 409)
    return await run_in_threadpool(
        lambda: console.run_action(_engine(), action, selection, user=user, reason=reason, via="api")
    )


@actions.post("/retry", response_model=ActionOutcome)
async def retry_api(request: Request, who: SignedIn) -> ActionOutcome | JSONResponse:
    """Failed or skipped tasks back to "new": ``{"ids": [...]}`` or ``{"filter": {...}, "confirm_count": N}``."""
    return await _api_action(request, who, "retry")


@actions.post("/skip", response_model=ActionOutcome)
async def skip_api(request: Request, who: SignedIn) -> ActionOutcome | JSONResponse:
    """New or failed tasks to "skipped", with a ``reason``."""
    return await _api_action(request, who, "skip")


@actions.post("/delete", response_model=ActionOutcome)
async def delete_api(request: Request, who: SignedIn) -> ActionOutcome | JSONResponse:
    """Tasks deleted with their history (any status but processing); the audit log keeps the action."""
    return await _api_action(request, who, "delete")


# -- webhooks ---------------------------------------------------------------------------------------

webhooks = APIRouter(prefix="/webhooks")


_log = logging.getLogger(__name__)
STORE_SCHEMA_REASON = (
    "the task store's schema is older or newer than this version of airflow-scheduled-jobs needs: an operator "
    "runs `scheduled-jobs db upgrade` (the API server's log says which revision it has)"
)
STORE_AWAY_REASON = (
    "the task store or Airflow's database cannot be used right now; try again (the API server's log says why)"
)


def _refused(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status, headers=headers)


@webhooks.post("/{incoming_configuration}", status_code=202, response_model=WebhookReceipt)
async def push(
    incoming_configuration: str, request: Request, who: Annotated[Access | None, Depends(access.webhook_caller)]
) -> WebhookReceipt | JSONResponse:
    """Entities in, 202 with the new task ids; the real-time routes' exports are handed to Airflow.

    Authentication before existence: a caller without a valid token, or with a secret that does not
    open this webhook, gets one answer whether the configuration exists or not; a caller signed in by the
    session cookie alone also sends the X-CSRF-Token header (403 without). Only then 415 (not
    ``application/json``), 400 (bad body), 404 (unknown configuration), 409 (no route), 413 (too many bytes
    or records).
    """
    offered = request.headers.get(SECRET_HEADER) or None  # an empty secret is no secret: a token is needed
    user_name = None
    if who is not None:
        # Signed in by the UI's cookie alone: another site's form could have sent it, as on every other POST.
        require_csrf(request, who.user, request.headers.get(CSRF_HEADER))
        require_dag_run_trigger(who.user)
        user_name = who.user.get_name()
    configurations = await run_in_threadpool(current_configurations)
    if offered is not None and not await run_in_threadpool(
        secret_opens, configurations, incoming_configuration, offered
    ):
        return _refused(403, WRONG_SECRET)
    try:
        require_json(request.headers.get("content-type"))
        # One the caller may not push to is one that does not exist: the same 404, naming only what it may see.
        visible = await run_in_threadpool(_visible_incoming, configurations, who)
        incoming = find_incoming(visible, incoming_configuration)
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


def _visible_incoming(configurations: Configurations, who: Access | None) -> Configurations:
    """The configurations with only the incoming ones the caller may push to (all, for the webhook's secret)."""
    if who is None:
        return configurations
    shown = {name: loaded for name, loaded in configurations.incoming.valid.items() if who.may_push(name)}
    if len(shown) == len(configurations.incoming.valid):
        return configurations
    shelf = dataclasses.replace(configurations.incoming, valid=shown, invalid={})
    return dataclasses.replace(configurations, incoming=shelf)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Scheduled jobs",
        # No /docs, /redoc or /openapi.json: they would be routes without authentication.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # No "/jobs/" -> "/jobs" redirect: Starlette builds its Location from the request's Host header, before
        # any authentication, and a 307 would carry a webhook's body and secret to that host. Airflow's own
        # API answers 404 there too.
        redirect_slashes=False,
    )
    app.include_router(assets)
    app.include_router(pages)
    authoring_pages.install(app, _environment)  # "+ New scheduled job", edit, disable/enable
    app.include_router(page_actions)
    app.include_router(api)
    app.include_router(actions)
    app.include_router(webhooks)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        """On every answer: only our own scripts run (no inline script: a markup that slipped through escaping
        runs nothing), only Airflow's own UI (this origin) may frame the pages, no type is sniffed, and no cache
        keeps pages, JSON or errors: they show tasks, payloads and the forms' CSRF token."""
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _refused(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _refused(422, parameter_errors(request, exc))

    # The task store the pages cannot use: 503 with what to do, not a bare 500. The sentences are ours: the
    # schema error names the store's host and database, and a driver's error its SQL; the log keeps them.
    @app.exception_handler(StoreSchemaError)
    async def _store_schema(request: Request, exc: StoreSchemaError) -> JSONResponse:
        _log.error("%s %s: %s", request.method, request.url.path, exc)
        return _refused(503, STORE_SCHEMA_REASON, {"Retry-After": "60"})

    @app.exception_handler(DBAPIError)
    async def _store_away(request: Request, exc: DBAPIError) -> JSONResponse:
        _log.error("%s %s: a database error: %s", request.method, request.url.path, type(exc.orig).__name__)
        return _refused(503, STORE_AWAY_REASON, {"Retry-After": "30"})

    return app
