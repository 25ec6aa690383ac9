"""The ``scheduled-jobs`` command: validate definitions, preview a job's fire times, find and act on tasks."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduled_jobs import settings
from scheduled_jobs.catalog import Catalog, ScheduledJob, housekeeping_warnings, job_files, load_catalog
from scheduled_jobs.cron import describe, fire_times
from scheduled_jobs.exceptions import (
    InvalidDefinitionsError,
    Problem,
    ScheduledJobsError,
    SettingError,
    UnknownJobError,
)
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.redaction import Redactor, is_unicode, printable
from scheduled_jobs.yaml_files import find_yaml_files

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

    from scheduled_jobs.store import ActionResult, TaskFilter


def _definition_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).absolute()
        if path.is_dir():
            files.extend(find_yaml_files(path))
        else:
            files.append(path)
    return files


def _as_in_folder(paths: list[Path], folder: Path) -> list[Path]:
    """Each path that reaches a file of the definitions folder another way (a link, ``..``) as that file:
    loaded twice, one job would be a duplicate of itself."""
    in_folder = {path.resolve(): path for path in find_yaml_files(folder)}
    return [in_folder.get(path.resolve(), path) for path in paths]


def _shown(problem: Problem) -> Problem:
    """The problem with its path relative to the working folder when it lies below it."""
    path = Path(problem.path)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return Problem(str(path.relative_to(Path.cwd())), problem.key, problem.reason)
    return problem


def validate(paths: list[str]) -> int:
    """Print ``path: key: reason`` per problem; exit 1 when there is any."""
    try:
        folder = settings.definitions_folder()
    except SettingError:
        folder = None
    if folder is None:  # every missing setting at once (both folders' problems), not only the first
        for problem in load_catalog().problems:
            print(problem)
        return 1
    if paths:
        asked = _as_in_folder(_definition_files(paths), folder)
        missing = [Problem(str(p), "(file)", "does not exist") for p in asked if not p.exists()]
        # Load the whole folder too, so identifiers are checked against every other job.
        existing = sorted({*(p for p in asked if p.exists()), *find_yaml_files(folder)})
        catalog = load_catalog(folder, files=existing)
        wanted = {str(p) for p in asked}
        config_folder = str(settings.configurations_folder())
        settings_path = f"[{settings.SECTION}]"  # a bad setting concerns every file
        problems = missing + [
            p for p in catalog.problems if p.path in wanted or p.path.startswith((config_folder, settings_path))
        ]
        checked = [p for p in asked if p.exists()]
    else:
        catalog = load_catalog(folder)
        problems = list(catalog.problems)
        checked = find_yaml_files(folder)
    for problem in problems:
        print(_shown(problem))
    for warning in housekeeping_warnings(catalog):  # a warning, not a problem: the exit code stays
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    print(f"{len(checked)} job definition{'s' if len(checked) != 1 else ''} valid", file=sys.stderr)
    return 0


class InvalidJobError(InvalidDefinitionsError):
    """The job asked for has a definition, but it is invalid: its problems say why."""

    def __init__(self, asked: str, problems: list[Problem]) -> None:
        super().__init__(problems)
        count = len(problems)
        self.summary = f"{asked}: not a valid scheduled job: {count} problem{'s' if count != 1 else ''} above"


def _find_job(catalog: Catalog, identifier_or_path: str, folder: Path) -> ScheduledJob:
    """The valid job of an identifier or a definition file; else why not: the file's problems, or what is known."""
    if identifier_or_path in catalog.jobs:
        return catalog.jobs[identifier_or_path]
    path = Path(identifier_or_path)
    wanted = path.resolve()
    for job in catalog.jobs.values():
        if job.path.resolve() == wanted:
            return job
    wanted_files = {wanted}
    if not path.is_file():
        # An identifier of an invalid definition: the catalog keeps no job for it, its files still have problems
        # (every file that claims it: a valid file and an invalid one are both refused as duplicates).
        found = job_files(identifier_or_path, folder) if identifier_or_path.strip() else []
        if found:
            wanted_files = {file.resolve() for file in found}
        elif path.suffix in (".yaml", ".yml"):
            reason = "is not a regular file" if path.exists() else "does not exist"
            raise UnknownJobError(str(Problem(identifier_or_path, "(file)", reason)))
    problems = [_shown(p) for p in catalog.problems if Path(p.path).resolve() in wanted_files]
    if problems:
        raise InvalidJobError(identifier_or_path, problems)
    known = ", ".join(sorted(catalog.jobs)) or "none"
    raise UnknownJobError(f"{identifier_or_path}: no valid scheduled job has this identifier or path (known: {known})")


