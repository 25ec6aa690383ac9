"""The catalog: every job definition and configuration as YAML on disk, loaded, validated and cached.

One pipeline reads a file of any model: load the mapping -> refuse inline secrets -> ``model_validate``
-> resolve the identifier -> refuse duplicates. Bad input never raises: each mistake becomes a
``path: key: reason`` problem, and every valid object is still returned.

``load_catalog`` reads the files each time (the dag-processor, a worker's parse); ``current_catalog`` and
``current_configurations`` serve long-lived processes (the API server, the webhooks) from a cache that a
stat of each file keeps true.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError

from scheduled_jobs import settings
from scheduled_jobs.exceptions import Problem, SettingError
from scheduled_jobs.identifiers import identifier_from_name
from scheduled_jobs.models.configurations import KIND_LABELS, KINDS, Configurations, Loaded, Shelf
from scheduled_jobs.models.jobs import (
    CHECK_ERROR,
    CONFIGURATIONS,
    AnyJob,
    JobDefinition,
    PruneJob,
    RepairJob,
    kind_of,
    validate_job,
)
from scheduled_jobs.yaml_files import (
    FILE_KEY,
    Limits,
    capped,
    find_yaml_files,
    inline_secret_problems,
    load_mapping,
    problems_from_validation,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

    from pydantic import BaseModel

    from scheduled_jobs.models import Named
    from scheduled_jobs.models.jobs import Guard, Overlap

T = TypeVar("T")
NamedT = TypeVar("NamedT", bound="Named")


@dataclass(frozen=True)
class ScheduledJob:
    """A valid job definition with everything resolved: identifier, time zone, real-time routes."""

    identifier: str
    path: Path
    definition: JobDefinition
    timezone: str

    realtime_routes: tuple[str, ...] = ()
    """For an incoming job: the real-time routes exported right after it."""

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def job(self) -> str:
        return self.definition.job

    @property
    def guard(self) -> Guard | None:
        return self.definition.guard()

    @property
    def guarded_configuration(self) -> str | None:
        """What the duplicate rule is about: ``incoming:<id>`` or ``route:<id>``; None for an unguarded kind."""
        guard = self.guard
        return guard.configuration if guard is not None else None

    @property
    def overlap(self) -> Overlap | None:
        guard = self.guard
        return guard.overlap if guard is not None else None

    @property
    def target(self) -> str | None:
        """The configuration the job executes: the incoming configuration or the route."""
        return self.definition.target


@dataclass
class Catalog:
    """Every valid job and configuration, and every problem found on the way."""

    jobs: dict[str, ScheduledJob] = field(default_factory=dict)
    configurations: Configurations | None = None
    problems: list[Problem] = field(default_factory=list)


# -- identifiers -------------------------------------------------------------------------------------


def guess_identifier(data: dict[str, object] | None, path: Path) -> str:
    """The identifier a file meant to have, even when it is invalid (for 'is invalid' messages)."""
    if data:
        if isinstance(data.get("identifier"), str):
            return str(data["identifier"])
        if isinstance(data.get("name"), str):
            return identifier_from_name(str(data["name"])) or path.stem
    return path.stem


MAX_IDENTIFIER_LENGTH = 200
"""Airflow refuses a DAG id of more than 250 characters; a route's DAG id adds ``realtime_export.``."""
_LIMIT_TEXT = f"an identifier is at most {MAX_IDENTIFIER_LENGTH} characters (Airflow's DAG ids hold 250)"


def resolve_identifier(path: Path, name: str, identifier: str | None) -> tuple[str | None, Problem | None]:
    if identifier:
        if len(identifier) > MAX_IDENTIFIER_LENGTH:
            reason = f"is {len(identifier)} characters long; {_LIMIT_TEXT}; choose a shorter one"
            return None, Problem(str(path), "identifier", reason)
        return identifier, None
    generated = identifier_from_name(name)
    if not generated:
        return None, Problem(
            str(path), "name", f"cannot generate an identifier from {name!r}; set identifier: explicitly"
        )
    if len(generated) > MAX_IDENTIFIER_LENGTH:
        reason = (
            f"the identifier made from it is {len(generated)} characters long; {_LIMIT_TEXT}; "
            "set a shorter identifier: explicitly"
        )
        return None, Problem(str(path), "name", reason)
    return generated, None


