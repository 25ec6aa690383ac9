"""The rows of the pages and the JSON API, built from the catalog, the task store and Airflow's runs.

The pages and the API render the same objects (``responses``), so a figure on a page is the figure the
API returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel

from scheduled_jobs import settings
from scheduled_jobs.airflow_runs import latest_runs, paused_dags, runs_with_work
from scheduled_jobs.catalog import Catalog, ScheduledJob, current_catalog
from scheduled_jobs.cron import FireTime, cron_errors
from scheduled_jobs.cron_checker import description_of, next_fire_times
from scheduled_jobs.models.jobs import LABELS
from scheduled_jobs.realtime import DAG_ID_PREFIX
from scheduled_jobs.store import (
    Page,
    ProcessFigures,
    RouteFigures,
    process_figures,
    route_figures,
    skipped_by_dag,
    task_detail,
    utcnow,
)
from scheduled_jobs.web.responses import (
    JobRow,
    JobsPage,
    LastRun,
    Paged,
    ProcessHolder,
    ProcessRow,
    RouteRow,
    TaskDetail,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from scheduled_jobs import airflow_runs
    from scheduled_jobs.web.access import Access

Row = TypeVar("Row", bound=BaseModel)
FIRE_TIMES_SHOWN = 5
JOB_TYPES = tuple(LABELS)
JOB_TYPE_LABELS = LABELS


@dataclass(frozen=True)
class JobFilters:
    name: str = ""
    job: str = ""
    status: Literal["", "enabled", "disabled"] = ""

    def keeps(self, job: ScheduledJob) -> bool:
        needle = self.name.strip().lower()
        if needle and needle not in job.name.lower() and needle not in job.identifier.lower():
            return False
        if self.job and job.job != self.job:
            return False
        if self.status == "enabled" and job.definition.disabled:
            return False
        return not (self.status == "disabled" and not job.definition.disabled)


def _fires_of(job: ScheduledJob, now: dt.datetime) -> tuple[list[FireTime], str | None]:
    """The job's next fire times, or why there are none: whatever the expression does, it stays in this row."""
    if job.definition.disabled:
        return [], None
    minute = now.replace(second=0, microsecond=0)
    try:
        fires = list(next_fire_times(job.definition.expression, job.timezone, FIRE_TIMES_SHOWN, minute))
    except Exception as exc:  # one job's expression must never break the page
        return [], f"no fire time: {exc}"
    if fires:
        return fires, None
    reasons = cron_errors(job.definition.expression, now) or ["none found"]
    return [], f"no fire time: {'; '.join(reasons)}"


def _last_run(run: airflow_runs.LastRun | None) -> LastRun | None:
    return None if run is None else LastRun(run_id=run.run_id, state=run.state, at=run.at)


def job_row(job: ScheduledJob, now: dt.datetime, last: airflow_runs.LastRun | None, skipped: int) -> JobRow:
    d = job.definition
    fires, fires_error = _fires_of(job, now)
    return JobRow(
        identifier=job.identifier,
        dag_id=job.identifier,
        name=d.name,
        description=d.description,
        job=d.job,
        target=job.target,
        expression=d.expression,
        expression_description=description_of(d.expression),
        timezone=job.timezone,
        next_fire_times=fires,
        next_fire_times_error=fires_error,
        priority=d.priority,
        disabled=d.disabled,
        overlap=job.overlap,
        last_run=_last_run(last),
        skipped_duplicates=skipped,
        definition_file=str(job.path),
    )


