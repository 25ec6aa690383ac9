"""The timetables of the jobs' DAGs: what Airflow's DAG list shows in its Schedule column, and when a job first runs.

Airflow's DAG list shows a timetable's ``summary`` (stored by the DAG processor as the DAG's
``timetable_summary``) and its ``description`` as the tooltip. The built-in ``CronTriggerTimetable``
summarises itself as the bare expression, and a DAG without a schedule as "None", so neither the
Timezone nor a Disabled switch was visible there.

Both classes are Airflow core timetables: the DAG processor serializes them by their import path and
the scheduler and the API server deserialize them, which Airflow allows only for classes a plugin
registers (``timetables`` of ``web/plugin.py``'s plugin). Neither changes how Airflow schedules.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.timetables.simple import NullTimetable
from airflow.timetables.trigger import CronTriggerTimetable

if TYPE_CHECKING:
    from airflow.timetables.base import Timetable
    from pendulum.tz.timezone import FixedTimezone, Timezone

# Airflow 3.3's CronTriggerTimetable treats its default ``run_immediately=False`` like ``None`` (its
# ``_calc_first_run`` only tests ``is True`` and ``isinstance(timedelta)``): a DAG new to the scheduler
# runs at once for the last fire time if that was at most max(10 % of the gap between fire times,
# 5 minutes) ago. A zero window makes a new job wait for its next fire time, as a user who has just
# saved it expects; only a job added at the very second of a fire time runs for that one.
FIRST_RUN_WINDOW = dt.timedelta(0)


MAX_DESCRIPTION = 1000
"""Characters of Airflow's ``dag.timetable_description`` column (String(1000))."""


class JobTimetable(CronTriggerTimetable):
    """Airflow's CronTriggerTimetable whose summary also names the Timezone: ``*/5 * * * * (Europe/Amsterdam)``."""

    def __init__(self, cron: str, *, timezone: str | Timezone | FixedTimezone, **kwargs: Any) -> None:
        kwargs.setdefault("run_immediately", FIRST_RUN_WINDOW)
        super().__init__(cron, timezone=timezone, **kwargs)
        # The meaning of a valid Expression can be long (every value of every field listed: 1,305
        # characters); Airflow's dag.timetable_description holds 1,000, and one value too long fails the
        # write of every DAG of the file on PostgreSQL.
        if len(self.description) > MAX_DESCRIPTION:
            self.description = self.description[: MAX_DESCRIPTION - 1] + "…"

    @property
    def summary(self) -> str:
        return f"{self._expression} ({self._timezone.name})"

    @property
    def expression(self) -> str:
        return self._expression

    @property
    def timezone_name(self) -> str:
        return str(self._timezone.name)


class DisabledTimetable(NullTimetable):
    """No scheduled runs, as Airflow's NullTimetable, shown as "Disabled" in the Schedule column."""

    description = "Disabled in its definition file (disabled: true): no scheduled runs"

    @property
    def summary(self) -> str:
        return "Disabled"


TIMETABLES: list[type[Timetable]] = [JobTimetable, DisabledTimetable]
"""What the plugin registers, so that the scheduler and the API server may deserialize them."""
