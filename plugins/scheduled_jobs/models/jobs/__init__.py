"""The job kinds: one module per kind, joined here into the ``job:``-tagged union of a definition file.

To add a kind: a module with a ``JobKind`` subclass (its tag, keys, label, work) and one line in the union.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter, ValidationError, create_model

from scheduled_jobs.models.jobs.base import CHECK_ERROR, CONFIGURATIONS, Guard, JobKind, Overlap, TaskSpec
from scheduled_jobs.models.jobs.incoming import IncomingJob
from scheduled_jobs.models.jobs.outgoing import OutgoingJob
from scheduled_jobs.models.jobs.prune import PruneJob
from scheduled_jobs.models.jobs.repair import RepairJob

JobDefinition = Annotated[IncomingJob | OutgoingJob | RepairJob | PruneJob, Field(discriminator="job")]

KINDS: tuple[type[JobKind], ...] = get_args(get_args(JobDefinition)[0])
KIND_BY_TAG: dict[str, type[JobKind]] = {kind.tag(): kind for kind in KINDS}
LABELS: dict[str, str] = {kind.tag(): kind.label for kind in KINDS}
"""The page's words for each ``job:`` value, in the union's order."""


def _any_job() -> type[JobKind]:
    """Every kind's keys on one model, each optional: the mistakes of a file whose ``job:`` is unknown or absent.

    Its ``job`` is one of the tags, so such a file is reported as before: ``job: must be one of ...``
    or ``job: is required``, with every other mistake of the file beside it.
    """
    fields: dict[str, Any] = {"job": (Literal[tuple(KIND_BY_TAG)], ...)}
    for kind in KINDS:
        for name, info in kind.model_fields.items():
            if name in JobKind.model_fields or name in fields:
                continue
            annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            fields[name] = (annotation | None, None)
    return create_model("AnyJob", __base__=JobKind, **fields)


AnyJob = _any_job()
_ADAPTER: TypeAdapter[JobDefinition] = TypeAdapter(JobDefinition)


def kind_of(data: dict[str, Any]) -> type[JobKind]:
    """The kind a mapping's ``job:`` names, or ``AnyJob`` when it names none."""
    job = data.get("job")
    return KIND_BY_TAG.get(job, AnyJob) if isinstance(job, str) else AnyJob


def validate_job(data: dict[str, Any], context: dict[str, Any] | None = None) -> JobDefinition:
    """The definition in ``data``, or a ``ValidationError`` with every mistake of the file.

    An error of a known kind is located under its tag (``outgoing``, ``route``), as pydantic does for a
    tagged union; an unknown or absent ``job:`` gets ``AnyJob``'s errors, located at the plain keys.
    """
    try:
        return _ADAPTER.validate_python(data, context=context)
    except ValidationError as exc:
        if not any(error["type"] in ("union_tag_invalid", "union_tag_not_found") for error in exc.errors()):
            raise
    AnyJob.model_validate(data, context=context)  # raises: its job: is none of the tags
    raise AssertionError("unreachable: AnyJob accepts no job: that the union refused")


__all__ = [
    "CHECK_ERROR",
    "CONFIGURATIONS",
    "KINDS",
    "KIND_BY_TAG",
    "LABELS",
    "AnyJob",
    "Guard",
    "IncomingJob",
    "JobDefinition",
    "JobKind",
    "OutgoingJob",
    "Overlap",
    "PruneJob",
    "RepairJob",
    "TaskSpec",
    "kind_of",
    "validate_job",
]
