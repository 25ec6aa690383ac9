"""Cron expressions: field-by-field validation, a human description, and fire times with DST notes.

Fire times come from Airflow's own ``CronTriggerTimetable``, the very timetable the scheduler uses, so
the preview can never disagree with the DAG. The DST notes compare those fire times with the wall-clock
times the expression names.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

if TYPE_CHECKING:
    from collections.abc import Iterator

# The presets Airflow resolves itself (airflow.sdk.definitions.timetables._cron.CRON_PRESETS).
PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    # 7 is Sunday too, as in Vixie cron and croniter.
    _Field("day of week", 0, 7, _DAYS, 0),
)
_NUMBER = re.compile(r"^\d+$")


def resolve_preset(expression: str) -> str:
    return PRESETS.get(expression.strip(), expression.strip())


def _value(field: _Field, token: str) -> tuple[int | None, str | None]:
    """Parse one value of a field: a number or, for month and day of week, a name."""
    lowered = token.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + field.names_start, None
    if not _NUMBER.match(token):
        allowed = f"a number {field.low}-{field.high}"
        if field.names:
            allowed += f" or a name {field.names[0].upper()}-{field.names[-1].upper()}"
        return None, f"{field.name}: {token!r} is not {allowed}"
    number = int(token)
    if not field.low <= number <= field.high:
        return None, f"{field.name}: {number} is out of range {field.low}-{field.high}"
    return number, None


def _item_error(field: _Field, item: str) -> str | None:
    """Check one comma-separated item: ``*``, ``a``, ``a-b``, each with an optional ``/step``."""
    if item == "":
        return f"{field.name}: empty list item"
    base, slash, step = item.partition("/")
    if slash:
        if not _NUMBER.match(step) or int(step) == 0:
            return f"{field.name}: step {step!r} in {item!r} must be a whole number of at least 1"
        if int(step) > field.high:
            return f"{field.name}: step {step} in {item!r} is out of range 1-{field.high}"
    if base == "*":
        return None
    if field.name == "day of month" and base.upper() == "L" and not slash:
        return None  # the last day of the month
    if field.name == "day of week" and not slash:
        day, hash_sign, nth = base.partition("#")
        if hash_sign:
            _, error = _value(field, day)
            if error:
                return error
            if not _NUMBER.match(nth) or not 1 <= int(nth) <= 5:
                return f"{field.name}: {item!r}: the week after '#' must be 1-5"
            return None
    start, dash, end = base.partition("-")
    first, error = _value(field, start)
    if error:
        return error
    if dash:
        last, error = _value(field, end)
        if error:
            return error
        assert first is not None and last is not None
        if first > last:
            return f"{field.name}: range {base!r} starts after it ends"
    return None


def cron_errors(expression: str, now: dt.datetime | None = None) -> list[str]:
    """Return every problem with an expression, each as ``field: reason``; empty when it is valid.

    A well-formed expression that has no fire time in the next ``FIRE_WITHIN_YEARS`` years (after
    ``now``, default now) is a problem too: Airflow could never schedule it.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:  # before the caches, which would keep it
        return [
            f"is {len(expression)} characters long; a cron expression is at most {MAX_EXPRESSION_LENGTH} "
            "(5 fields, e.g. '*/15 * * * *')"
        ]
    errors = list(_cron_errors(expression))
    if not errors:
        day = (now or dt.datetime.now(dt.UTC)).date()
        never = _fire_time_error(expression.strip(), day)
        if never is not None:
            errors.append(never)
    return errors


MAX_EXPRESSION_LENGTH = 1000
"""Longer than every value of every field listed out (about 360 characters)."""
FIRE_WITHIN_YEARS = 10
"""An expression must fire within this many years; 29 February (at most 8 years apart) still passes."""

