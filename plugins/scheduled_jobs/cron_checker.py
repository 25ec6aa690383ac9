"""The cron checker's answer, and fire times cached per minute for the pages that list many jobs."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, SkipValidation

from scheduled_jobs.cron import FireTime, cron_errors, describe, fire_times, timezone_error


def _fires_json(fires: list[FireTime]) -> list[dict[str, str | None]]:
    # isoformat, not pydantic's datetime form, which writes UTC as "Z": the API has always said "+00:00".
    return [{"at": fire.at.isoformat(), "note": fire.note} for fire in fires]


FireTimes = Annotated[list[FireTime], SkipValidation, PlainSerializer(_fires_json, when_used="json")]
"""Fire times in a response model (built here, never parsed): ``[{"at": isoformat, "note": ...}]``."""


class CronCheck(BaseModel):
    """Valid or not (each problem as ``field: reason``), what it means, and when it fires next."""

    model_config = ConfigDict(frozen=True)

    expression: str
    timezone: str
    valid: bool
    errors: list[str]
    description: str | None
    next_fire_times: FireTimes


@functools.lru_cache(maxsize=4096)
def description_of(expression: str) -> str:
    """The expression in words, or ``""`` where cron-descriptor has none (the expression is shown beside).

    Cached: cron-descriptor loads its translations on every call, most of a jobs page's time uncached.
    """
    try:
        return describe(expression)
    except Exception:  # cron-descriptor has no words for it
        return ""


def _invalid(expression: str, timezone: str, errors: list[str]) -> CronCheck:
    return CronCheck(
        expression=expression, timezone=timezone, valid=False, errors=errors, description=None, next_fire_times=[]
    )


def check_cron(expression: str, timezone: str, count: int = 10) -> CronCheck:
    errors = [f"expression: {error}" for error in cron_errors(expression)] if expression.strip() else []
    if not expression.strip():
        errors.append("expression: is empty; a cron expression has 5 fields, e.g. '*/15 * * * *'")
    zone_problem = timezone_error(timezone)
    if zone_problem is not None:
        errors.append(f"timezone: {zone_problem}")
    if errors:
        return _invalid(expression, timezone, errors)
    now = dt.datetime.now(dt.UTC)
    try:
        fires = fire_times(expression, timezone, count, now)
    except Exception as exc:  # the checker answers with the reason, never a 500
        return _invalid(expression, timezone, [f"expression: cannot compute its fire times: {exc}"])
    return CronCheck(
        expression=expression,
        timezone=timezone,
        valid=True,
        errors=[],
        description=description_of(expression),
        next_fire_times=fires,
    )


@functools.lru_cache(maxsize=2048)
def next_fire_times(expression: str, timezone: str, count: int, minute: dt.datetime) -> tuple[FireTime, ...]:
    """The ``count`` fire times after ``minute``, computed once per expression, time zone and minute.

    Cron has minute resolution, so the fire times after the start of this minute are those after now;
    jobs that share an expression and a time zone share the work.
    """
    return tuple(fire_times(expression, timezone, count, minute))
