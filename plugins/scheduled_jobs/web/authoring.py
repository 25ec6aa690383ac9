"""The pages that write job definitions: "+ New scheduled job", edit, disable and enable.

Reading the form needs the right to read DAGs, like every page. Every POST is authenticated first, then
its body read (capped, strict UTF-8), then its CSRF token and the right to edit DAGs checked, before any
file is read; only "Show the YAML" (``do=preview``), which writes nothing, needs no more than reading DAGs, so
a Viewer can copy the YAML to commit it. A save happens only when ``authoring.saving_refused()`` says
nothing (``[scheduled_jobs] ui_editing`` on and the folder writable); otherwise the form shows the YAML to copy or
download.
Every save is a row in Airflow's audit log; a disable or enable also pauses or unpauses the job's DAG.
"""

from __future__ import annotations

import json
import logging
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl

from airflow.api_fastapi.app import get_auth_manager
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from scheduled_jobs import airflow_runs, authoring, settings
from scheduled_jobs.catalog import ScheduledJob, current_catalog, current_configurations
from scheduled_jobs.cron_checker import check_cron
from scheduled_jobs.models.jobs import LABELS
from scheduled_jobs.web import access, console
from scheduled_jobs.web.access import Access
from scheduled_jobs.web.security import CSRF_FIELD, require_csrf, require_dag_edit

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from fastapi import FastAPI
    from jinja2 import Environment

    from scheduled_jobs.exceptions import Problem

log = logging.getLogger(__name__)
MAX_FIELDS = 60
"""A job's form has some twenty fields; far more is no form of ours."""
FIRE_TIMES = 5

router = APIRouter(default_response_class=HTMLResponse)
Reader = Annotated[Access, Depends(access.reader)]
SignedIn = Annotated[Access, Depends(access.signed_in)]


def install(app: FastAPI, environment: Environment) -> None:
    """Mount the authoring pages on the web app; the jobs page asks ``saving_refused()`` for its buttons."""
    environment.globals["authoring_saving_refused"] = authoring.saving_refused
    app.include_router(router)


# -- what the form shows --------------------------------------------------------------------------


def _timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones() - authoring.UNPLACED_TIMEZONES.keys())


def _parse_seconds() -> dict[str, int]:
    from airflow.configuration import conf

    return {
        "min_file_process_interval": conf.getint("dag_processor", "min_file_process_interval", fallback=30),
        "refresh_interval": conf.getint("dag_processor", "refresh_interval", fallback=300),
    }


def _choices(current: dict[str, str]) -> dict[str, Any]:
    """The dropdowns: incoming configurations a schedule can run (with a subscriber), and routes."""
    configurations = current_configurations()
    incoming = [
        (identifier, loaded.model.name)
        for identifier, loaded in sorted(configurations.incoming.valid.items())
        if loaded.model.subscriber is not None
    ]
    routes = [(identifier, loaded.model.name) for identifier, loaded in sorted(configurations.routes.valid.items())]
    for key, listed in (("incoming_configuration", incoming), ("route", routes)):
        value = current.get(key)
        if value and value not in {identifier for identifier, _ in listed}:
            listed.append((value, "(not a valid configuration)"))
    return {"incoming": incoming, "routes": routes}


def _context(values: dict[str, str], **more: Any) -> dict[str, Any]:
    expression = values.get("expression") or ""
    timezone = values.get("timezone") or settings.default_timezone()
    check = check_cron(expression, timezone, FIRE_TIMES) if expression.strip() else None
    return {
        "values": values,
        "problems": {},
        "kinds": LABELS,
        "kind_fields": authoring.KIND_FIELDS,
        "common_fields": authoring.COMMON_FIELDS,
        "timezones": _timezones(),
        "default_timezone": settings.default_timezone(),
        "saving_refused": authoring.saving_refused(),
        "check": check,
        "limits": authoring.LIMITS,
        "parse": _parse_seconds(),
        **_choices(values),
        # Problems other files already had: the page says `validate` still fails, whatever this draft is.
        "elsewhere": more["draft"].elsewhere if more.get("draft") is not None else [],
        **more,
    }