def preview(identifier_or_path: str, count: int, start: dt.datetime | None) -> int:
    path = Path(identifier_or_path)
    folder = settings.definitions_folder()
    extra = _as_in_folder([path.absolute()], folder) if path.suffix in (".yaml", ".yml") and path.is_file() else []
    catalog = load_catalog(folder, files=sorted({*find_yaml_files(folder), *extra}))
    job = _find_job(catalog, identifier_or_path, folder)
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


# -- scheduled-jobs tasks ------------------------------------------------------------------------------

STATUSES = ("new", "processing", "finished", "failed", "will_retry", "skipped")  # the store's STATUS_FILTERS
MAX_SIZE = 1000
MAX_IDS = 1000
MAX_TASK_ID = 2**63 - 1
MAX_TEXT = 500
"""Characters of a filter value, a user name or a reason on the command line."""
CELL = 60
"""Characters of an entity key or error in a table cell."""
TASKS_HELP = """Find tasks in the task store and act on them.

The command works with the rights of the task store's Airflow connection ([scheduled_jobs]
store_conn_id): whoever can run it with that connection can retry, skip and delete any task. Each
action is recorded in the task's history as done by the user named by --as, or else $USER.

Actions are fenced like an export's settle: a task being processed is never changed under its
exporter; it is counted as not eligible."""


class UsageError(ScheduledJobsError):
    """A command line that cannot be run as given: exit 2, like argparse's own errors."""


class NotFoundError(ScheduledJobsError):
    """A task the command line names does not exist: exit 1."""


def _text(limit: int = MAX_TEXT) -> Any:
    def parse(value: str) -> str:
        if not value or len(value) > limit or printable(value) != value or not is_unicode(value):
            raise argparse.ArgumentTypeError(f"must be 1-{limit} printable characters of UTF-8 text")
        return value

    return parse


def _utc(value: str) -> dt.datetime:
    """An ISO time as naive UTC; a time without an offset is UTC."""
    example = "(e.g. 2026-01-31, 2026-01-31T08:00, 2026-01-31T08:00+01:00)"
    try:
        moment = dt.datetime.fromisoformat(value)
        return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {printable(value[:40])!r} {example}") from None
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first moment a datetime holds in UTC
        raise argparse.ArgumentTypeError(
            f"out of range: {value[:40]!r} in UTC is before year 1 or after 9999"
        ) from None


