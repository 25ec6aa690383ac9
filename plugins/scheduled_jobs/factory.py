"""The DAG factory: each valid job definition becomes one DAG, each bad one an error that names it.

Each real-time route also gets a DAG of its own, scheduled on the route's Asset (``realtime``): the
webhooks hand their exports to Airflow through it.

On a worker, a task's parse builds only its own DAG (Airflow sets the parsing context's dag_id).
"""

from __future__ import annotations

from scheduled_jobs import require_supported_airflow

# Before any import of Airflow, which in an unsupported version fails somewhere else first
# (the DAG files' import error names the supported range).
require_supported_airflow()

import datetime as dt
import functools
import importlib
import logging
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, TriggerRule, get_parsing_context

from scheduled_jobs import realtime, settings
from scheduled_jobs.catalog import Catalog, ScheduledJob, find_job_file, load_catalog, load_configurations
from scheduled_jobs.compat import AirflowFailException
from scheduled_jobs.exceptions import InvalidDefinitionsError
from scheduled_jobs.models.connectors.files import FilePublisherSettings, FileSubscriberSettings
from scheduled_jobs.models.connectors.http import HttpPublisherSettings, HttpSubscriberSettings
from scheduled_jobs.models.connectors.sql import SqlPublisherSettings, SqlSubscriberSettings
from scheduled_jobs.operators import ExportRouteOperator
from scheduled_jobs.operators.guard import GuardSensor, ReleaseGuardOperator
from scheduled_jobs.redaction import clean_url
from scheduled_jobs.timetables import DisabledTimetable, JobTimetable

if TYPE_CHECKING:
    from pathlib import Path

    from scheduled_jobs.models.configurations import Configurations, Loaded, Route
    from scheduled_jobs.models.connectors import PublisherSettings, SubscriberSettings
    from scheduled_jobs.models.jobs import Guard, Overlap
    from scheduled_jobs.operators.base import ScheduledJobOperator

log = logging.getLogger(__name__)

TAG = "scheduled-job"
# A real-time export fails as a task only when the store or the worker fails (a destination's refusal
# fails the tasks, not the export): Airflow tries it again, a little later.
REALTIME_RETRIES = 3
REALTIME_RETRY_DELAY = dt.timedelta(seconds=30)
WATCHER_TASK_ID = "watcher"
# The definition file shown in a DAG's docs: a page, not a dump (the catalog caps a file far higher).
DOC_YAML_LIMIT = 20_000


# -- the DAG docs (doc_md) ------------------------------------------------------------------------------
# Airflow renders doc_md as markdown: every text from a file is escaped or fenced, so a name, a
# description or a YAML line can neither format the page nor add a link or markup to it.

# Characters that format inline anywhere (emphasis, code, links, images, HTML, tables, strikethrough,
# entities, heading closers), and a line start that would make a list, quote, heading or rule.
_INLINE_SPECIAL = frozenset("\\`*_[]<>!|~#&")
_BLOCK_START = re.compile(r"^(?:[-+=>]|\d+[.)])")


# What GFM (Airflow's UI renders doc_md with remark-gfm) turns into a link by itself, with no markup:
# a URL with a scheme, a www. address, an e-mail address. Such a text is shown as inline code instead.
_AUTOLINKED = re.compile(r"(?i)[a-z][a-z0-9+.-]*:/|www\.|@")


def _md(text: object) -> str:
    """Plain text for markdown, on one line: what formats is escaped, so it shows as written."""
    if _AUTOLINKED.search(str(text)):
        return _code(text)  # never a link to another host, in the docs of a page everyone trusts
    flat = "".join(f"\\{c}" if c in _INLINE_SPECIAL else c for c in " ".join(str(text).split()))
    if match := _BLOCK_START.match(flat):
        head = match.group(0)
        flat = f"{head[:-1]}\\{head[-1]}{flat[len(head) :]}"
    return flat