def _render(request: Request, who: Access, status_code: int = 200, **values: Any) -> HTMLResponse:
    from scheduled_jobs.web.app import _render as render_page

    return render_page(request, "job_form.html", "jobs", status_code=status_code, **_offered(values, who))


def _offered(values: dict[str, Any], who: Access) -> dict[str, Any]:
    """The dropdowns with only what the caller may see: a route whose tasks they may read, an incoming
    configuration one of their jobs runs or one of those routes starts from (listing the others would tell
    them they exist). What the caller typed themselves stays, as it was shown."""
    routes = who.routes("GET")
    if routes is None:
        return values
    configurations = who.configurations("GET") or frozenset()
    loaded = who.catalog.configurations.routes.valid if who.catalog.configurations else {}
    incoming = {f"incoming:{r.model.incoming_configuration}" for i, r in loaded.items() if i in routes}
    offered = {
        "routes": [(i, n) for i, n in values.get("routes", []) if i in routes],
        "incoming": [(i, n) for i, n in values.get("incoming", []) if f"incoming:{i}" in configurations | incoming],
    }
    typed = values.get("values", {})
    for key, field in (("routes", "route"), ("incoming", "incoming_configuration")):
        value = typed.get(field)
        if value and value not in {i for i, _ in offered[key]}:
            # What the caller typed stays selected, named as any value that is not theirs: never by its name.
            offered[key].append((value, "(not a valid configuration)"))
    return {**values, **offered}


def _job(identifier: str, who: Access, method: Literal["GET", "PUT"] = "GET") -> ScheduledJob:
    """The job, if the caller may read its DAG (404 as for a job that does not exist) and, for a save or a
    toggle (PUT), edit it (403)."""
    checked = console.text("identifier", identifier, authoring.TEXT_LIMIT)
    job = current_catalog().jobs.get(checked or "")
    if job is None or not who.may_job("GET", job.identifier):
        raise HTTPException(404, f"identifier: no valid scheduled job has identifier {identifier[:80]!r}")
    if method == "PUT" and not who.may_job("PUT", job.identifier):
        raise HTTPException(403, f"Forbidden: saving job {job.identifier!r} needs the right to edit its DAG")
    if method == "PUT" and job.definition.job in EVERY_ROUTE and not who.unrestricted("PUT"):
        raise HTTPException(403, EVERY_ROUTE_REFUSAL.format(kind=job.definition.job))
    return job


EVERY_ROUTE = ("prune_tasks", "repair_stuck_tasks")
"""Job kinds that act on the tasks of every route, whoever's they are."""
EVERY_ROUTE_REFUSAL = (
    "Forbidden: a {kind} job acts on the tasks of every route, every team's: saving, disabling or enabling one "
    "needs the right to edit every DAG; nothing was saved"
)
NOT_YOURS = "no {what} you may use has identifier {value!r} (yours: {yours}); nothing was saved"


