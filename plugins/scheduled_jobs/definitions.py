"""Job definitions: one YAML file per scheduled job in ``job_definitions/``, validated up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from scheduled_jobs import settings
from scheduled_jobs.configurations import (
    KIND_LABELS,
    Configurations,
    Shelf,
    duplicate_problems,
    guess_identifier,
    load_configurations,
    resolve_identifier,
)
from scheduled_jobs.cron import cron_errors, timezone_error
from scheduled_jobs.exceptions import Problem
from scheduled_jobs.models import Named
from scheduled_jobs.yaml_files import (
    Limits,
    capped,
    find_yaml_files,
    inline_secret_problems,
    load_mapping,
    problems_from_validation,
)

if TYPE_CHECKING:
    from pathlib import Path

JobType = Literal["incoming", "outgoing", "repair_stuck_tasks"]
INT32 = 2**31 - 1

# The keys that belong to one job type only.
KEYS_OF_JOB_TYPE: dict[str, JobType] = {
    "incoming_configuration": "incoming",
    "route": "outgoing",
    "tasks_to_export": "outgoing",
    "stuck_after_minutes": "repair_stuck_tasks",
    "max_attempts": "repair_stuck_tasks",
}


class JobDefinition(Named):
    """The YAML of one scheduled job, in the seed product's words."""

    disabled: bool = False
    job: JobType
    incoming_configuration: str | None = Field(default=None, min_length=1)
    route: str | None = Field(default=None, min_length=1)
    tasks_to_export: int | None = Field(default=None, gt=0)
    expression: str = Field(min_length=1)
    timezone: str | None = Field(default=None, min_length=1)
    priority: int = Field(default=0, ge=-INT32, le=INT32)
    stuck_after_minutes: int | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, gt=0)
    overlap: Literal["buffer_one", "skip", "allow"] = "buffer_one"
    """When its configuration is already running: wait once (the seed's rule), skip, or allow overlap."""


@dataclass(frozen=True)
class ScheduledJob:
    """A valid job definition with everything resolved: identifier, time zone, target configuration."""

    identifier: str
    path: Path
    definition: JobDefinition
    timezone: str

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def job(self) -> JobType:
        return self.definition.job

    realtime_routes: tuple[str, ...] = ()
    """For an incoming job: the real-time routes exported right after it."""

    @property
    def guarded_configuration(self) -> str | None:
        """What the duplicate rule is about: ``incoming:<id>`` or ``route:<id>``; None for repairs."""
        d = self.definition
        if d.incoming_configuration:
            return f"incoming:{d.incoming_configuration}"
        if d.route:
            return f"route:{d.route}"
        return None

    @property
    def target(self) -> str | None:
        """The configuration the job executes: the incoming configuration or the route."""
        return self.definition.incoming_configuration or self.definition.route


@dataclass
class Catalog:
    """Every valid job and configuration, and every problem found on the way."""

    jobs: dict[str, ScheduledJob] = field(default_factory=dict)
    configurations: Configurations | None = None
    problems: list[Problem] = field(default_factory=list)


def _reference_problem(where: str, data: dict[str, object], key: str, shelf: Shelf[Any], kind: str) -> list[Problem]:
    target = data.get(key)
    if key not in data:
        return [Problem(where, key, f"is required with job: {data['job']}")]
    if isinstance(target, str) and target and target not in shelf.valid:
        return [Problem(where, key, shelf.describe_missing(target, KIND_LABELS[kind]))]
    return []


def _webhook_only_problem(where: str, data: dict[str, object], configurations: Configurations) -> list[Problem]:
    target = data.get("incoming_configuration")
    found = configurations.incoming.valid.get(target) if isinstance(target, str) else None
    if found is None or found.model.subscriber is not None:
        return []
    reason = (
        f"incoming configuration {target!r} ({found.path}) has no subscriber: its records only arrive by "
        "webhook, so a scheduled job has nothing to read; add a subscriber to it or remove this job"
    )
    return [Problem(where, "incoming_configuration", reason)]


def _semantic_problems(path: Path, data: dict[str, object], configurations: Configurations) -> list[Problem]:
    """What pydantic cannot know: keys of another job type, references, the cron and the time zone.

    Works on the raw mapping, so these are reported even when pydantic found other mistakes.
    """
    problems = []
    where = str(path)
    job = data.get("job")
    if job in ("incoming", "outgoing", "repair_stuck_tasks"):
        for key, owner in KEYS_OF_JOB_TYPE.items():
            if key in data and owner != job:
                problems.append(Problem(where, key, f"only allowed with job: {owner} (this job is {job})"))
        if "overlap" in data and job == "repair_stuck_tasks":
            reason = "only allowed with job: incoming or outgoing (this job is repair_stuck_tasks)"
            problems.append(Problem(where, "overlap", reason))
        if job == "incoming":
            problems.extend(
                _reference_problem(where, data, "incoming_configuration", configurations.incoming, "incoming")
            )
            problems.extend(_webhook_only_problem(where, data, configurations))
        if job == "outgoing":
            problems.extend(_reference_problem(where, data, "route", configurations.routes, "routes"))
    expression = data.get("expression")
    if isinstance(expression, str) and expression:
        problems.extend(Problem(where, "expression", error) for error in cron_errors(expression))
    timezone = data.get("timezone")
    if isinstance(timezone, str) and timezone and (error := timezone_error(timezone)) is not None:
        problems.append(Problem(where, "timezone", error))
    return problems