def duplicate_problems(paths_by_identifier: dict[str, list[Path]], label: str) -> list[Problem]:
    """An error on each file that shares its identifier with another, naming the others."""
    problems = []
    for identifier, paths in paths_by_identifier.items():
        if len(paths) < 2:
            continue
        for path in paths:
            others = ", ".join(str(p) for p in paths if p != path)
            problems.append(Problem(str(path), "identifier", f"{label} {identifier!r} is also defined in {others}"))
    return problems


# -- the pipeline of one file ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schema(Generic[NamedT]):
    """How to validate a mapping, and which model (and union tag) words its errors."""

    validate: Callable[[dict[str, Any]], NamedT]
    explain: Callable[[dict[str, Any]], tuple[type[BaseModel], str | None]]
    shape_valid: Callable[[ValidationError], bool] = lambda error: False
    """Whether only checks beyond the shape failed: the identifier is then resolved (and reported) too."""


@dataclass(frozen=True)
class _Read(Generic[NamedT]):
    model: NamedT | None
    identifier: str
    """The resolved identifier of a valid file; for an invalid one, the identifier it meant to have."""
    problems: list[Problem]


def _read(path: Path, schema: _Schema[NamedT], limits: Limits) -> _Read[NamedT]:
    data, problem = load_mapping(path, limits)
    if problem is not None or data is None:
        return _Read(None, path.stem, [problem or Problem(str(path), FILE_KEY, "empty")])
    secrets = inline_secret_problems(path, data)
    if secrets:
        return _Read(None, guess_identifier(data, path), capped(path, secrets))
    try:
        model = schema.validate(data)
    except ValidationError as exc:
        explaining, tag = schema.explain(data)
        shown = problems_from_validation(path, exc, explaining, tag=tag)
        hidden = exc.error_count() - len(shown)
        if schema.shape_valid(exc):
            _, problem = resolve_identifier(path, data["name"], data.get("identifier"))
            shown.extend([problem] if problem is not None else [])
        return _Read(None, guess_identifier(data, path), capped(path, shown, hidden))
    identifier, problem = resolve_identifier(path, model.name, model.identifier)
    if problem is not None or identifier is None:
        return _Read(None, path.stem, [problem or Problem(str(path), "identifier", "missing")])
    return _Read(model, identifier, [])


def _configuration_schema(kind: str) -> _Schema[Any]:
    model = KINDS[kind]
    return _Schema(model.model_validate, lambda data: (model, None))


def _job_schema(configurations: Configurations) -> _Schema[Any]:
    context = {CONFIGURATIONS: configurations}

    def explain(data: dict[str, Any]) -> tuple[type[BaseModel], str | None]:
        kind = kind_of(data)
        return kind, None if kind is AnyJob else kind.tag()

    return _Schema(
        lambda data: validate_job(data, context),
        explain,
        lambda error: all(item["type"] == CHECK_ERROR for item in error.errors()),
    )


# -- configurations ----------------------------------------------------------------------------------


def _load_shelf(folder: Path, kind: str, shelf: Shelf[Any], problems: list[Problem], limits: Limits) -> None:
    schema = _configuration_schema(kind)
    found: dict[str, list[tuple[Path, Any]]] = {}
    for path in find_yaml_files(folder / kind):
        read = _read(path, schema, limits)
        problems.extend(read.problems)
        if read.model is None:
            shelf.invalid[read.identifier] = path
        else:
            found.setdefault(read.identifier, []).append((path, read.model))
    problems.extend(duplicate_problems({i: [p for p, _ in items] for i, items in found.items()}, KIND_LABELS[kind]))
    for identifier, items in found.items():
        if len(items) == 1:
            path, model = items[0]
            shelf.valid[identifier] = Loaded(identifier, path, model)
        else:
            shelf.invalid[identifier] = items[0][0]


def _route_problems(configurations: Configurations) -> Iterable[Problem]:
    for identifier, route in list(configurations.routes.valid.items()):
        checks = (
            ("incoming_configuration", route.model.incoming_configuration, "incoming"),
            ("outgoing_configuration", route.model.outgoing_configuration, "outgoing"),
        )
        for key, target, kind in checks:
            shelf = configurations.shelf(kind)
            if target not in shelf.valid:
                yield Problem(str(route.path), key, shelf.describe_missing(target, KIND_LABELS[kind]))
                configurations.routes.valid.pop(identifier, None)
                configurations.routes.invalid[identifier] = route.path


