"""What every scheduled-job operator shares: the disabled switch, the configurations it reads, the run history."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from scheduled_jobs.catalog import load_configurations
from scheduled_jobs.compat import AirflowFailException, AirflowSkipException
from scheduled_jobs.exceptions import ScheduledJobsError
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.operators.guard import after_wait, enter_guard, keep_hold, release_hold
from scheduled_jobs.redaction import Redactor, printable
from scheduled_jobs.store import TaskStoreHook, job_run_ended, job_run_started
from scheduled_jobs.triggers.guard import GuardTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from scheduled_jobs.models.configurations import Configurations
    from scheduled_jobs.models.jobs import Overlap

ERROR_CHARACTERS = 1000
"""The most of an error's text a job run's history keeps."""
FIGURE_TEXT_CHARACTERS = 200
MAX_FIGURES = 20
GUARD_WAIT_TIMEOUT = dt.timedelta(days=7)
"""The longest an ``inline``-guarded task waits for its configuration: the ``guard`` sensor's default timeout."""


def run_figures(result: Any) -> dict[str, Any] | None:
    """What a run returned, small and JSON-safe for its history: numbers and flags as they are, a list as
    its length (``rejected`` sources, ``reset`` task ids), a text cut short; nested mappings are left out."""
    if not isinstance(result, dict):
        return None
    figures: dict[str, Any] = {}
    for key, value in list(result.items())[:MAX_FIGURES]:
        if not isinstance(key, str):
            continue
        if value is None or isinstance(value, bool | int | float):
            figures[key] = value
        elif isinstance(value, list | tuple | set | frozenset):
            figures[key] = len(value)
        elif isinstance(value, str):
            figures[key] = printable(value)[:FIGURE_TEXT_CHARACTERS]
    return figures


def error_text(error: BaseException) -> str:
    """An exception as a run's history shows it, from parts we choose.

    Our own errors (``ScheduledJobsError``, a skip's reason) are texts this package built, every remote
    part already through its connection's redactor: their message is kept, on one line, with the
    userinfo of any URL masked once more, and cut short. Any other exception is a library's text that
    may carry anything (a connection string, a header): only its class is kept; the task log has the rest.
    """
    if isinstance(error, AirflowSkipException):
        text = str(error)
    elif isinstance(error, ScheduledJobsError):
        text = f"{type(error).__name__}: {error}"
    else:
        return f"{type(error).__name__} (see the task log)"
    return Redactor().excerpt(printable(text), ERROR_CHARACTERS, whole=True)


class ScheduledJobOperator(BaseOperator):
    """Base of the job operators: a disabled job processes nothing, and says so in the log.

    With ``inline_guard`` (the ``inline`` guard design, ``[scheduled_jobs] guard_design``) the task applies
    the duplicate rule itself before its work: it executes, is skipped as a duplicate, or defers to the
    guard's trigger and resumes into the work once its configuration is free. It frees its hold in its
    own ``finally``; a task process killed outright never gets there, and the ledger clears its hold once
    Airflow says the run is over (or, when Airflow cannot answer, once the lease runs out).
    """

    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        disabled: bool = False,
        definition_file: str = "",
        configuration: str | None = None,
        inline_guard: Overlap | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.disabled = disabled
        self.definition_file = definition_file
        self.configuration = configuration
        """The guard's key (``incoming:<id>``, ``route:<id>``) of a guarded job's work: its runs are recorded."""
        self.inline_guard = inline_guard
        """The overlap policy when this task applies the duplicate rule itself (the ``inline`` design)."""

    def execute(self, context: Context) -> Any:
        self._skip_when_disabled()
        if self.inline_guard is not None and self.configuration is not None:
            decided = enter_guard(context, self.configuration, self.inline_guard, self.log)
            if isinstance(decided, GuardTrigger):
                self.defer(trigger=decided, method_name="execute_after_wait", timeout=GUARD_WAIT_TIMEOUT)
        return self._work(context)

    def execute_after_wait(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Where a task that waited for its configuration (the ``inline`` design) resumes: into its work,
        unless its job was disabled meanwhile (the task is built again from the definition file)."""
        if self.disabled:
            self._release(context, may_retry=False)
            self._skip_when_disabled()
        if self.configuration is not None:
            after_wait(context, self.configuration, event, self.log)
        return self._work(context)

    def _skip_when_disabled(self) -> None:
        if self.disabled:
            reason = (
                f"Scheduled job {self.dag_id!r} is disabled (disabled: true in {self.definition_file}); "
                "nothing was processed"
            )
            self.log.warning(reason)
            raise AirflowSkipException(reason)

    def _work(self, context: Context) -> Any:
        row = self._history_started(context)
        may_retry = False
        try:
            with keep_hold(context):  # a long run keeps its hold on its configuration
                result = self.run(context)
            self._history_ended(row, "success", result, None)
            return result
        except AirflowSkipException as skip:
            self._history_ended(row, "skipped", None, error_text(skip))
            raise
        except BaseException as exc:
            may_retry = not isinstance(exc, AirflowFailException)
            self._history_ended(row, "failed", getattr(exc, "figures", None), error_text(exc))
            raise
        finally:
            if self.inline_guard is not None:
                self._release(context, may_retry)

    def _release(self, context: Context, may_retry: bool) -> None:
        """The ``inline`` design's release: at the end of the work, unless a failed try will be tried again
        (its retry then finds its own hold, as a retried ``guard`` does). Never the reason a job fails: a
        hold left behind is cleared once Airflow says the run is over."""
        ti = context["ti"]
        # Airflow's own rule (max_tries grows when a user clears a failed task), not the operator's retries.
        max_tries = int(getattr(ti, "max_tries", 0) or 0)
        if may_retry and max_tries and int(ti.try_number or 1) <= max_tries:
            self.log.info("This try failed and will be tried again: the run keeps its hold on %s", self.configuration)
            return
        try:
            release_hold(context, self.log)
        except Exception as exc:
            self.log.warning("Cannot release this run's hold (cleared once the run is over): %r", exc)

    def _history_started(self, context: Context) -> int | None:
        """The history row of this try; None for an unguarded job, or when it cannot be written."""
        if self.configuration is None:
            return None
        ti = context["ti"]
        try:
            engine = TaskStoreHook().get_engine()
            return job_run_started(engine, self.configuration, ti.dag_id, ti.run_id, ti.task_id, ti.try_number)
        except Exception as exc:  # the history serves the pages: never the reason a job fails
            self.log.warning("Cannot record the start of this run in the job run history (the job goes on): %r", exc)
            return None

    def _history_ended(self, row: int | None, state: str, result: Any, error: str | None) -> None:
        if row is None:
            return
        try:
            job_run_ended(TaskStoreHook().get_engine(), row, state, run_figures(result), error)
        except Exception as exc:  # the history serves the pages: never the reason a job fails
            self.log.warning("Cannot record the end of this run in the job run history (the job goes on): %r", exc)

    def run(self, context: Context) -> Any:
        raise NotImplementedError

    def load_configurations(self) -> Configurations:
        configurations = load_configurations()
        for problem in configurations.problems:
            self.log.warning("Invalid configuration file: %s", problem)
        return configurations


def run_actor(context: Context) -> Actor:
    """The Airflow task try doing the work, as the store records it (who made, claimed, repaired a task)."""
    ti = context["ti"]
    return Actor(
        "run",
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=int(ti.try_number) if ti.try_number is not None else None,
    )


def require(found: Any, message: str) -> Any:
    if found is None:
        raise ScheduledJobsError(message)
    return found