def jobs_overview(
    engine: Engine,
    filters: JobFilters,
    page: int = 1,
    size: int = 50,
    *,
    catalog: Catalog | None = None,
    access: Access | None = None,
) -> JobsPage:
    """One page of the jobs the filters keep, by name; fire times and runs are looked up for that page only.

    ``access``: only the jobs whose DAG the caller may read count, in the list and in every total; the
    invalid files (which belong to no DAG) are shown only to a caller who may read every DAG.
    """
    catalog = catalog or current_catalog()
    readable = None if access is None else access.job_ids("GET")
    visible = [j for j in catalog.jobs.values() if readable is None or j.identifier in readable]
    kept = sorted((j for j in visible if filters.keeps(j)), key=lambda j: (j.name.lower(), j.identifier))
    pages = max(1, -(-len(kept) // size))
    page = min(max(1, page), pages)
    shown = kept[(page - 1) * size : page * size]
    runs = latest_runs([j.identifier for j in shown])
    skipped = skipped_by_dag(engine)
    now = dt.datetime.now(dt.UTC)
    rows = [job_row(j, now, runs.get(j.identifier), skipped.get(j.identifier, 0)) for j in shown]
    invalid = list(catalog.problems) if access is None or access.unrestricted("GET") else []
    return JobsPage(jobs=rows, total=len(visible), matching=len(kept), page=page, pages=pages, invalid=invalid)


def stuck_before() -> dt.datetime:
    return utcnow() - dt.timedelta(minutes=settings.stuck_after_minutes())


def empty_page(number: int, size: int) -> Page:
    return Page([], 0, number, size)


def route_rows(engine: Engine, catalog: Catalog | None = None, access: Access | None = None) -> list[RouteRow]:
    """Every configured route, and every route that still has tasks in the store (even if unconfigured);
    with ``access``, only the routes the caller may read."""
    catalog = catalog or current_catalog()
    figures = route_figures(engine, stuck_before())
    configured = catalog.configurations.routes.valid if catalog.configurations else {}
    readable = None if access is None else access.routes("GET")
    now = utcnow()
    rows = []
    for route in sorted(r for r in set(configured) | set(figures) if readable is None or r in readable):
        found = figures.get(route) or RouteFigures(route)
        model = configured[route].model if route in configured else None
        age = found.oldest_new_age(now)
        rows.append(
            RouteRow(
                route=route,
                name=model.name if model else "(not configured)",
                incoming_configuration=model.incoming_configuration if model else None,
                outgoing_configuration=model.outgoing_configuration if model else None,
                realtime=bool(model and model.realtime),
                counts=found.counts,
                oldest_new_age_seconds=age.total_seconds() if age is not None else None,
                stuck=found.stuck,
            )
        )
    return rows


def guarded_configurations(catalog: Catalog) -> set[str]:
    return {c for j in catalog.jobs.values() if (c := j.guarded_configuration) is not None}


def process_rows(engine: Engine, catalog: Catalog | None = None, access: Access | None = None) -> list[ProcessRow]:
    """Per configuration a job executes: the run executing, the run waiting, how many were skipped; with
    ``access``, only the configurations of jobs the caller may read."""
    catalog = catalog or current_catalog()
    figures = process_figures(engine)
    visible = None if access is None else access.configurations("GET")
    rows = []
    shown = {c: f for c, f in figures.items() if visible is None or c in visible}
    freed = holds_that_keep_nothing(
        catalog, [ProcessHolder.model_validate(h) for f in shown.values() for h in (f.running, f.waiting) if h]
    )
    for configuration in sorted(guarded_configurations(catalog) | set(figures)):
        if visible is not None and configuration not in visible:
            continue
        found = figures.get(configuration) or ProcessFigures(configuration)
        running = None if found.running is None else ProcessHolder.model_validate(found.running)
        waiting = None if found.waiting is None else ProcessHolder.model_validate(found.waiting)
        running = None if running and (running.dag_id, running.run_id) in freed else running
        waiting = None if waiting and (waiting.dag_id, waiting.run_id) in freed else waiting
        rows.append(ProcessRow(configuration=configuration, running=running, waiting=waiting, skipped=found.skipped))
    return rows


def holds_that_keep_nothing(catalog: Catalog, holders: list[ProcessHolder]) -> set[tuple[str, str]]:
    """The (dag_id, run_id) of holds the page does not show: runs none of whose tasks is queued or running, of
    a job paused in Airflow, disabled in its definition, or no longer defined (its file deleted, its identifier
    changed). Airflow queues no task of such a job, so the hold keeps its configuration for nothing; the next
    guard decision frees it and records why (``operators.guard.hold_may_go``, the same rule). When Airflow's
    database cannot answer, or the catalog has a problem (the file may be the job's), every hold is shown."""
    runs = [(h.dag_id, h.run_id) for h in holders]
    if not runs:
        return set()
    try:
        busy = runs_with_work(runs)
        paused = paused_dags([dag_id for dag_id, _ in runs])
    except Exception:  # Airflow's database unreachable: show what the ledger holds
        return set()
    freed = set()
    for dag_id, run_id in set(runs) - busy:
        if dag_id in paused:
            freed.add((dag_id, run_id))
        elif not dag_id.startswith(DAG_ID_PREFIX) and not catalog.problems:
            job = catalog.jobs.get(dag_id)
            if job is None or job.definition.disabled:
                freed.add((dag_id, run_id))
    return freed


def paged(found: Page, row: type[Row]) -> Paged[Row]:
    """A page of the store's rows as the response model ``row``."""
    rows = [row.model_validate(values) for values in found.rows]
    return Paged[row](rows=rows, total=found.total, page=found.number, pages=found.pages, size=found.size)  # type: ignore[valid-type]


def task(engine: Engine, task_id: int) -> TaskDetail | None:
    detail = task_detail(engine, task_id)
    return None if detail is None else TaskDetail.model_validate(detail)


def human_age(seconds: float | None) -> str:
    """An age as its largest whole unit: 45 s, 12 min, 3 h, 2 d."""
    if seconds is None:
        return "—"
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"