def load_configurations(folder: Path | None = None) -> Configurations:
    """Load every configuration under ``folder`` (default: the setting); invalid files become problems."""
    try:
        folder = folder or settings.configurations_folder()
    except SettingError as exc:
        # No folder to name: where it would say one, a message names the setting instead.
        return Configurations(folder=Path("[scheduled_jobs] configurations_folder"), problems=[exc.problem])
    configurations = Configurations(folder=folder)
    if not folder.is_dir():
        configurations.problems.append(
            Problem(
                str(folder), "(folder)", "configurations folder does not exist ([scheduled_jobs] configurations_folder)"
            )
        )
        return configurations
    try:
        limits = Limits.from_settings()
    except SettingError as exc:  # no file is read under a limit nobody chose
        configurations.problems.append(exc.problem)
        return configurations
    for kind in KINDS:  # routes last: they refer to the other two
        _load_shelf(folder, kind, configurations.shelf(kind), configurations.problems, limits)
    configurations.problems.extend(_route_problems(configurations))
    return configurations


# -- job definitions ---------------------------------------------------------------------------------


def load_catalog(
    definitions_folder: Path | None = None,
    configurations_folder: Path | None = None,
    *,
    files: list[Path] | None = None,
    configurations: Configurations | None = None,
) -> Catalog:
    """Load and validate job definitions (all in the folder, or just ``files``) and configurations.

    ``configurations``: already loaded (the cache's), instead of loading ``configurations_folder``.
    Never raises for bad input: every problem is collected, and every valid job is still returned.
    """
    if configurations is None:
        configurations = load_configurations(configurations_folder)
    catalog = Catalog(configurations=configurations, problems=list(configurations.problems))
    # A bad setting is a problem like a bad file's: the problems DAG file's import error, a validate line.
    catalog.problems.extend(p for p in settings.problems() if p not in catalog.problems)
    try:
        folder = definitions_folder or settings.definitions_folder()
        limits = Limits.from_settings()
    except SettingError as exc:
        if exc.problem not in catalog.problems:
            catalog.problems.append(exc.problem)
        return catalog
    paths = files if files is not None else find_yaml_files(folder)
    if files is None and not folder.is_dir():
        catalog.problems.append(
            Problem(
                str(folder), "(folder)", "job definitions folder does not exist ([scheduled_jobs] definitions_folder)"
            )
        )
    schema = _job_schema(configurations)
    default_timezone = settings.default_timezone()
    by_identifier: dict[str, list[Path]] = {}
    for path in paths:
        read = _read(path, schema, limits)
        # Invalid files count too: which file an identifier means would be ambiguous.
        by_identifier.setdefault(read.identifier, []).append(path)
        catalog.problems.extend(read.problems)
        definition: JobDefinition | None = read.model
        if definition is not None:
            realtime = definition.realtime_routes(configurations)
            timezone = definition.timezone or default_timezone
            catalog.jobs[read.identifier] = ScheduledJob(read.identifier, path, definition, timezone, realtime)
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

    Repair would then hand a task that is still being pushed to a second exporter (the export renews
    its claims while a publish is in flight, but a publish that outlives the threshold must not be
    needed for that). The threshold is the lowest of every repair job's and of the default
    ``[scheduled_jobs] stuck_after_minutes``: a repair job without the key, and the Processes page, use it.
    """
    if catalog.configurations is None:
        return []
    try:
        default_minutes = settings.stuck_after_minutes()
    except SettingError:  # the setting's own problem says why; no threshold to check against
        return []
    thresholds = [
        (j.definition.stuck_after_minutes or default_minutes, 0, f"repair job {j.identifier!r}")
        for j in catalog.jobs.values()
        if isinstance(j.definition, RepairJob)
    ]
    thresholds.append((default_minutes, 1, "the [scheduled_jobs] stuck_after_minutes setting"))
    minutes, _, holder = min(thresholds)
    problems = []
    for loaded in catalog.configurations.outgoing.valid.values():
        publisher = loaded.model.publisher
        timeout = getattr(publisher, "timeout_seconds", None)
        retry = getattr(publisher, "retry", None)
        if timeout is None or retry is None:
            continue
        # timeout_seconds is each try's total deadline (connectors/deadline.py), so this bound is true.
        worst = retry.worst_case_seconds(timeout) + settings.LEASE_REFRESH_SECONDS
        if worst >= minutes * 60:
            problems.append(
                Problem(
                    str(loaded.path),
                    "publisher.timeout_seconds",
                    f"one request can take up to {worst:.0f} s (timeout_seconds {timeout:g} x retry.attempts "
                    f"{retry.attempts}, plus waits), longer than the stuck-task threshold of {minutes} minutes "
                    f"of {holder}; lower timeout_seconds or retry.attempts, or raise stuck_after_minutes",
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


def job_files(identifier: str, folder: Path) -> list[Path]:
    """Every definition file that claims the identifier (more than one is a duplicate, and each is refused)."""
    limits = Limits.from_settings()
    claiming = []
    for path in find_yaml_files(folder):
        data, _ = load_mapping(path, limits)
        if guess_identifier(data, path) == identifier:
            claiming.append(path)
    return claiming


# -- the cache of long-lived processes ---------------------------------------------------------------


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """Each file's path, mtime, size, inode and ctime. The inode catches a file replaced by a rename;
    the ctime an edit that kept size and mtime (``cp -p``, ``tar x`` and ``rsync -t`` set the mtime back,
    and nothing but the kernel sets the ctime)."""
    stats = []
    for path in find_yaml_files(folder):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed while listing: the next call sees it gone
            continue
        stats.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns))
    return tuple(stats)


class _Cache(Generic[T]):
    """One value, kept while its key (the files' stat) is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Hashable = None
        self._value: T | None = None

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if self._value is not None and self._key == key:
                return self._value
        # Loaded outside the lock: a file that is slow or fails to parse holds up its own caller only, never
        # every later one. Two callers that miss at once both load; the second result replaces the first.
        value = load()
        with self._lock:
            self._key, self._value = key, value
        return value

    def forget_parents_lock(self) -> None:
        """In a forked child: a new lock, since another thread of the parent may have held this one."""
        self._lock = threading.Lock()


_configurations_cache: _Cache[Configurations] = _Cache()
_catalog_cache: _Cache[Catalog] = _Cache()
os.register_at_fork(after_in_child=_configurations_cache.forget_parents_lock)
os.register_at_fork(after_in_child=_catalog_cache.forget_parents_lock)


def current_configurations() -> Configurations:
    """The configurations as on disk, loaded again only when a file was added, changed or removed.

    A stat per file costs far less than parsing every configuration on each webhook call.
    """
    try:
        folder = settings.configurations_folder()
    except SettingError:
        return load_configurations()  # its problem says which setting; nothing on disk to cache
    try:
        limits = Limits.from_settings()
    except SettingError:
        return load_configurations(folder)  # its problem says which setting
    key = (folder, limits, _fingerprint(folder))
    return _configurations_cache.get(key, lambda: load_configurations(folder))


def current_catalog() -> Catalog:
    """The definitions and configurations as on disk, parsed again only when a file was added, changed or removed.

    A stat per file costs far less than parsing a thousand YAML files on every page view.
    """
    configurations = current_configurations()
    try:
        definitions = settings.definitions_folder()
    except SettingError:
        return load_catalog(configurations=configurations)  # its problem says which setting
    try:
        limits = Limits.from_settings()
    except SettingError:
        return load_catalog(configurations=configurations)  # its problem says which setting
    # The configurations object is the cache's: a new one (a changed file) is a new key. The settings'
    # problems too: a setting fixed or broken is seen without a changed file.
    key = (
        definitions,
        id(configurations),
        limits,
        settings.default_timezone(),
        tuple(settings.problems()),
        _fingerprint(definitions),
    )
    return _catalog_cache.get(key, lambda: load_catalog(definitions, configurations=configurations))


def housekeeping_warnings(catalog: Catalog) -> list[str]:
    """What is not a mistake but leaves the store growing: no ``prune_tasks`` job, or none enabled."""
    prunes = [job for job in catalog.jobs.values() if isinstance(job.definition, PruneJob)]
    if not prunes:
        return [
            "no prune_tasks job: finished and skipped tasks are kept forever and the task store keeps growing; "
            "add one (job: prune_tasks, retention_days: N)"
        ]
    if all(job.definition.disabled for job in prunes):
        names = ", ".join(sorted(job.identifier for job in prunes))
        return [f"every prune_tasks job is disabled ({names}): the task store keeps growing"]
    return []