def _out_of_scope(who: Access, form: dict[str, str]) -> tuple[int, dict[str, list[str]]] | None:
    """Refuse, before any draft is made, a job that would act beyond the caller's DAGs: one pointed at a route
    or incoming configuration that is not theirs (its DAG would become one of that route's, and open its tasks
    and webhook to them), or one that acts on every route (prune, repair) for a caller who may not edit every
    DAG. A route that is another team's and one that does not exist get the same words, which list only the
    caller's own: what is not theirs is never named."""
    method: Literal["GET", "PUT"] = "GET" if form.get("do") == "preview" else "PUT"
    kind = form.get("job")
    if kind in EVERY_ROUTE and method == "PUT" and not who.unrestricted("PUT"):
        return 403, {authoring.GENERAL: [EVERY_ROUTE_REFUSAL.format(kind=kind)]}
    configurations = who.catalog.configurations
    if kind == "outgoing" and (route := form.get("route")) and not who.may_use_route(method, route):
        known = sorted(configurations.routes.valid) if configurations else []
        yours = [r for r in known if who.may_use_route(method, r)]
        reason = NOT_YOURS.format(what="route", value=route[:80], yours=", ".join(yours) or "none")
        return 422, {"route": [reason]}
    incoming = form.get("incoming_configuration")
    if kind == "incoming" and incoming and not who.may_use_incoming(method, incoming):
        known = sorted(configurations.incoming.valid) if configurations else []
        yours = [i for i in known if who.may_use_incoming(method, i)]
        reason = NOT_YOURS.format(what="incoming configuration", value=incoming[:80], yours=", ".join(yours) or "none")
        return 422, {"incoming_configuration": [reason]}
    return None


UNUSABLE = (
    "is not one you may use: a job of this identifier would be a DAG you may not {what}; choose another; "
    "nothing was saved"
)


def _may_use(who: Access, identifier: str, method: Literal["GET", "PUT"]) -> bool:
    """Whether the caller may create a job of ``identifier`` (PUT) or be shown its draft (GET): Airflow's
    answer for that DAG id, with its team when Airflow knows the DAG. A job the caller may not see, a DAG of
    another team that no file holds any more and one the caller may only read all answer alike."""
    if not authoring.is_identifier(identifier):
        return True  # the draft's own problem says why; it names no file
    return who.may_dag("GET", identifier) and (method == "GET" or who.may_dag("PUT", identifier))


def _unusable() -> dict[str, list[str]]:
    """The one refusal of an identifier the caller may not use: the same words whatever the reason."""
    return {"identifier": [UNUSABLE.format(what="edit")]}


def _file_readable(who: Access, path: Path) -> bool:
    """Whether the caller may learn that the file ``path`` exists: a job file of a DAG it may read, or any
    file for one who reads every DAG (invalid files are shown only to them)."""
    if who.unrestricted("GET"):
        return True
    readable = who.job_ids("GET")
    return any(job.path == path and job.identifier in readable for job in who.catalog.jobs.values())


def _visible(who: Access) -> Callable[[Problem], bool]:
    """Which files a problem may name to this caller: those of jobs it may read, and the configurations of
    routes it may read (a route, its incoming and its outgoing configuration); all for one who reads every
    DAG. Any other file a change would make invalid is counted, never named (``authoring.check``)."""
    if who.unrestricted("GET"):
        return lambda problem: True
    catalog = who.catalog
    readable = who.job_ids("GET")
    paths = {str(job.path) for job in catalog.jobs.values() if job.identifier in readable}
    configurations = catalog.configurations
    if configurations is not None:
        routes = who.routes("GET")
        for identifier, loaded in configurations.routes.valid.items():
            if routes is None or identifier in routes:
                paths.add(str(loaded.path))
                for kind, target in (
                    ("incoming", loaded.model.incoming_configuration),
                    ("outgoing", loaded.model.outgoing_configuration),
                ):
                    found = configurations.shelf(kind).valid.get(target)
                    if found is not None:
                        paths.add(str(found.path))
        for job in catalog.jobs.values():
            incoming = getattr(job.definition, "incoming_configuration", None)
            if job.identifier in readable and incoming in configurations.incoming.valid:
                paths.add(str(configurations.incoming.valid[incoming].path))
    return lambda problem: problem.path in paths


# -- reading a POST -------------------------------------------------------------------------------


