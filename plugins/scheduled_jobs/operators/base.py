"""What every scheduled-job operator shares: the disabled switch, the configurations it reads, the run history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from scheduled_jobs.catalog import load_configurations
from scheduled_jobs.exceptions import ScheduledJobsError
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.operators.guard import keep_hold
from scheduled_jobs.redaction import Redactor, printable
from scheduled_jobs.store import TaskStoreHook, job_run_ended, job_run_started

if TYPE_CHECKING:
    from airflow.sdk import Context

    from scheduled_jobs.models.configurations import Configurations

ERROR_CHARACTERS = 1000
"""The most of an error's text a job run's history keeps."""
FIGURE_TEXT_CHARACTERS = 200
MAX_FIGURES = 20


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
    """Base of the job operators: a disabled job processes nothing, and says so in the log."""

    ui_color = "#e8f1fb"

    def __init__(
        self, *, disabled: bool = False, definition_file: str = "", configuration: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.disabled = disabled
        self.definition_file = definition_file
        self.configuration = configuration
        """The guard's key (``incoming:<id>``, ``route:<id>``) of a guarded job's work: its runs are recorded."""

    def execute(self, context: Context) -> Any:
        if self.disabled:
            reason = (
                f"Scheduled job {self.dag_id!r} is disabled (disabled: true in {self.definition_file}); "
                "nothing was processed"
            )
            self.log.warning(reason)
            raise AirflowSkipException(reason)
        row = self._history_started(context)
        try:
            with keep_hold(context):  # a long run keeps its hold on its configuration
                result = self.run(context)
        except AirflowSkipException as skip:
            self._history_ended(row, "skipped", None, error_text(skip))
            raise
        except BaseException as exc:
            self._history_ended(row, "failed", getattr(exc, "figures", None), error_text(exc))
            raise
        self._history_ended(row, "success", result, None)
        return result

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
