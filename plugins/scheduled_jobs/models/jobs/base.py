"""What every job kind shares: the schedule keys, the checks run on a definition file, and the shape of its work.

A kind is a subclass with a ``job: Literal[...]`` tag, its own keys and a ``label``; it says what it executes
(``target``), what the duplicate rule guards (``guard``), which task does its work (``work``) and what it
checks against the loaded configurations (``reference_problems``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from scheduled_jobs.cron import cron_errors, timezone_error
from scheduled_jobs.models.base import Named

if TYPE_CHECKING:
    from typing import Self

    from pydantic import ModelWrapValidatorHandler

    from scheduled_jobs.models.configurations import Configurations, Shelf

INT32 = 2**31 - 1
Overlap = Literal["buffer_one", "skip", "allow"]
"""When a job's configuration is already running: wait once (the seed's rule), skip, or allow overlap."""

CONFIGURATIONS = "configurations"
"""The validation context key of the loaded configurations: ``model_validate(data, context={CONFIGURATIONS: ...})``.

With it, a definition is checked as a file (references, the cron, the time zone); without it, only its shape.
"""


@dataclass(frozen=True)
class Guard:
    """What the duplicate rule is about (``incoming:<id>`` or ``route:<id>``), and what a second run does."""

    configuration: str
    overlap: Overlap


@dataclass(frozen=True)
class TaskSpec:
    """The task that does a job's work: data, so that the models import no operator (the factory resolves it)."""

    task_id: str
    operator: str
    """The operator's dotted class path, e.g. ``scheduled_jobs.operators.ExportRouteOperator``."""
    arguments: dict[str, Any]
    """The operator's own keyword arguments; the factory adds what every job's task has."""


CHECK_ERROR = "job_definition"
"""The pydantic error type of a check beyond the model's shape (a key of another kind, a reference, the cron)."""

Reason = tuple[str, str]
"""A problem of a definition before it has a path: ``(key, reason)``."""


def reference_problems(data: dict[str, Any], key: str, shelf: Shelf[Any], label: str) -> list[Reason]:
    """A reference to a configuration that names none that is valid (an absent one is pydantic's to report)."""
    target = data.get(key)
    if isinstance(target, str) and target and target not in shelf.valid:
        return [(key, shelf.describe_missing(target, label))]
    return []