async def _form(request: Request, who: Access, *, preview_allowed: bool = False) -> tuple[BaseUser, dict[str, str]]:
    """The signed-in user and the form's fields (first value of each), once CSRF and the right to edit hold.

    ``preview_allowed``: a form's "Show the YAML" (``do=preview``) writes nothing, so reading DAGs is enough
    for it (a Viewer may copy the YAML to commit it); CSRF is checked all the same.
    """
    user = who.user
    body = await console.read_body(request.stream(), request.headers.get("content-length"))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise console.refuse("body", "is not UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:  # a %-escape of a byte that is no UTF-8 (caf%E9)
        raise console.refuse("body", "is not UTF-8 (a %-escaped byte)") from None
    except ValueError:
        raise console.refuse("body", f"holds more than {MAX_FIELDS} fields", 413) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    require_csrf(request, user, form.get(CSRF_FIELD))
    if not (preview_allowed and form.get("do") == "preview"):
        require_dag_edit(user, "saving scheduled jobs")
    elif not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(403, "Forbidden: reading scheduled jobs needs read access to DAGs")
    return user, form


def _audit(event: str, user: BaseUser, extra: dict[str, Any]) -> int | None:
    try:
        return airflow_runs.record_audit_log(f"job_definitions.{event}", user.get_name(), None, extra)
    except Exception:  # the file is saved; the row that failed is logged whole, to be found in the server's log
        log.exception("Could not write Airflow's audit log for %s", json.dumps(extra, default=str)[:2000])
        return None


def _ask_parse(identifier: str) -> bool:
    """Ask Airflow to parse the DAG file of our jobs now (the one that defines the others' DAGs)."""
    try:
        ids = sorted(current_catalog().jobs)
        return airflow_runs.request_parse([identifier, *ids[:50]]) > 0
    except Exception:  # the periodic parse still comes
        log.exception("Could not ask Airflow to parse the scheduled jobs' DAG file")
        return False


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(key for key in {*before, *after} if before.get(key) != after.get(key))


# -- new ------------------------------------------------------------------------------------------


@router.get("/jobs/new")
async def new_job_page(request: Request, who: Reader) -> HTMLResponse:
    values = {"job": "incoming", "priority": "0", "overlap": "buffer_one", "timezone": settings.default_timezone()}
    context = await run_in_threadpool(_context, values, mode="new")
    return _render(request, who, **context)


@router.post("/jobs/new")
async def new_job_save(request: Request, who: SignedIn) -> HTMLResponse:
    user, form = await _form(request, who, preview_allowed=True)

    def work() -> tuple[int, dict[str, Any]]:
        if scope := _out_of_scope(who, form):
            shown = {k: v for k, v in form.items() if k in authoring.FIELDS}
            return scope[0], _context(shown, mode="new", problems=scope[1], identifier_auto=not form.get("identifier"))
        draft, _values = authoring.new_draft(form, _visible(who))
        shown = {k: v for k, v in form.items() if k in authoring.FIELDS}
        # An identifier left empty is made from the name: shown as made, and still following the name.
        shown["identifier"] = form.get("identifier") or draft.identifier or ""
        auto = not form.get("identifier")
        method: Literal["GET", "PUT"] = "GET" if form.get("do") == "preview" else "PUT"
        if draft.identifier is not None and not _may_use(who, draft.identifier, method):
            # Before any of the draft's problems: "also defined in" would tell that a hidden job exists.
            return 403, _context(
                shown, mode="new", problems=_unusable(), yaml=draft.text, draft=draft, identifier_auto=auto
            )
        refused = authoring.saving_refused()
        if not draft.valid or refused or form.get("do") == "preview":
            status = 422 if not draft.valid else 200
            return status, _context(
                shown, mode="new", problems=draft.problems, yaml=draft.text, draft=draft, identifier_auto=auto
            )
        assert draft.identifier is not None
        try:
            saved = authoring.create(draft.identifier, draft.text)
        except authoring.ExistsError as refusal:
            if not _file_readable(who, refusal.path):  # a file of a job the caller may not see: never "exists"
                return 403, _context(
                    shown, mode="new", problems=_unusable(), yaml=draft.text, draft=draft, identifier_auto=auto
                )
            draft.problems.add(refusal.key, refusal.reason)
            return 409, _context(
                shown, mode="new", problems=draft.problems, yaml=draft.text, draft=draft, identifier_auto=auto
            )
        except authoring.AuthoringError as refusal:
            draft.problems.add(refusal.key, refusal.reason)
            return 409, _context(
                shown, mode="new", problems=draft.problems, yaml=draft.text, draft=draft, identifier_auto=auto
            )
        audit = _audit(
            "create",
            user,
            {"identifier": draft.identifier, "path": str(saved.path), "version": saved.version, "via": "page"},
        )
        asked = _ask_parse(draft.identifier)
        return 201, _context(
            shown,
            mode="saved",
            saved=saved,
            identifier=draft.identifier,
            audit_id=audit,
            asked_parse=asked,
            verb="Created",
            elsewhere=draft.elsewhere,
        )

    status, context = await run_in_threadpool(work)
    return _render(request, who, status_code=status, **context)


# -- edit ------------------------------------------------------------------------------------------


@router.get("/jobs/{identifier}/edit")
async def edit_job_page(request: Request, who: Reader, identifier: str) -> HTMLResponse:
    def work() -> dict[str, Any]:
        job = _job(identifier, who)
        try:
            data, version = authoring.read_definition(job.path)
            mapping = authoring.parse_existing(data, job.path)
        except authoring.AuthoringError as refusal:
            raise HTTPException(409, f"{job.path}: {refusal.reason}") from None
        values = authoring.form_values(mapping, job.identifier)
        more: dict[str, Any] = {}
        if authoring.saving_refused() is None and (read_only := authoring.file_refused(job.path)):
            more["saving_refused"] = read_only  # said at the top before anything is typed; no Save offered
        return _context(values, mode="edit", identifier=job.identifier, path=job.path, version=version, **more)

    return _render(request, who, **await run_in_threadpool(work))


@router.post("/jobs/{identifier}/edit")
async def edit_job_save(request: Request, who: SignedIn, identifier: str) -> HTMLResponse:
    user, form = await _form(request, who, preview_allowed=True)
    version = form.get("version") or ""

    def work() -> tuple[int, dict[str, Any]]:
        job = _job(identifier, who, "GET" if form.get("do") == "preview" else "PUT")
        shown = {k: v for k, v in form.items() if k in authoring.FIELDS}
        shown["identifier"] = job.identifier
        more = {"mode": "edit", "identifier": job.identifier, "path": job.path, "version": version}
        if scope := _out_of_scope(who, form):
            return scope[0], _context(shown, problems=scope[1], **more)
        try:
            data, current = authoring.read_definition(job.path)
        except authoring.AuthoringError as refusal:
            return 409, _context(shown, problems={authoring.GENERAL: [f"{job.path}: {refusal.reason}"]}, **more)
        try:
            draft, _values = authoring.edit_draft(form, job.path, job.identifier, data, _visible(who))
        except authoring.AuthoringError as refusal:  # a file ruamel cannot read: refused, nothing written
            return 409, _context(shown, problems={refusal.key: [f"{job.path}: {refusal.reason}"]}, **more)
        if current != version:
            # Changed on disk since the form was loaded: never overwritten. Theirs, and the form's values on theirs.
            return 409, _context(
                shown, conflict={"theirs": data.decode("utf-8", "replace"), "yours": draft.text}, **more
            )
        refused = authoring.saving_refused()
        if not draft.valid or refused or form.get("do") == "preview":
            status = 422 if not draft.valid else 200
            return status, _context(shown, problems=draft.problems, yaml=draft.text, draft=draft, **more)
        try:
            saved = authoring.replace(job.path, draft.text, version)
        except authoring.ConflictError as conflict:
            return 409, _context(shown, conflict={"theirs": conflict.theirs, "yours": draft.text}, **more)
        except authoring.AuthoringError as refusal:
            reason = f"{job.path}: {refusal.reason}" if refusal.key == authoring.GENERAL else refusal.reason
            return 409, _context(shown, problems={refusal.key: [reason]}, yaml=draft.text, **more)
        before = authoring.parse_existing(data, job.path)
        after = authoring.parse_existing(draft.text.encode("utf-8"), job.path)
        changed = _changed(before, after)
        extra: dict[str, Any] = {
            "identifier": job.identifier,
            "path": str(job.path),
            "version_before": version,
            "version": saved.version,
            "changed": changed,
            "via": "page",
        }
        if before.get("disabled") is not after.get("disabled"):
            paused = airflow_runs.set_dag_paused(job.identifier, after.get("disabled") is True)
            extra["dag_paused" if after.get("disabled") is True else "dag_unpaused"] = paused
        audit = _audit("update", user, extra)
        asked = _ask_parse(job.identifier)
        return 200, _context(
            shown,
            mode="saved",
            saved=saved,
            identifier=job.identifier,
            audit_id=audit,
            asked_parse=asked,
            verb="Saved",
            changed=changed,
            elsewhere=draft.elsewhere,
        )

    status, context = await run_in_threadpool(work)
    return _render(request, who, status_code=status, **context)


# -- disable / enable ------------------------------------------------------------------------------


async def _toggle(request: Request, who: Access, identifier: str, disabled: bool) -> HTMLResponse:
    user, _form_fields = await _form(request, who)
    verb = "Disabled" if disabled else "Enabled"

    def work() -> tuple[int, dict[str, Any]]:
        job = _job(identifier, who, "PUT")
        more = {"identifier": job.identifier, "path": job.path}
        try:
            data, version = authoring.read_definition(job.path)
            draft = authoring.toggle_draft(data, job.path, job.identifier, disabled, _visible(who))
        except authoring.AuthoringError as refusal:
            return 409, _context({}, mode="saved", refused_toggle=refusal.reason, **more)
        text = draft.text
        values = authoring.form_values(authoring.parse_existing(text.encode("utf-8"), job.path), job.identifier)
        if not draft.valid:
            # The whole catalog with the change: a toggle that would make any file invalid is refused too.
            return 422, _context(
                values, mode="edit", problems=draft.problems, yaml=text, version=version, draft=draft, **more
            )
        refused = authoring.saving_refused()
        if refused:
            return 200, _context(values, mode="edit", yaml=text, version=version, draft=draft, **more)
        try:
            saved = authoring.replace(job.path, text, version)
        except authoring.ConflictError as conflict:
            return 409, _context(values, mode="edit", conflict={"theirs": conflict.theirs, "yours": text}, **more)
        except authoring.AuthoringError as refusal:
            return 409, _context({}, mode="saved", refused_toggle=refusal.reason, **more)
        paused = airflow_runs.set_dag_paused(job.identifier, disabled)
        extra = {
            "identifier": job.identifier,
            "path": str(job.path),
            "version_before": version,
            "version": saved.version,
            "changed": ["disabled"] if saved.version != version else [],
            "dag_paused" if disabled else "dag_unpaused": paused,
            "via": "page",
        }
        audit = _audit("disable" if disabled else "enable", user, extra)
        asked = _ask_parse(job.identifier)
        return 200, _context(
            values,
            mode="saved",
            saved=saved,
            audit_id=audit,
            asked_parse=asked,
            verb=verb,
            dag_paused=paused,
            toggled=disabled,
            elsewhere=draft.elsewhere,
            **more,
        )

    status, context = await run_in_threadpool(work)
    return _render(request, who, status_code=status, **context)


@router.post("/jobs/{identifier}/disable")
async def disable_job(request: Request, who: SignedIn, identifier: str) -> HTMLResponse:
    return await _toggle(request, who, identifier, True)


@router.post("/jobs/{identifier}/enable")
async def enable_job(request: Request, who: SignedIn, identifier: str) -> HTMLResponse:
    return await _toggle(request, who, identifier, False)