_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _listed(items: list[str], word: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _missing_days_reason(text: str) -> str | None:
    """'February has no 30th' when the days of month named exist in none of the months named.

    Only when the day of week is ``*``: otherwise cron fires on either field (Vixie cron's OR), and
    the weekdays still fire.
    """
    from croniter import croniter

    (_, _, days, months, weekdays), nth = croniter.expand(text)
    if weekdays != ["*"] or nth or not all(isinstance(day, int) for day in days):
        return None
    chosen = range(1, 13) if months == ["*"] else [m for m in months if isinstance(m, int)]
    if any(min(days) <= _LONGEST_MONTH[month - 1] for month in chosen):
        return None
    names = [_MONTH_NAMES[month - 1] for month in chosen]
    verb = "has" if len(names) == 1 else "have"
    return f"{_listed(names, 'and')} {verb} no {_listed([_ordinal(int(day)) for day in days], 'or')}"


@functools.lru_cache(maxsize=4096)
def _fire_time_error(expression: str, day: dt.date) -> str | None:
    # Cached per day: many jobs share an expression, and validating a thousand must stay cheap.
    text = resolve_preset(expression)
    parts = text.split()
    if _PLAIN.match(text) and parts[2] == "*":
        return None  # every valid minute, hour and weekday comes round within a week
    from croniter import CroniterError, croniter

    start = dt.datetime.combine(day, dt.time())
    try:
        end = start.replace(year=start.year + FIRE_WITHIN_YEARS)
    except ValueError:  # from 29 February
        end = start.replace(year=start.year + FIRE_WITHIN_YEARS, day=28)
    try:
        first = croniter(text, start, max_years_between_matches=FIRE_WITHIN_YEARS).get_next(dt.datetime)
    except CroniterError:
        first = None
    if first is not None and first < end:
        return None
    reason = _missing_days_reason(text)
    if reason is not None:
        return f"{expression!r} never fires ({reason}); choose days that every month named has, or 'L' for the last day"
    return (
        f"{expression!r} has no fire time in the next {FIRE_WITHIN_YEARS} years (before {end.date().isoformat()}); "
        "check the day of month, month and day of week together"
    )


@functools.lru_cache(maxsize=4096)
def _cron_errors(expression: str) -> tuple[str, ...]:
    # Cached: many jobs share an expression.
    text = expression.strip()
    if text.startswith("@"):
        if text in PRESETS:
            return ()
        return (f"unknown preset {text!r}; use one of {', '.join(PRESETS)}",)
    parts = text.split()
    if len(parts) != len(_FIELDS):
        names = ", ".join(f.name for f in _FIELDS)
        return (f"{expression!r} has {len(parts)} fields; a cron expression has 5 ({names})",)
    errors = _field_errors(parts)
    if not errors and not _PLAIN.match(text):
        # Names, 'L' and '#': croniter is what Airflow evaluates with, so whatever it refuses is refused
        # here too. Plain numeric expressions skip it: the field checks above are stricter than croniter
        # (tests/test_cron.py compares both on generated expressions), and croniter's parse is the
        # dearest step of validating a thousand definitions.
        from croniter import CroniterBadCronError, CroniterBadDateError, croniter

        try:
            croniter(text)
        except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
            errors.append(str(exc))
    return tuple(errors)


_PLAIN = re.compile(r"^[0-9*/,\- ]+$")


def _field_errors(parts: list[str]) -> list[str]:
    return [
        error
        for field, part in zip(_FIELDS, parts, strict=True)
        for item in part.split(",")
        if (error := _item_error(field, item)) is not None
    ]


def timezone_error(name: str) -> str | None:
    """Return why ``name`` is not an IANA time zone name, with the closest names as a hint."""
    if name in _iana_names():  # the list first: ZoneInfo would open a file named after any text
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return None
    if len(name) > MAX_TIMEZONE_LENGTH:
        return f"is {len(name)} characters long, not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC')"
    hint = difflib.get_close_matches(name, sorted(_iana_names()), n=3, cutoff=0.6)
    suggestion = f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
    return f"{name!r} is not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC'){suggestion}"


MAX_TIMEZONE_LENGTH = 100
"""The longest IANA name has 32 characters; a longer text is not compared with all 600 of them."""
_IANA: set[str] = set()


def _iana_names() -> set[str]:
    if not _IANA:
        _IANA.update(available_timezones())
        _IANA.add("UTC")
    return _IANA


def describe(expression: str) -> str:
    """A sentence for the expression, as Airflow's UI shows it (cron-descriptor, 24-hour clock)."""
    from cron_descriptor import CasingTypeEnum, ExpressionDescriptor

    return str(
        ExpressionDescriptor(
            resolve_preset(expression), casing_type=CasingTypeEnum.Sentence, use_24hour_time_format=True
        ).get_description()
    )


@dataclass(frozen=True)
class FireTime:
    """One moment the job fires, in the job's time zone, with a note when DST moved or shaped it."""

    at: dt.datetime
    note: str | None = None

    def __str__(self) -> str:
        return f"{self.at.isoformat()}  {self.note}" if self.note else self.at.isoformat()


def _exists(naive: dt.datetime, zone: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == naive


def _is_repeated(naive: dt.datetime, zone: ZoneInfo) -> bool:
    return naive.replace(tzinfo=zone, fold=0).utcoffset() != naive.replace(tzinfo=zone, fold=1).utcoffset()


def _timetable_fire_times(expression: str, timezone: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """Fire times strictly after ``after``, computed by Airflow's own CronTriggerTimetable."""
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable
    from croniter import CroniterBadDateError

    timetable = CronTriggerTimetable(resolve_preset(expression), timezone=timezone)
    earliest = pendulum.instance(after + dt.timedelta(seconds=1))
    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=True)
    last: DataInterval | None = None
    while True:
        try:
            info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        except CroniterBadDateError:  # no further fire time within croniter's search: stop, never raise
            return
        if info is None:
            return
        last = info.data_interval
        yield info.run_after


def _fmt(naive: dt.datetime) -> str:
    return naive.strftime("%H:%M")


def fire_times(expression: str, timezone: str, count: int, after: dt.datetime) -> list[FireTime]:
    """The next ``count`` fire times after ``after`` (aware), with DST notes.

    Notes: a wall-clock time that does not exist (clocks go forward) is either *moved* to the first
    time after the gap or *skipped*; a wall-clock time that exists twice (clocks go back) is marked
    *repeated*, saying whether the job fires at both or once.
    """
    from croniter import croniter

    zone = ZoneInfo(timezone)
    cron_text = resolve_preset(expression)
    fires: list[dt.datetime] = []
    for moment in _timetable_fire_times(cron_text, timezone, after):
        fires.append(moment.astimezone(zone))
        if len(fires) > count:  # one more than shown, to see whether a repeated time fires twice
            break
    walls = [f.replace(tzinfo=None) for f in fires]
    previous_wall = after.astimezone(zone).replace(tzinfo=None)
    result: list[FireTime] = []
    for index, (fire, wall) in enumerate(zip(fires[:count], walls[:count], strict=True)):
        notes: list[str] = []
        named_times = croniter(cron_text, previous_wall)
        moved_from: dt.datetime | None = None
        if not croniter.match(cron_text, wall):
            moved_from = croniter(cron_text, wall).get_prev(dt.datetime)
            notes.append(
                f"DST: moved from {_fmt(moved_from)}, which does not exist on "
                f"{moved_from.date().isoformat()} (clocks go forward)"
            )
        skipped = []
        for _ in range(10_000):
            named = named_times.get_next(dt.datetime)
            if named >= wall:
                break
            if named != moved_from and not _exists(named, zone):
                skipped.append(named)
        if skipped:
            span = _fmt(skipped[0]) if len(skipped) == 1 else f"{_fmt(skipped[0])}-{_fmt(skipped[-1])}"
            notes.append(f"DST: {span} skipped, does not exist on {skipped[0].date().isoformat()} (clocks go forward)")
        if moved_from is None and _is_repeated(wall, zone):
            twice = walls.count(wall) > 1 or (index > 0 and walls[index - 1] == wall)
            how = "fires at both" if twice else f"fires once, at UTC{fire.strftime('%z')[:3]}:{fire.strftime('%z')[3:]}"
            notes.append(f"DST: {_fmt(wall)} occurs twice on {wall.date().isoformat()} (clocks go back); {how}")
        result.append(FireTime(fire, "; ".join(notes) or None))
        previous_wall = wall
    return result