class JobKind(Named):
    """The keys every job has; a kind adds its tag (``job``) and its own keys."""

    label: ClassVar[str]
    """What the pages call the kind."""

    job: str
    disabled: bool = False
    expression: str = Field(min_length=1)
    timezone: str | None = Field(default=None, min_length=1)
    priority: int = Field(default=0, ge=-INT32, le=INT32)

    @classmethod
    def tag(cls) -> str:
        """The kind's ``job:`` value."""
        tag: str = get_args(cls.model_fields["job"].annotation)[0]
        return tag

    @property
    def target(self) -> str | None:
        """The configuration the job executes, if any."""
        return None

    def guard(self) -> Guard | None:
        """What the duplicate rule guards around the work; None: the job runs unguarded."""
        return None

    def work(self) -> TaskSpec:
        raise NotImplementedError

    def doc_lines(self) -> list[str]:
        """The kind's own lines in the DAG's documentation."""
        return []

    def realtime_routes(self, configurations: Configurations) -> tuple[str, ...]:
        """The real-time routes exported right after the work."""
        return ()

    @classmethod
    def reference_problems(cls, data: dict[str, Any], configurations: Configurations) -> list[Reason]:
        """What the kind checks against the loaded configurations, on the raw mapping."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        """Every problem of the file at once: pydantic's, keys of another kind, and (as a file) its checks.

        The checks work on the raw mapping, so they are reported even when pydantic found other mistakes.
        """
        if not isinstance(data, dict):
            return handler(data)
        foreign = _keys_of_other_kinds(cls, data)
        reasons = [
            (key, f"only allowed with job: {' or '.join(owners)} (this job is {data['job']})")
            for key, owners in foreign.items()
        ]
        context = info.context if isinstance(info.context, dict) else {}
        if CONFIGURATIONS in context:
            reasons += _schedule_problems(data)
            if context[CONFIGURATIONS] is not None:
                reasons += cls.reference_problems(data, context[CONFIGURATIONS])
        errors: list[InitErrorDetails] = []
        try:
            validated = handler({k: v for k, v in data.items() if k not in foreign} if foreign else data)
        except ValidationError as exc:
            errors = [_own_words(cls, error) for error in exc.errors()]
        errors.extend(_problem(key, reason, data.get(key)) for key, reason in reasons)
        errors.extend(_foreign_value_errors(foreign, data))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return validated


def _schedule_problems(data: dict[str, Any]) -> list[Reason]:
    reasons: list[Reason] = []
    expression = data.get("expression")
    if isinstance(expression, str) and expression:
        reasons.extend(("expression", error) for error in cron_errors(expression))
    timezone = data.get("timezone")
    if isinstance(timezone, str) and timezone and (error := timezone_error(timezone)) is not None:
        reasons.append(("timezone", error))
    return reasons


def _problem(key: str, reason: str, value: Any) -> InitErrorDetails:
    # The reason is the message itself: braces in it must not be read as placeholders.
    return InitErrorDetails(
        type=PydanticCustomError(CHECK_ERROR, "{reason}", {"reason": reason}), loc=(key,), input=value
    )


def _own_words(kind: type[JobKind], error: Any) -> InitErrorDetails:
    """Pydantic's error as it was, except that a missing key of the kind's own says which kind needs it."""
    loc = tuple(error["loc"])
    if error["type"] == "missing" and len(loc) == 1 and loc[0] not in JobKind.model_fields:
        return _problem(str(loc[0]), f"is required with job: {kind.tag()}", error["input"])
    return InitErrorDetails(type=error["type"], loc=loc, input=error["input"], ctx=error.get("ctx", {}))


def _keys_of_other_kinds(kind: type[JobKind], data: dict[str, Any]) -> dict[str, list[str]]:
    """The keys of ``data`` that ``kind`` lacks and other kinds have, with those kinds' tags."""
    owners = _other_kinds_keys(kind)
    return {key: owners[key] for key in data if key in owners}


def _foreign_value_errors(foreign: dict[str, list[str]], data: dict[str, Any]) -> list[InitErrorDetails]:
    """A key of another kind is still checked as that kind checks it: a file that says
    ``stuck_after_minutes: abc`` under ``job: outgoing`` hears both that the key belongs to another kind
    and that its value would not do there either."""
    errors: list[InitErrorDetails] = []
    for key, owners in foreign.items():
        try:
            _owners_check(owners[0], key).validate_python(data[key])
        except ValidationError as exc:
            errors.extend(
                InitErrorDetails(type=e["type"], loc=(key, *e["loc"]), input=e["input"], ctx=e.get("ctx", {}))
                for e in exc.errors()
            )
    return errors


@functools.cache
def _owners_check(tag: str, key: str) -> TypeAdapter[Any]:
    """The check of ``key`` as the kind tagged ``tag`` declares it (once per kind and key)."""
    from scheduled_jobs.models.jobs import KIND_BY_TAG

    owner = KIND_BY_TAG[tag]
    info = owner.model_fields[key]
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation, config=ConfigDict(strict=owner.model_config.get("strict", False)))


@functools.cache
def _other_kinds_keys(kind: type[JobKind]) -> dict[str, list[str]]:
    """Each key that ``kind`` lacks and other kinds have, with those kinds' tags (once per kind: every file asks)."""
    from scheduled_jobs.models.jobs import KINDS

    owners: dict[str, list[str]] = {}
    for other in KINDS:
        for key in other.model_fields:
            if key not in kind.model_fields:
                owners.setdefault(key, []).append(other.tag())
    return owners
