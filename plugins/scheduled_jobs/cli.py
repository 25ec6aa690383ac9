"""The ``scheduled-jobs`` command: validate definitions, preview a job's fire times."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from scheduled_jobs import settings
from scheduled_jobs.catalog import Catalog, ScheduledJob, load_catalog
from scheduled_jobs.cron import describe, fire_times
from scheduled_jobs.exceptions import Problem, ScheduledJobsError, UnknownJobError
from scheduled_jobs.yaml_files import find_yaml_files


def _definition_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).absolute()
        if path.is_dir():
            files.extend(find_yaml_files(path))
        else:
            files.append(path)
    return files


def _shown(problem: Problem) -> Problem:
    """The problem with its path relative to the working folder when it lies below it."""
    path = Path(problem.path)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return Problem(str(path.relative_to(Path.cwd())), problem.key, problem.reason)
    return problem


def validate(paths: list[str]) -> int:
    """Print ``path: key: reason`` per problem; exit 1 when there is any."""
    folder = settings.definitions_folder()
    if paths:
        asked = _definition_files(paths)
        missing = [Problem(str(p), "(file)", "does not exist") for p in asked if not p.exists()]
        # Load the whole folder too, so identifiers are checked against every other job.
        existing = sorted({*(p for p in asked if p.exists()), *find_yaml_files(folder)})
        catalog = load_catalog(folder, files=existing)
        wanted = {str(p) for p in asked}
        config_folder = str(settings.configurations_folder())
        problems = missing + [p for p in catalog.problems if p.path in wanted or p.path.startswith(config_folder)]
        checked = [p for p in asked if p.exists()]
    else:
        catalog = load_catalog(folder)
        problems = list(catalog.problems)
        checked = find_yaml_files(folder)
    for problem in problems:
        print(_shown(problem))
    if problems:
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    print(f"{len(checked)} job definition{'s' if len(checked) != 1 else ''} valid", file=sys.stderr)
    return 0


def _find_job(catalog: Catalog, identifier_or_path: str) -> ScheduledJob:
    if identifier_or_path in catalog.jobs:
        return catalog.jobs[identifier_or_path]
    wanted = Path(identifier_or_path).resolve()
    for job in catalog.jobs.values():
        if job.path.resolve() == wanted:
            return job
    problems = [p for p in catalog.problems if Path(p.path).resolve() == wanted]
    if problems:
        raise UnknownJobError("\n".join(str(_shown(p)) for p in problems))
    known = ", ".join(sorted(catalog.jobs)) or "none"
    raise UnknownJobError(f"{identifier_or_path}: no valid scheduled job has this identifier or path (known: {known})")


def preview(identifier_or_path: str, count: int, start: dt.datetime | None) -> int:
    path = Path(identifier_or_path)
    folder = settings.definitions_folder()
    extra = [path.absolute()] if path.suffix in (".yaml", ".yml") and path.is_file() else []
    catalog = load_catalog(folder, files=sorted({*find_yaml_files(folder), *extra}))
    job = _find_job(catalog, identifier_or_path)
    d = job.definition
    after = start or dt.datetime.now(dt.UTC)
    print(f"{d.name} ({job.identifier})")
    print(f"Expression: {d.expression}  {describe(d.expression)}")
    print(f"Timezone:   {job.timezone}")
    if d.disabled:
        print("Disabled:   yes, so Airflow does not schedule it; the times below are what it would be")
    print(f"Next {count} fire time{'s' if count != 1 else ''}:")
    fires = fire_times(d.expression, job.timezone, count, after)
    for fire in fires:
        print(f"  {fire}")
    if len(fires) < count:  # croniter searches so many years ahead, no further
        print(f"  (no further fire time found: {len(fires)} of {count})")
    return 0


def _aware(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1 or number > 1000:
        raise argparse.ArgumentTypeError(f"must be 1-1000, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduled-jobs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="validate job definitions and configurations")
    check.add_argument("paths", nargs="*", metavar="PATH", help="definition files or folders (default: all)")
    show = commands.add_parser("preview", help="describe a job's cron and list its next fire times")
    show.add_argument("job", metavar="IDENTIFIER_OR_PATH")
    show.add_argument("--count", type=_positive, default=5, help="how many fire times (default 5)")
    show.add_argument("--from", dest="start", type=_aware, default=None, help="start after this ISO time (default now)")
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return validate(args.paths)
        return preview(args.job, args.count, args.start)
    except ScheduledJobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