def _parse_one(
    path: Path, configurations: Configurations, limits: Limits
) -> tuple[ScheduledJob | None, str, list[Problem]]:
    data, problem = load_mapping(path, limits)
    if problem is not None or data is None:
        return None, path.stem, [problem] if problem else []
    secrets = inline_secret_problems(path, data)
    if secrets:
        return None, guess_identifier(data, path), capped(path, secrets)
    problems = _semantic_problems(path, data, configurations)
    try:
        definition = JobDefinition.model_validate(data)
    except ValidationError as exc:
        shown = problems_from_validation(path, exc, JobDefinition)
        hidden = exc.error_count() - len(shown)
        return None, guess_identifier(data, path), capped(path, [*shown, *problems], hidden)
    identifier, problem = resolve_identifier(path, definition.name, definition.identifier)
    if problem is not None:
        problems.append(problem)
    if problems or identifier is None:
        return None, identifier or path.stem, capped(path, problems)
    timezone = definition.timezone or settings.default_timezone()
    realtime: tuple[str, ...] = ()
    if definition.incoming_configuration is not None:
        routes = configurations.routes_of_incoming(definition.incoming_configuration)
        realtime = tuple(sorted(r.identifier for r in routes if r.model.realtime))
    return ScheduledJob(identifier, path, definition, timezone, realtime), identifier, []


def load_catalog(
    definitions_folder: Path | None = None,
    configurations_folder: Path | None = None,
    *,
    files: list[Path] | None = None,
) -> Catalog:
    """Load and validate job definitions (all in the folder, or just ``files``) and configurations.

    Never raises for bad input: every problem is collected, and every valid job is still returned.
    """
    folder = definitions_folder or settings.definitions_folder()
    configurations = load_configurations(configurations_folder or settings.configurations_folder())
    catalog = Catalog(configurations=configurations, problems=list(configurations.problems))
    paths = files if files is not None else find_yaml_files(folder)
    if files is None and not folder.is_dir():
        catalog.problems.append(
            Problem(
                str(folder), "(folder)", "job definitions folder does not exist ([scheduled_jobs] definitions_folder)"
            )
        )
    by_identifier: dict[str, list[Path]] = {}
    limits = Limits.from_settings()
    for path in paths:
        job, identifier, problems = _parse_one(path, configurations, limits)
        by_identifier.setdefault(identifier, []).append(path)
        catalog.problems.extend(problems)
        if job is not None:
            catalog.jobs[job.identifier] = job
    catalog.problems.extend(duplicate_problems(by_identifier, "scheduled job"))
    if files is None or len(files) > 1:
        catalog.problems.extend(stuck_threshold_problems(catalog))
    for identifier, shared in by_identifier.items():
        if len(shared) > 1:  # which file is meant is ambiguous: neither becomes a DAG
            catalog.jobs.pop(identifier, None)
    catalog.problems.sort(key=lambda problem: (problem.path, problem.key))
    return catalog


def stuck_threshold_problems(catalog: Catalog) -> list[Problem]:
    """Outgoing configurations whose one request could outlast the stuck-task threshold.

    Repair would then hand a task that is still being pushed to a second exporter.
    """
    from scheduled_jobs.exporting import LEASE_REFRESH_SECONDS

    repairs = [j for j in catalog.jobs.values() if j.job == "repair_stuck_tasks"]
    if catalog.configurations is None or not repairs:
        return []
    minutes, holder = min(
        (j.definition.stuck_after_minutes or settings.stuck_after_minutes(), j.identifier) for j in repairs
    )
    problems = []
    for loaded in catalog.configurations.outgoing.valid.values():
        publisher = loaded.model.publisher
        timeout = getattr(publisher, "timeout_seconds", None)
        retry = getattr(publisher, "retry", None)
        if timeout is None or retry is None:
            continue
        worst = retry.worst_case_seconds(timeout) + LEASE_REFRESH_SECONDS
        if worst >= minutes * 60:
            problems.append(
                Problem(
                    str(loaded.path),
                    "publisher.timeout_seconds",
                    f"one request can take up to {worst:.0f} s (timeout_seconds {timeout:g} x retry.attempts "
                    f"{retry.attempts}, plus waits), longer than the stuck-task threshold of {minutes} minutes "
                    f"of repair job {holder!r}; lower timeout_seconds or retry.attempts, or raise stuck_after_minutes",
                )
            )
    return problems


def find_job_file(identifier: str, folder: Path) -> Path | None:
    """The definition file of a job, cheaply: ``<identifier>.yaml`` first, then a scan of the folder."""
    limits = Limits.from_settings()
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{identifier}{suffix}"
        if candidate.is_file():
            data, _ = load_mapping(candidate, limits)
            if guess_identifier(data, candidate) == identifier:
                return candidate
    for path in find_yaml_files(folder):
        data, _ = load_mapping(path, limits)
        if data is not None and guess_identifier(data, path) == identifier:
            return path
    return None
