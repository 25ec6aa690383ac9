"""What the pages and the JSON API show, built from the definitions, the task store and Airflow's runs.

The pages and the API render the same objects, so a figure on a page is the figure the API returns.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from scheduled_jobs import settings
from scheduled_jobs.catalog import Catalog, ScheduledJob, current_catalog
from scheduled_jobs.cron import FireTime, cron_errors, describe, fire_times, timezone_error
from scheduled_jobs.models.jobs import LABELS
from scheduled_jobs.store import (
    ProcessFigures,
    RouteFigures,
    process_figures,
    route_figures,
    skipped_by_dag,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from scheduled_jobs.exceptions import Problem

FIRE_TIMES_SHOWN = 5
JOB_TYPES = tuple(LABELS)
JOB_TYPE_LABELS = LABELS


def fires_json(fires: list[FireTime]) -> list[dict[str, str | None]]:
    return [{"at": fire.at.isoformat(), "note": fire.note} for fire in fires]


@dataclass(frozen=True)
class LastRun:
    run_id: str
    state: str
    at: dt.datetime | None


@dataclass(frozen=True)
class JobRow:
    identifier: str
    name: str
    description: str
    job: str
    target: str | None
    expression: str
    expression_description: str
    timezone: str
    next_fires: list[FireTime]
    priority: int
    disabled: bool
    overlap: str | None
    last_run: LastRun | None
    skipped_duplicates: int
    definition_file: str
    fires_error: str | None = None
    """Why an enabled job shows no fire times; its row is still shown, and so is every other row."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "dag_id": self.identifier,
            "name": self.name,
            "description": self.description,
            "job": self.job,
            "target": self.target,
            "expression": self.expression,
            "expression_description": self.expression_description,
            "timezone": self.timezone,
            "next_fire_times": fires_json(self.next_fires),
            "next_fire_times_error": self.fires_error,
            "priority": self.priority,
            "disabled": self.disabled,
            "overlap": self.overlap,
            "last_run": None
            if self.last_run is None
            else {
                "run_id": self.last_run.run_id,
                "state": self.last_run.state,
                "at": self.last_run.at.isoformat() if self.last_run.at else None,
            },
            "skipped_duplicates": self.skipped_duplicates,
            "definition_file": self.definition_file,
        }


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


@dataclass
class JobsOverview:
    rows: list[JobRow]
    total: int
    """Every valid job, filtered or not."""
    matching: int
    """The jobs the filters keep, on every page."""
    page: int = 1
    pages: int = 1
    problems: list[Problem] = field(default_factory=list)


def last_runs(dag_ids: list[str]) -> dict[str, LastRun]:
    """The latest run of each DAG, from Airflow's metadata database."""
    if not dag_ids:
        return {}
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    latest = select(func.max(DagRun.id)).where(DagRun.dag_id.in_(dag_ids)).group_by(DagRun.dag_id)
    query = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.run_after).where(
        DagRun.id.in_(latest)
    )
    with create_session() as session:
        return {
            row.dag_id: LastRun(row.run_id, str(row.state), row.start_date or row.run_after)
            for row in session.execute(query)
        }


@functools.lru_cache(maxsize=2048)
def _next_fires(expression: str, timezone: str, minute: dt.datetime) -> tuple[FireTime, ...]:
    # Cron has minute resolution, so the fire times after the start of this minute are those after now;
    # jobs that share an expression and a time zone share the work.
    return tuple(fire_times(expression, timezone, FIRE_TIMES_SHOWN, minute))


def _fires_of(job: ScheduledJob, now: dt.datetime) -> tuple[list[FireTime], str | None]:
    """The job's next fire times, or why there are none: whatever the expression does, it stays in this row."""
    if job.definition.disabled:
        return [], None
    minute = now.replace(second=0, microsecond=0)
    try:
        fires = list(_next_fires(job.definition.expression, job.timezone, minute))
    except Exception as exc:  # one job's expression must never break the page
        return [], f"no fire time: {exc}"
    if fires:
        return fires, None
    reasons = cron_errors(job.definition.expression, now) or ["none found"]
    return [], f"no fire time: {'; '.join(reasons)}"


def _description(expression: str) -> str:
    try:
        return describe(expression)
    except Exception:  # cron-descriptor has no words for it: the expression itself is shown beside
        return ""


