"""The DAG factory: each valid job definition becomes one DAG, each bad one an error that names it.

Each real-time route also gets a DAG of its own, scheduled on the route's Asset (``realtime``): the
webhooks hand their exports to Airflow through it.

On a worker, a task's parse builds only its own DAG (Airflow sets the parsing context's dag_id).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, CronTriggerTimetable, get_parsing_context

from scheduled_jobs import realtime, settings
from scheduled_jobs.catalog import Catalog, ScheduledJob, find_job_file, load_catalog, load_configurations
from scheduled_jobs.exceptions import InvalidDefinitionsError
from scheduled_jobs.operators import ExportRouteOperator
from scheduled_jobs.operators.guard import GuardSensor, ReleaseGuardOperator

if TYPE_CHECKING:
    from scheduled_jobs.models.configurations import Loaded, Route
    from scheduled_jobs.models.jobs import Guard
    from scheduled_jobs.operators.base import ScheduledJobOperator

log = logging.getLogger(__name__)

TAG = "scheduled-job"
# A real-time export fails as a task only when the store or the worker fails (a destination's refusal
# fails the tasks, not the export): Airflow tries it again, a little later.
REALTIME_RETRIES = 3
REALTIME_RETRY_DELAY = dt.timedelta(seconds=30)


def _doc(job: ScheduledJob) -> str:
    d = job.definition
    lines = [f"## {d.name}", "", d.description or "_No description._", ""]
    lines += [
        f"- **Identifier:** `{job.identifier}`",
        f"- **Job:** {d.job}" + (f" `{job.target}`" if job.target else ""),
        f"- **Expression:** `{d.expression}` ({job.timezone})",
        f"- **Priority:** {d.priority}",
        f"- **Disabled:** {'yes: runs process nothing' if d.disabled else 'no'}",
        f"- **Definition file:** `{job.path}`",
        *d.doc_lines(),
    ]
    if job.realtime_routes:
        lines.append(f"- **Real-time routes exported after it:** {', '.join(job.realtime_routes)}")
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


def _operator(job: ScheduledJob) -> ScheduledJobOperator:
    """The task that does the job's work, as its kind describes it."""
    work = job.definition.work()
    # A guarded job's work records each run in the job run history, under the guard's key.
    operator = _operator_class(work.operator)
    return operator(**work.arguments, configuration=job.guarded_configuration, **_common(job, work.task_id))


def build_dag(job: ScheduledJob) -> DAG:
    d = job.definition
    schedule = None if d.disabled else CronTriggerTimetable(d.expression, timezone=job.timezone)
    tags = [TAG, d.job] + (["disabled"] if d.disabled else [])
    with DAG(
        dag_id=job.identifier,
        description=d.name if not d.description else f"{d.name}: {d.description}",
        doc_md=_doc(job),
        schedule=schedule,
        catchup=False,
        max_active_runs=1,
        # An enabled job runs without anyone having to unpause it, as in the seed product.
        is_paused_upon_creation=False,
        tags=tags,
    ) as dag:
        work = _operator(job)
        last = [work]
        for route in job.realtime_routes:
            # The seed's real-time route: exported right after its incoming configuration runs.
            # After a failed incoming run (a rejected source) the export waits for the next run, so
            # that the DAG run shows the failure; what was stored is exported then.
            export = ExportRouteOperator(route=route, **_common(job, f"export_{route}"))
            work >> export
            last.append(export)
        guard = job.guard
        if guard is not None:
            _guard(job, guard, work, last)
    return dag


def _guard(job: ScheduledJob, rule: Guard, work: ScheduledJobOperator, last: list[ScheduledJobOperator]) -> None:
    """The duplicate rule around the work: a guard first, and a teardown that frees the hold.

    A teardown is left out of the DAG run's state, so a failed export still fails the run.
    """
    priority: dict[str, Any] = {"priority_weight": job.definition.priority, "weight_rule": "absolute"}
    guard = GuardSensor(task_id="guard", configuration=rule.configuration, overlap=rule.overlap, **priority)
    release = ReleaseGuardOperator(task_id="release_guard", **priority)
    guard >> work
    last >> release.as_teardown(setups=guard)


def build_realtime_dag(route: Loaded[Route]) -> DAG:
    """The export DAG of a real-time route: one run per batch of events on the route's asset.

    Never guarded: webhooks are exempt from duplicate prevention, and ``max_active_runs=1`` already
    makes the events that arrive during a run wait for (and coalesce into) the next one.
    """
    model = route.model
    with DAG(
        dag_id=realtime.dag_id(route.identifier),
        description=f"Real-time export of route {model.name}",
        doc_md=(
            f"## Real-time export: {model.name}\n\n"
            f"Runs when a webhook stores tasks on route `{route.identifier}` (an event on the asset "
            f'`{realtime.asset_uri(route.identifier)}`), and exports every task that is "new" then.\n\n'
            f"- **Priority:** {model.priority}\n- **Route file:** `{route.path}`"
        ),
        schedule=realtime.route_asset(route.identifier),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,  # like the jobs: a real-time route works without anyone unpausing it
        tags=[realtime.TAG],
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
            dags[identifier] = build_dag(job)
        except Exception:  # one job's failure must not hide the others
            log.exception("%s: cannot build the DAG of scheduled job %r", job.path, identifier)
    routes = catalog.configurations.routes.valid if catalog.configurations is not None else {}
    for identifier, route in routes.items():
        if not route.model.realtime or wanted not in (None, realtime.dag_id(identifier)):
            continue
        try:
            dags[realtime.dag_id(identifier)] = build_realtime_dag(route)
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