def _whole_number(value: str, highest: int, not_one: str, out_of_range: str) -> int:
    """``value`` as a whole number from 1 to ``highest``; else argparse's error in the caller's words.

    ASCII digits only: ``int()`` would also take " 5", "1_000" and other scripts' digits.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise argparse.ArgumentTypeError(f"{not_one}: {printable(value[:40])!r}")
    number = int(value)
    if number < 1 or number > highest:
        raise argparse.ArgumentTypeError(out_of_range.format(number=number))
    return number


def _task_id(value: str) -> int:
    return _whole_number(value, MAX_TASK_ID, "not a task id", "not a task id: {number} (ids are 1 and up)")


def _size(value: str) -> int:
    return _whole_number(value, MAX_SIZE, "not a number", f"must be 1-{MAX_SIZE}, got {{number}}")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    found = parser.add_argument_group("filters (all given must match)")
    found.add_argument("--route", type=_text(), help="route identifier")
    found.add_argument("--status", choices=STATUSES, help="will_retry: failed, and to be retried by a later export")
    found.add_argument("--entity-key", type=_text(), help="entity key, exactly (or its start, with --prefix)")
    found.add_argument("--prefix", action="store_true", help="match entity keys starting with --entity-key")
    for field_name, word in (("created", "created"), ("updated", "last changed")):
        found.add_argument(
            f"--{field_name}-after", type=_utc, metavar="TIME", help=f"{word} at or after TIME (ISO; no offset: UTC)"
        )
        found.add_argument(f"--{field_name}-before", type=_utc, metavar="TIME", help=f"{word} before TIME")


def _filters(args: argparse.Namespace) -> TaskFilter:
    from scheduled_jobs.store import TaskFilter

    if args.prefix and not args.entity_key:
        raise UsageError("--prefix needs --entity-key")
    return TaskFilter(
        route=args.route,
        status=args.status,
        entity_key=args.entity_key,
        prefix=args.prefix,
        created_after=args.created_after,
        created_before=args.created_before,
        updated_after=args.updated_after,
        updated_before=args.updated_before,
    )


def _described(filters: TaskFilter) -> str:
    parts = [
        f"{name}={value.isoformat() if isinstance(value, dt.datetime) else value}"
        for name, value in (
            ("route", filters.route),
            ("status", filters.status),
            ("entity-key" + (" prefix" if filters.prefix else ""), filters.entity_key),
            ("created-after", filters.created_after),
            ("created-before", filters.created_before),
            ("updated-after", filters.updated_after),
            ("updated-before", filters.updated_before),
        )
        if value is not None
    ]
    return ", ".join(parts)


def _engine() -> Engine:
    from scheduled_jobs.store import TaskStoreHook

    return TaskStoreHook().get_engine()


def _cell(value: Any, limit: int = CELL) -> str:
    """A value as a table shows it: on one line, control characters of remote data made harmless, cut short."""
    if value is None:
        return "-"
    text = printable(value.isoformat(sep=" ", timespec="seconds") if isinstance(value, dt.datetime) else str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status(row: dict[str, Any]) -> str:
    status = str(row["status"])
    return "failed (will retry)" if status == "failed" and row.get("retryable") else status


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = ("ID", "ROUTE", "ENTITY KEY", "STATUS", "TRIES", "CREATED (UTC)", "UPDATED (UTC)", "ERROR")
    lines = [
        (
            str(row["id"]),
            _cell(row["route"], 30),
            _cell(row["entity_key"], 40),
            _status(row),
            str(row["attempts"]),
            _cell(row["created_at"]),
            _cell(row["updated_at"]),
            _cell(row["last_error"]),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *lines]
    ]


def tasks_list(args: argparse.Namespace) -> int:
    from scheduled_jobs.store import list_tasks

    filters = _filters(args)
    page = list_tasks(_engine(), filters, before=args.before, size=args.size)
    if not page.rows:
        print(
            "no tasks"
            + (f" match {_described(filters)}" if _described(filters) else "")
            + (f" before id {args.before}" if args.before else "")
        )
        return 0
    for line in _table(page.rows):
        print(line)
    if page.next_before is not None:
        print(f"next page: --before {page.next_before}")
    else:
        print("last page")
    return 0


def _timeline_line(event: Any) -> str:
    who = event.actor.label() if event.actor is not None else "unknown"
    detail = ", ".join(f"{key}={_cell(value, 200)}" for key, value in sorted(event.detail.items()))
    return f"  {_cell(event.at)}  {event.kind:<14} by {printable(who)}" + (f"  {detail}" if detail else "")


def tasks_show(args: argparse.Namespace) -> int:
    from scheduled_jobs.store import task_detail, task_history

    engine = _engine()
    detail = task_detail(engine, args.id)
    if detail is None:
        raise NotFoundError(f"no task with id {args.id}")
    history = task_history(engine, args.id) or []
    print(f"Task {detail['id']}")
    for label, key in (
        ("Route", "route"),
        ("Entity key", "entity_key"),
        ("Attempts", "attempts"),
        ("Created (UTC)", "created_at"),
        ("Updated (UTC)", "updated_at"),
        ("Claimed (UTC)", "claimed_at"),
    ):
        print(f"{label + ':':<15}{_cell(detail.get(key), 1000)}")
    print(f"{'Status:':<15}{_status(detail)}")
    if detail.get("last_error"):
        print(f"{'Error:':<15}{_cell(detail['last_error'], 4000)}")
    print("Payload:")
    for line in json.dumps(detail["payload"], indent=2, ensure_ascii=False, sort_keys=True).splitlines():
        print("  " + printable(line))
    print("History (oldest first):")
    for event in history:
        print(_timeline_line(event))
    return 0


def _actor(args: argparse.Namespace) -> Actor:
    name = args.as_user or os.environ.get("USER") or getpass.getuser()
    if not name or len(name) > MAX_TEXT or printable(name) != name:
        raise UsageError("cannot tell who you are: pass --as NAME")
    return Actor("user", user=name)


def _confirm(question: str) -> bool:
    print(question + " [y/N] ", end="", flush=True)
    try:
        answer = input()
    except EOFError:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _report(result: ActionResult, verb: str) -> None:
    task_word = "task" if result.matched == 1 else "tasks"
    line = f"{verb} {result.changed} of {result.matched} {task_word}"
    if result.not_eligible:
        line += f"; {result.not_eligible} not eligible (in a status {result.action} does not take; left as they were)"
    print(line)
    if result.task_ids:
        shown = ", ".join(map(str, result.task_ids[:50]))
        more = f" and {result.changed - 50} more" if result.changed > 50 else ""
        print(f"{verb}: {shown}{more}")


def tasks_act(args: argparse.Namespace) -> int:
    from scheduled_jobs.store import TaskIds, count_tasks, delete_tasks, retry_tasks, skip_tasks, task_detail

    verbs = {"retry": "retried", "skip": "skipped", "delete": "deleted"}
    actor = _actor(args)
    engine = _engine()
    if args.ids and args.all_matching:
        raise UsageError("give task ids or --all-matching with filters, not both")
    if args.ids:
        if len(args.ids) > MAX_IDS:
            raise UsageError(f"at most {MAX_IDS} task ids at once; use --all-matching with filters for more")
        if _described(_filters(args)):
            raise UsageError("filters select tasks only with --all-matching; with task ids, give no filter")
        ids = tuple(dict.fromkeys(args.ids))
        missing = [task_id for task_id in ids if task_detail(engine, task_id) is None]
        if missing:
            raise NotFoundError(f"no task with id {', '.join(map(str, missing))}; nothing was changed")
        selection: Any = TaskIds(ids)
    elif args.all_matching:
        selection = _filters(args)
        described = _described(selection)
        if not described:
            raise UsageError("--all-matching needs at least one filter (e.g. --route, --status)")
        cap = 100_000
        count = count_tasks(engine, selection, cap=cap)
        counted = f"more than {cap:,}" if count > cap else f"{count:,}"
        print(f"{counted} task{'s' if count != 1 else ''} match {described}")
        if count == 0:
            print("nothing to do")
            return 0
        if not args.yes and not _confirm(f"{args.action.capitalize()} them?"):
            print("not confirmed; nothing was changed")
            return 1
    else:
        raise UsageError("name the tasks: task ids, or --all-matching with filters")
    if args.action == "retry":
        result = retry_tasks(engine, selection, actor)
    elif args.action == "skip":
        result = skip_tasks(engine, selection, actor, args.reason)
    else:
        result = delete_tasks(engine, selection, actor)
    _report(result, verbs[args.action])
    _audit(args.action, actor, selection, result, args.reason if args.action == "skip" else None)
    return 0


def _audit(action: str, actor: Actor, selection: Any, result: ActionResult, reason: str | None) -> None:
    """The action in Airflow's audit log, as the pages record theirs: who, when, what and how many.

    A delete leaves nothing else behind (the task's history goes with it). The action is done by then;
    an audit log that cannot be written is said on stderr, and the exit code stays the action's.
    """
    from scheduled_jobs import airflow_runs
    from scheduled_jobs.store import TaskIds

    if isinstance(selection, TaskIds):
        what: dict[str, Any] = {"ids": list(selection.ids)}
    else:
        what = {
            "filter": {
                name: value.isoformat() if isinstance(value, dt.datetime) else value
                for name, value in vars(selection).items()
                if value not in (None, False)
            }
        }
    extra: dict[str, Any] = {
        "action": action,
        **what,
        "matched": result.matched,
        "changed": result.changed,
        "not_eligible": result.not_eligible,
        "task_ids": result.task_ids,
        "via": "cli",
    }
    if reason is not None:
        extra["reason"] = reason
    try:
        airflow_runs.record_audit_log(f"tasks.{action}", actor.user or "", None, extra)
    except Exception as exc:  # the metadata database is Airflow's: any failure of it is only reported
        print(
            f"warning: the {action} was done but not recorded in Airflow's audit log ({type(exc).__name__}); "
            "is this shell's Airflow configured (AIRFLOW_HOME, [database] sql_alchemy_conn)?",
            file=sys.stderr,
        )


def _tasks_parser(commands: Any) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="find tasks and retry, skip or delete them",
        description=TASKS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="list tasks, newest first, one page at a time",
        description="List tasks, newest first. The last line names the --before to pass for the next page.",
    )
    _add_filters(listing)
    listing.add_argument("--before", type=_task_id, metavar="ID", help="only tasks older than task ID (the next page)")
    listing.add_argument(
        "--size", type=_size, default=50, metavar="N", help=f"tasks per page, 1-{MAX_SIZE} (default 50)"
    )
    show = actions.add_parser(
        "show",
        help="a task, its payload and its history",
        description="Show one task: its fields, payload and history.",
    )
    show.add_argument("id", type=_task_id, metavar="ID")
    about = {
        "retry": "failed or skipped tasks go back to new (attempts start again at 0)",
        "skip": "new or failed tasks become skipped, with a reason",
        "delete": "delete tasks (any status but processing) and their history; the entity's memory stays",
    }
    for name, text in about.items():
        action = actions.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.\n\nName the tasks by id, or select them with "
            "--all-matching and filters: the count is shown and you are asked to confirm (--yes does not ask).\n\n"
            "Runs with the rights of the task store's connection; the history names the user of --as, or $USER.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        action.add_argument("ids", nargs="*", type=_task_id, metavar="ID", help="task ids")
        action.add_argument("--all-matching", action="store_true", help="every task matching the filters")
        _add_filters(action)
        if name == "skip":
            action.add_argument(
                "--reason", required=True, type=_text(), help="why (kept in the task's error and history)"
            )
        action.add_argument("--yes", action="store_true", help="do not ask before acting on a filter's tasks")
        action.add_argument("--as", dest="as_user", type=_text(100), metavar="NAME", help="who you are (default $USER)")


DESCRIPTION = """Scheduled jobs on the command line: validate the job definitions and configurations, preview a
job's next fire times, and find tasks in the task store and retry, skip or delete them."""
"""Plain text, as every --help here: a terminal shows reStructuredText markup as it is."""


def build_parser() -> argparse.ArgumentParser:
    from scheduled_jobs import __version__

    parser = argparse.ArgumentParser(prog="scheduled-jobs", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"airflow-scheduled-jobs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "validate",
        help="validate job definitions and configurations",
        description="Validate job definitions and configurations: one line per problem (path: key: reason) and "
        "exit code 1, or exit code 0 when all is valid. Given paths, their definitions are reported, still "
        "checked against every other job for duplicate identifiers.",
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="definition files or folders (default: all)")
    show = commands.add_parser(
        "preview",
        help="describe a job's cron and list its next fire times",
        description="Describe a job's expression and list its next fire times in the job's timezone, as the "
        "scheduler computes them. A job whose definition has problems: its problems, and exit code 1.",
    )
    show.add_argument("job", metavar="IDENTIFIER_OR_PATH", help="the job's identifier, or its definition file")
    show.add_argument("--count", type=_positive, default=5, help="how many fire times (default 5)")
    show.add_argument("--from", dest="start", type=_aware, default=None, help="start after this ISO time (default now)")
    _tasks_parser(commands)
    files = commands.add_parser(
        "dag-files",
        help="write the two DAG files into a DAGs folder",
        description="Write the two small DAG files that build the scheduled jobs' DAGs (scheduled_jobs_dags.py) "
        "and show invalid job files as import errors (scheduled_jobs_problems.py) into FOLDER, normally Airflow's "
        "[core] dags_folder. A file there that differs is left alone unless --force.",
    )
    files.add_argument("folder", metavar="FOLDER", type=Path, help="the DAGs folder")
    files.add_argument("--force", action="store_true", help="replace files that differ")
    db = commands.add_parser(
        "db",
        help="upgrade or check the task store's schema",
        description="The task store's schema (the connection [scheduled_jobs] store_conn_id, else the SQLite file "
        "in AIRFLOW_HOME). Run db upgrade once per deployment after installing a new version (a Helm migration "
        "job, the compose init service); workers and the API server only check the revision. db check exits 1 "
        "when the schema is not the one this version needs.",
    )
    db_actions = db.add_subparsers(dest="action", required=True)
    db_actions.add_parser("upgrade", help="migrate the task store to this version's schema")
    db_actions.add_parser("check", help="exit 0 when the task store's schema is this version's, else 1")
    return parser


def dag_files(folder: Path, *, force: bool) -> int:
    from scheduled_jobs import dag_files

    try:
        done = dag_files.write(folder, force=force)
    except FileExistsError as exc:
        print(f"error: {exc}: differs from this version's DAG file; --force replaces it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {folder}: cannot write the DAG files: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    return 0


def db(action: str) -> int:
    import logging

    from scheduled_jobs.store import (
        HEAD_REVISION,
        KNOWN_REVISIONS,
        TaskStoreHook,
        create_store_engine,
        current_revision,
        schema_problem,
        upgrade,
        where,
    )

    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = create_store_engine(TaskStoreHook().url, check_schema=False)
    try:
        if action == "upgrade":
            revision = current_revision(engine)
            if revision is not None and revision != HEAD_REVISION and revision not in KNOWN_REVISIONS:
                # A newer version migrated it (a rollback): Alembic would only say it cannot locate the revision.
                print(f"error: {schema_problem(revision, engine)}; nothing was changed", file=sys.stderr)
                return 1
            before, after = upgrade(engine)
            said = "already at" if before == after else f"upgraded from {before or 'nothing'} to"
            print(f"task store {where(engine)}: {said} schema revision {after}")
            return 0
        revision = current_revision(engine)
        problem = schema_problem(revision, engine)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        print(f"task store {where(engine)}: schema revision {revision}, this version's")
        return 0
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    import logging

    # Alembic announces its plugins and migrations at INFO, which Airflow 3.1's logging set-up prints: never
    # between the lines of this command's output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from scheduled_jobs import require_supported_airflow

    try:
        require_supported_airflow()
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return validate(args.paths)
        if args.command == "tasks":
            return _tasks(args)
        if args.command == "dag-files":
            return dag_files(args.folder, force=args.force)
        if args.command == "db":
            return _store_errors(lambda: db(args.action))
        return preview(args.job, args.count, args.start)
    except UsageError as exc:
        print(f"scheduled-jobs: error: {exc}", file=sys.stderr)
        return 2
    except InvalidJobError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"error: {exc.summary}", file=sys.stderr)
        return 1
    except ScheduledJobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _tasks(args: argparse.Namespace) -> int:
    import logging

    # Alembic says "Context impl ..." at INFO on the first use of a store in a process: on stdout it would
    # come before the table and break `| awk` and the like.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    def run() -> int:
        if args.action == "list":
            return tasks_list(args)
        if args.action == "show":
            return tasks_show(args)
        return tasks_act(args)

    return _store_errors(run)


def _store_errors(run: Callable[[], int]) -> int:
    """``run``, with a failure of the task store said in one line: exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return run()
    except SQLAlchemyError as exc:
        # The driver's text may name the server; never its password (userinfo of any URL is masked).
        original = getattr(exc, "orig", None)
        reason = Redactor().excerpt(printable(str(original if original is not None else exc)), 300, whole=True)
        print(f"error: the task store failed: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
