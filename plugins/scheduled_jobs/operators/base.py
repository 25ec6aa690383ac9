"""What every scheduled-job operator shares: the disabled switch and the configurations it reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from scheduled_jobs.catalog import load_configurations
from scheduled_jobs.exceptions import ScheduledJobsError
from scheduled_jobs.models.tasks import Actor
from scheduled_jobs.operators.guard import keep_hold

if TYPE_CHECKING:
    from airflow.sdk import Context

    from scheduled_jobs.models.configurations import Configurations


class ScheduledJobOperator(BaseOperator):
    """Base of the job operators: a disabled job processes nothing, and says so in the log."""

    ui_color = "#e8f1fb"

    def __init__(self, *, disabled: bool = False, definition_file: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.disabled = disabled
        self.definition_file = definition_file

    def execute(self, context: Context) -> Any:
        if self.disabled:
            reason = (
                f"Scheduled job {self.dag_id!r} is disabled (disabled: true in {self.definition_file}); "
                "nothing was processed"
            )
            self.log.warning(reason)
            raise AirflowSkipException(reason)
        with keep_hold(context):  # a long run keeps its hold on its configuration
            return self.run(context)

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
