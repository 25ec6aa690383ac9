"""Cron validation, descriptions, and fire times across DST changes."""

from __future__ import annotations

import datetime as dt

import pytest

from scheduled_jobs.cron import cron_errors, describe, fire_times, timezone_error


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 6 * * 1-5",
        "0 0 1 */3 *",
        "0 0 L * *",
        "0 0 * * 5#2",
        "0 0 * jan,feb mon-fri",
        "15,45 8-18/2 * * *",
        "0 0 * * 7",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
    ],
)
def test_valid_expressions(expression: str) -> None:
    assert cron_errors(expression) == []


@pytest.mark.parametrize(
    ("expression", "errors"),
    [
        ("61 * * * *", ["minute: 61 is out of range 0-59"]),
        ("0-60 * * * *", ["minute: 60 is out of range 0-59"]),
        ("*/0 * * * *", ["minute: step '0' in '*/0' must be a whole number of at least 1"]),
        ("*/61 * * * *", ["minute: step 61 in '*/61' is out of range 1-59"]),
        ("30-10 * * * *", ["minute: range '30-10' starts after it ends"]),
        ("1,,2 * * * *", ["minute: empty list item"]),
        ("0 0 * * 5#6", ["day of week: '5#6': the week after '#' must be 1-5"]),
        ("0 0 * foo *", ["month: 'foo' is not a number 1-12 or a name JAN-DEC"]),
        ("99 99 * * *", ["minute: 99 is out of range 0-59", "hour: 99 is out of range 0-23"]),
        (
            "* * * * * *",
            ["'* * * * * *' has 6 fields; a cron expression has 5 (minute, hour, day of month, month, day of week)"],
        ),
    ],
)
def test_invalid_expressions_name_field_value_and_range(expression: str, errors: list[str]) -> None:
    assert cron_errors(expression) == errors


def test_timezone_must_be_an_iana_name() -> None:
    assert timezone_error("America/New_York") is None
    assert timezone_error("UTC") is None
    assert timezone_error("+02:00") == "'+02:00' is not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC')"


def test_description_is_human_readable() -> None:
    assert describe("*/5 * * * *") == "Every 5 minutes"
    assert describe("0 6 * * 1-5") == "At 06:00, Monday through Friday"
    assert describe("@daily") == "At 00:00"


@pytest.mark.parametrize(
    ("expression", "zone", "start", "count", "expected"),
    [
        pytest.param(
            "30 2 * * *",
            "Europe/Amsterdam",
            "2026-03-28T12:00:00+00:00",
            2,
            [
                "2026-03-29T03:30:00+02:00  DST: moved from 02:30, which does not exist on 2026-03-29 (clocks go forward)",
                "2026-03-30T02:30:00+02:00",
            ],
            id="spring-forward-moves-a-daily-time-that-does-not-exist",
        ),
        pytest.param(
            "0 * * * *",
            "America/New_York",
            "2026-03-08T05:30:00+00:00",
            3,
            [
                "2026-03-08T01:00:00-05:00",
                "2026-03-08T03:00:00-04:00  DST: 02:00 skipped, does not exist on 2026-03-08 (clocks go forward)",
                "2026-03-08T04:00:00-04:00",
            ],
            id="spring-forward-skips-the-missing-hour-of-an-hourly-job",
        ),
        pytest.param(
            "0 * * * *",
            "America/New_York",
            "2026-11-01T04:30:00+00:00",
            3,
            [
                "2026-11-01T01:00:00-04:00  DST: 01:00 occurs twice on 2026-11-01 (clocks go back); fires at both",
                "2026-11-01T01:00:00-05:00  DST: 01:00 occurs twice on 2026-11-01 (clocks go back); fires at both",
                "2026-11-01T02:00:00-05:00",
            ],
            id="fall-back-runs-an-hourly-job-at-both-repeated-hours",
        ),
        pytest.param(
            "30 2 * * *",
            "Europe/Amsterdam",
            "2026-10-24T12:00:00+00:00",
            2,
            [
                "2026-10-25T02:30:00+01:00  DST: 02:30 occurs twice on 2026-10-25 (clocks go back); fires once, at UTC+01:00",
                "2026-10-26T02:30:00+01:00",
            ],
            id="fall-back-runs-a-daily-job-once",
        ),
    ],
)
def test_fire_times_across_dst_changes(expression: str, zone: str, start: str, count: int, expected: list[str]) -> None:
    after = dt.datetime.fromisoformat(start)
    assert [str(f) for f in fire_times(expression, zone, count, after)] == expected


def _generated_numeric_expressions(count: int, seed: int) -> list[str]:
    import random

    from scheduled_jobs.cron import _FIELDS

    rng = random.Random(seed)

    def item(high: int) -> str:
        number = lambda: str(rng.randint(0, high + 2))  # noqa: E731 - a tiny generator
        roll = rng.random()
        text = "*" if roll < 0.2 else number() if roll < 0.5 else f"{number()}-{number()}"
        return text + (f"/{rng.randint(0, high + 2)}" if rng.random() < 0.3 else "")

    return [" ".join(",".join(item(f.high) for _ in range(rng.randint(1, 3))) for f in _FIELDS) for _ in range(count)]


def test_numeric_expressions_we_accept_are_accepted_by_croniter_too() -> None:
    """Plain numeric expressions skip croniter, so our checks must never accept what croniter refuses
    (Airflow would then fail the whole DAG file at parse)."""
    from croniter import croniter

    accepted = [e for e in _generated_numeric_expressions(20_000, seed=7) if not cron_errors(e)]
    assert len(accepted) > 200  # the generator makes enough valid ones for the comparison to mean something
    refused = []
    for expression in accepted:
        try:
            croniter(expression)
        except Exception as exc:
            refused.append((expression, str(exc)))
    assert refused == []