def _code(text: object) -> str:
    """Inline code whose fence is longer than any run of backticks in the text (CommonMark)."""
    flat = " ".join(str(text).split())
    fence = "`" * (_longest_run(flat, "`") + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""  # CommonMark strips one each side
    return f"{fence}{pad}{flat}{pad}{fence}"


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def _fenced(text: str, info: str) -> str:
    """A fenced code block no line of the text can close early: its fence is longer than any backtick run."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def _definition_text(path: Path) -> str:
    """The definition file's text, at most DOC_YAML_LIMIT characters, for the docs."""
    try:
        with path.open("rb") as file:
            raw = file.read(DOC_YAML_LIMIT * 4 + 1)  # UTF-8: at most 4 bytes a character
    except OSError as exc:
        return f"# {path}: cannot be read ({exc.strerror or type(exc).__name__})"
    text = raw.decode("utf-8", errors="replace")
    if len(text) > DOC_YAML_LIMIT:
        return text[:DOC_YAML_LIMIT] + f"\n# ... cut: the docs show the first {DOC_YAML_LIMIT} characters"
    return text


def _count(number: int, unit: str) -> str:
    return f"{number:,} {unit}" + ("" if number == 1 else "s")


def _size(number: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if number >= size:
            return f"{number / size:g} {unit}"
    return _count(number, "byte")


def _retry_text(attempts: int) -> str:
    return "no retry" if attempts <= 1 else f"{attempts} tries per request"


def _source(subscriber: SubscriberSettings | None) -> tuple[str, list[str]]:
    """Where an incoming configuration reads records from, and its limits."""
    if subscriber is None:
        return "webhooks only (no subscriber)", []
    if isinstance(subscriber, FileSubscriberSettings):
        where = f"files {_code(subscriber.pattern)} in {_code(subscriber.base_folder)}"
        if subscriber.records_path:
            where += f", records at {_code(subscriber.records_path)}"
        return where, [f"at most {_size(subscriber.max_file_bytes)} per file"]
    if isinstance(subscriber, HttpSubscriberSettings):
        endpoint = _code(clean_url(subscriber.endpoint or "/"))  # no token of a query in the docs
        where = f"HTTP {subscriber.method} {endpoint} on connection {_code(subscriber.connection)}"
        limits = [
            f"at most {_count(subscriber.max_records, 'record')} and {_count(subscriber.max_pages, 'page')} per run",
            _retry_text(subscriber.retry.attempts),
        ]
        if subscriber.pagination is not None:
            page = getattr(subscriber.pagination, "size", None) or getattr(subscriber.pagination, "limit", None)
            limits.insert(0, f"{_md(subscriber.pagination.type)} pagination" + (f", {page} a page" if page else ""))
        return where, limits
    if isinstance(subscriber, SqlSubscriberSettings):
        limits = [
            f"batches of {_count(subscriber.batch_size, 'row')}",
            f"at most {_count(subscriber.max_records, 'record')} per run",
        ]
        if subscriber.watermark_column:
            limits.append(f"rows after the last {_code(subscriber.watermark_column)} seen")
        return f"SQL query on connection {_code(subscriber.connection)}", limits
    return _md(subscriber.type), []


def _destination(publisher: PublisherSettings) -> tuple[str, list[str]]:
    """Where an outgoing configuration delivers a task, and its limits."""
    if isinstance(publisher, FilePublisherSettings):
        return f"files {_code(publisher.filename)} in {_code(publisher.destination_folder)}", []
    if isinstance(publisher, HttpPublisherSettings):
        endpoint = _code(clean_url(publisher.endpoint or "/"))  # no token of a query in the docs
        where = f"HTTP {publisher.method} {endpoint} on connection {_code(publisher.connection)}"
        return where, [_retry_text(publisher.retry.attempts), f"{publisher.timeout_seconds:g} s timeout"]
    if isinstance(publisher, SqlPublisherSettings):
        return f"SQL {publisher.mode} into {_code(publisher.table)} on connection {_code(publisher.connection)}", []
    return _md(publisher.type), []


def _route_lines(route: Loaded[Route], configurations: Configurations) -> list[str]:
    """A route: from which incoming configuration's tasks to which destination, with its limits."""
    model = route.model
    lines = [
        f"- **Route {_md(model.name)}** ({_code(route.identifier)}): tasks of {_code(model.incoming_configuration)}"
    ]
    outgoing = configurations.outgoing.valid.get(model.outgoing_configuration)
    if outgoing is None:
        lines[0] += f" → outgoing configuration {_code(model.outgoing_configuration)}"
        return lines
    where, limits = _destination(outgoing.model.publisher)
    lines[0] += f" → {_md(outgoing.model.name)}: {where}"
    limits.append(f"{_count(model.concurrency, 'task')} at once")
    retry = model.retry_failed_tasks
    limits.append(
        f"failed tasks tried again on later runs, {retry.attempts} tries in all, after {retry.after_minutes:g} min"
        if retry is not None
        else "failed tasks stay failed (no retry_failed_tasks)"
    )
    lines.append(f"  - Limits: {'; '.join(limits)}")
    return lines


def _configuration_lines(job: ScheduledJob, configurations: Configurations | None) -> list[str]:
    """What the job's configuration does: source → destination, and its limits."""
    if configurations is None or job.target is None:
        return []
    lines = ["", "### What it runs", ""]
    if job.job == "incoming":
        incoming = configurations.incoming.valid.get(job.target)
        if incoming is None:
            return []
        where, limits = _source(incoming.model.subscriber)
        routes = configurations.routes_of_incoming(job.target)
        into = ", ".join(_code(r.identifier) for r in routes) or "no route yet"
        name = f"**Incoming configuration {_md(incoming.model.name)}** ({_code(incoming.identifier)})"
        lines.append(f"- {name}: {where} → tasks on {into}")
        if limits:
            lines.append(f"  - Limits: {'; '.join(limits)}")
        for route in routes:
            if route.identifier in job.realtime_routes:
                lines += _route_lines(route, configurations)
        return lines
    exported = configurations.routes.valid.get(job.target)
    if exported is None:
        return []
    lines += _route_lines(exported, configurations)
    tasks = getattr(job.definition, "tasks_to_export", None)
    lines.append(f"  - Number of tasks to export per run: {tasks if tasks else 'all that are new when the run starts'}")
    return lines


def _doc(job: ScheduledJob, configurations: Configurations | None = None) -> str:
    d = job.definition
    lines = [f"## {_md(d.name)}", "", _md(d.description) if d.description else "_No description._", ""]
    lines += [
        f"- **Identifier:** {_code(job.identifier)}",
        f"- **Job:** {_md(d.job)}" + (f" {_code(job.target)}" if job.target else ""),
        f"- **Expression:** {_code(d.expression)} ({_md(job.timezone)})",
        f"- **Priority:** {d.priority}",
        f"- **Disabled:** {'yes: no scheduled runs, and a manual run processes nothing' if d.disabled else 'no'}",
        f"- **Definition file:** {_code(job.path)}",
        *d.doc_lines(),
    ]
    if job.realtime_routes:
        lines.append(f"- **Real-time routes exported after it:** {', '.join(_code(r) for r in job.realtime_routes)}")
    lines += _configuration_lines(job, configurations)
    lines += ["", "### Definition file", "", _fenced(_definition_text(job.path), "yaml")]
    return "\n".join(lines)


def _common(job: ScheduledJob, task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "disabled": job.definition.disabled,
        "definition_file": str(job.path),
        "priority_weight": job.definition.priority,
        "weight_rule": "absolute",
    }


@functools.cache
def _operator_class(path: str) -> type[ScheduledJobOperator]:
    module, _, name = path.rpartition(".")
    operator: type[ScheduledJobOperator] = getattr(importlib.import_module(module), name)
    return operator


def _operator(job: ScheduledJob, inline_guard: Overlap | None = None) -> ScheduledJobOperator:
    """The task that does the job's work, as its kind describes it; with ``inline_guard``, it applies the
    duplicate rule itself (the ``inline`` guard design)."""
    work = job.definition.work()
    # A guarded job's work records each run in the job run history, under the guard's key.
    operator = _operator_class(work.operator)
    common = _common(job, work.task_id)
    if inline_guard is not None:
        common["inline_guard"] = inline_guard
    return operator(**work.arguments, configuration=job.guarded_configuration, **common)


# Airflow's dag table holds a display name of 2,000 characters (String(2000)); one value too long fails
# the DAG processor's write of every DAG of the file on PostgreSQL. A Name is shown whole in the docs.
MAX_DISPLAY_NAME = 200


def display_name(name: str) -> str:
    """A Name as Airflow's DAG list shows it: one line, no control or invisible formatting characters (a
    right-to-left override would show it reversed), and at most MAX_DISPLAY_NAME characters."""
    shown = " ".join("".join(" " if unicodedata.category(c) in _HIDDEN else c for c in name).split())
    return shown if len(shown) <= MAX_DISPLAY_NAME else shown[: MAX_DISPLAY_NAME - 1] + "…"


_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _schedule(job: ScheduledJob) -> JobTimetable | DisabledTimetable:
    """The Expression in its Timezone; a disabled job has no schedule, and its Schedule column says so."""
    d = job.definition
    return DisabledTimetable() if d.disabled else JobTimetable(d.expression, timezone=job.timezone)


def build_dag(job: ScheduledJob, configurations: Configurations | None = None) -> DAG:
    d = job.definition
    tags = [TAG, d.job] + (["disabled"] if d.disabled else [])
    guard = job.guard
    inline = guard is not None and settings.guard_design() == "inline"  # a bad setting raises before any DAG
    with DAG(
        dag_id=job.identifier,
        dag_display_name=display_name(d.name),
        description=d.description or None,
        doc_md=_doc(job, configurations),
        schedule=_schedule(job),
        catchup=False,
        max_active_runs=1,
        # An enabled job runs without anyone having to unpause it, as in the seed product; a job that is
        # disabled when Airflow first sees it starts paused, so the DAG list's toggle says so too.
        is_paused_upon_creation=d.disabled,
        tags=tags,
        # build_dags returns the DAGs it built; a DAG whose building failed half-way must not register itself
        # when its `with` block exits (Airflow would keep it, without tasks, and its runs would do nothing).
        auto_register=False,
    ) as dag:
        work = _operator(job, guard.overlap if guard is not None and inline else None)
        exports = [_realtime_export(job, route, work) for route in job.realtime_routes]
        if exports:
            _watcher(job, [work, *exports])
        if guard is not None and not inline:
            _guard(job, guard, work, [work, *exports])
    return dag


def _realtime_export(job: ScheduledJob, route: str, work: ScheduledJobOperator) -> ScheduledJobOperator:
    """The seed's real-time route: exported right after its incoming configuration runs.

    Also after a failed incoming run: a rejected source file must not hold back the records the run
    stored from the good files ("none skipped": the work succeeded or failed). Not after a skipped
    work (a disabled job). A guard that skipped (a duplicate run) or failed skips or fails the export
    too: Airflow checks a task's indirect setups before its trigger rule. The watcher keeps a run
    with a failed incoming configuration failed.
    """
    export = ExportRouteOperator(route=route, trigger_rule=TriggerRule.NONE_SKIPPED, **_common(job, f"export_{route}"))
    work >> export
    return export


def _fail_run(failed_upstream: list[str]) -> None:
    raise AirflowFailException(
        f"{' or '.join(failed_upstream)} failed (see its log): the run is marked failed; "
        "the real-time exports still ran for what was stored"
    )


def _watcher(job: ScheduledJob, watched: list[ScheduledJobOperator]) -> None:
    """A leaf that fails the DAG run when a watched task failed, as Airflow's own system tests do.

    The real-time exports run after a failed incoming run and would otherwise leave the run
    "success". Skipped when nothing failed; outside the guard's setup/teardown scope, so a failing
    ``release_guard`` (a teardown, left out of the run's state) does not trigger it.
    """
    watcher = PythonOperator(
        task_id=WATCHER_TASK_ID,
        python_callable=_fail_run,
        op_kwargs={"failed_upstream": [t.task_id for t in watched]},
        trigger_rule=TriggerRule.ONE_FAILED,
        retries=0,
        priority_weight=job.definition.priority,
        weight_rule="absolute",
        doc_md="Fails the run when the incoming configuration or a real-time export failed.",
    )
    watched >> watcher


def _guard(job: ScheduledJob, rule: Guard, work: ScheduledJobOperator, last: list[ScheduledJobOperator]) -> None:
    """The duplicate rule around the work (the ``teardown`` guard design): a guard first, and a teardown
    that frees the hold after the run's last task, the real-time exports included.

    A teardown is left out of the DAG run's state, so a failed export still fails the run. In the
    ``inline`` design the work task decides and releases itself, and the real-time exports after it run
    outside the hold (see ``ScheduledJobOperator``).
    """
    priority: dict[str, Any] = {"priority_weight": job.definition.priority, "weight_rule": "absolute"}
    guard = GuardSensor(task_id="guard", configuration=rule.configuration, overlap=rule.overlap, **priority)
    release = ReleaseGuardOperator(task_id="release_guard", **priority)
    guard >> work
    last >> release.as_teardown(setups=guard)


def build_realtime_dag(route: Loaded[Route], configurations: Configurations | None = None) -> DAG:
    """The export DAG of a real-time route: one run per batch of events on the route's asset.

    Never guarded: webhooks are exempt from duplicate prevention, and ``max_active_runs=1`` already
    makes the events that arrive during a run wait for (and coalesce into) the next one.
    """
    model = route.model
    doc = [
        f"## Real-time export: {_md(model.name)}",
        "",
        f"Runs when a webhook stores tasks on route {_code(route.identifier)} (an event on the asset "
        f'{_code(realtime.asset_uri(route.identifier))}), and exports every task that is "new" then.',
        "",
        f"- **Priority:** {model.priority}",
        f"- **Route file:** {_code(route.path)}",
    ]
    if configurations is not None:
        doc += ["", "### What it runs", "", *_route_lines(route, configurations)]
    doc += ["", "### Route file", "", _fenced(_definition_text(route.path), "yaml")]
    with DAG(
        dag_id=realtime.dag_id(route.identifier),
        dag_display_name=display_name(f"Real-time export: {model.name}"),
        description=f"Real-time export of route {model.name}",
        doc_md="\n".join(doc),
        schedule=realtime.route_asset(route.identifier),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,  # like the jobs: a real-time route works without anyone unpausing it
        tags=[realtime.TAG],
        auto_register=False,  # as in build_dag: only what build_dags returns is a DAG
    ) as dag:
        ExportRouteOperator(
            task_id=realtime.EXPORT_TASK_ID,
            route=route.identifier,
            definition_file=str(route.path),
            priority_weight=model.priority,
            weight_rule="absolute",
            retries=REALTIME_RETRIES,
            retry_delay=REALTIME_RETRY_DELAY,
        )
    return dag


def build_dags(catalog: Catalog | None = None) -> dict[str, DAG]:
    """Build the DAGs of every valid job and real-time route; on a worker, only the DAG of its task.

    A job that fails to build is logged and left out: it never takes the other jobs down.
    """
    wanted = get_parsing_context().dag_id
    if catalog is None:
        catalog = _catalog_for_parsing_context()
    dags: dict[str, DAG] = {}
    for identifier, job in catalog.jobs.items():
        try:
            dags[identifier] = build_dag(job, catalog.configurations)
        except Exception:  # one job's failure must not hide the others
            log.exception("%s: cannot build the DAG of scheduled job %r", job.path, identifier)
    routes = catalog.configurations.routes.valid if catalog.configurations is not None else {}
    for identifier, route in routes.items():
        if not route.model.realtime or wanted not in (None, realtime.dag_id(identifier)):
            continue
        try:
            dags[realtime.dag_id(identifier)] = build_realtime_dag(route, catalog.configurations)
        except Exception:  # one route's failure must not hide the others
            log.exception("%s: cannot build the real-time export DAG of route %r", route.path, identifier)
    for problem in catalog.problems:
        log.warning("Invalid scheduled job file: %s", problem)
    return dags


def _catalog_for_parsing_context() -> Catalog:
    dag_id = get_parsing_context().dag_id
    if dag_id is None:
        return load_catalog()
    if realtime.route_of_dag_id(dag_id) is not None:  # a real-time export: its route is all it needs
        return Catalog(configurations=load_configurations())
    folder = settings.definitions_folder()
    path = find_job_file(dag_id, folder)
    if path is None:
        return Catalog()
    return load_catalog(folder, files=[path])


def raise_problems() -> None:
    """Raise every problem in the job definitions and configurations as one error.

    Called from its own DAG file, so that Airflow shows the problems as that file's import error in
    the UI while the valid jobs' DAGs, built by the other file, keep running.
    """
    if get_parsing_context().dag_id is not None:
        return  # a worker running a task: nothing to report there
    problems = load_catalog().problems
    if problems:
        raise InvalidDefinitionsError(problems)