def job_row(job: ScheduledJob, now: dt.datetime, last: LastRun | None, skipped: int) -> JobRow:
    d = job.definition
    fires, fires_error = _fires_of(job, now)
    return JobRow(
        identifier=job.identifier,
        name=d.name,
        description=d.description,
        job=d.job,
        target=job.target,
        expression=d.expression,
        expression_description=_description(d.expression),
        timezone=job.timezone,
        next_fires=fires,
        priority=d.priority,
        disabled=d.disabled,
        overlap=job.overlap,
        last_run=last,
        skipped_duplicates=skipped,
        definition_file=str(job.path),
        fires_error=fires_error,
    )


def jobs_overview(
    engine: Engine, filters: JobFilters, page: int = 1, size: int = 50, catalog: Catalog | None = None
) -> JobsOverview:
    """One page of the jobs the filters keep, by name; fire times and runs are looked up for that page only."""
    catalog = catalog or current_catalog()
    kept = sorted((j for j in catalog.jobs.values() if filters.keeps(j)), key=lambda j: (j.name.lower(), j.identifier))
    pages = max(1, -(-len(kept) // size))
    page = min(max(1, page), pages)
    shown = kept[(page - 1) * size : page * size]
    runs = last_runs([j.identifier for j in shown])
    skipped = skipped_by_dag(engine)
    now = dt.datetime.now(dt.UTC)
    rows = [job_row(j, now, runs.get(j.identifier), skipped.get(j.identifier, 0)) for j in shown]
    return JobsOverview(rows, len(catalog.jobs), len(kept), page, pages, list(catalog.problems))


@dataclass(frozen=True)
class CronCheck:
    """The cron checker's answer: valid or not (each problem as ``field: reason``), meaning, next fires."""

    expression: str
    timezone: str
    errors: list[str]
    description: str | None
    next_fires: list[FireTime]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "timezone": self.timezone,
            "valid": self.valid,
            "errors": self.errors,
            "description": self.description,
            "next_fire_times": fires_json(self.next_fires),
        }


def check_cron(expression: str, timezone: str, count: int = 10) -> CronCheck:
    errors = [f"expression: {error}" for error in cron_errors(expression)] if expression.strip() else []
    if not expression.strip():
        errors.append("expression: is empty; a cron expression has 5 fields, e.g. '*/15 * * * *'")
    zone_problem = timezone_error(timezone)
    if zone_problem is not None:
        errors.append(f"timezone: {zone_problem}")
    if errors:
        return CronCheck(expression, timezone, errors, None, [])
    now = dt.datetime.now(dt.UTC)
    try:
        fires = fire_times(expression, timezone, count, now)
    except Exception as exc:  # the checker answers with the reason, never a 500
        return CronCheck(expression, timezone, [f"expression: cannot compute its fire times: {exc}"], None, [])
    return CronCheck(expression, timezone, [], _description(expression), fires)


@dataclass(frozen=True)
class RouteRow:
    route: str
    name: str
    incoming_configuration: str | None
    outgoing_configuration: str | None
    realtime: bool
    counts: dict[str, int]
    oldest_new_age_seconds: float | None
    stuck: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stuck_before() -> dt.datetime:
    return utcnow() - dt.timedelta(minutes=settings.stuck_after_minutes())


def route_rows(engine: Engine, catalog: Catalog | None = None) -> list[RouteRow]:
    """Every configured route, and every route that still has tasks in the store (even if unconfigured)."""
    catalog = catalog or current_catalog()
    figures = route_figures(engine, stuck_before())
    configured = catalog.configurations.routes.valid if catalog.configurations else {}
    now = utcnow()
    rows = []
    for route in sorted(set(configured) | set(figures)):
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


@dataclass(frozen=True)
class ProcessRow:
    configuration: str
    running: dict[str, Any] | None
    waiting: dict[str, Any] | None
    skipped: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def guarded_configurations(catalog: Catalog) -> set[str]:
    return {c for j in catalog.jobs.values() if (c := j.guarded_configuration) is not None}


def process_rows(engine: Engine, catalog: Catalog | None = None) -> list[ProcessRow]:
    """Per configuration a job executes: the run executing, the run waiting, how many were skipped."""
    catalog = catalog or current_catalog()
    figures = process_figures(engine)
    rows = []
    for configuration in sorted(guarded_configurations(catalog) | set(figures)):
        found = figures.get(configuration) or ProcessFigures(configuration)
        rows.append(ProcessRow(configuration, found.running, found.waiting, found.skipped))
    return rows


def human_age(seconds: float | None) -> str:
    """An age as its largest whole unit: 45 s, 12 min, 3 h, 2 d."""
    if seconds is None:
        return "—"
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"
