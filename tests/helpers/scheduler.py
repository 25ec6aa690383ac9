"""What the scheduler tests share: runs of DAGs named ``dup-…`` triggered at once, and what Airflow says of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from helpers.triggers import trigger_together

if TYPE_CHECKING:
    from collections.abc import Callable

    from helpers.standalone import Standalone

# A scheduler and a guard that look again every second: the races happen within seconds.
QUICK = {"AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1", "AIRFLOW__SCHEDULED_JOBS__GUARD_POLL_SECONDS": "1"}


def scheduling_metadata(airflow: Standalone) -> sa.Engine:
    """Airflow's metadata database of a test that checks scheduling: PostgreSQL, never SQLite.

    Under load (the CI machine at a load average of 8 to 11) SQLite's single writer answered the
    scheduler, the triggerer and the API server with ``database is locked``, and the REST API a 500.
    SQLite stays only where the local standalone itself is the point (tests/test_start_script.py).
    """
    engine = airflow.metadata()
    assert engine.dialect.name == "postgresql", (
        f"a scheduler test runs on a PostgreSQL metadata database (the airflow_metadata_url fixture), "
        f"not {engine.dialect.name}"
    )
    return engine


def trigger_all(airflow: Standalone, jobs: list[str], webhook: set[str] | None = None) -> None:
    """A manual run of each job, asked for at once (the REST API, as the admin); those in ``webhook`` with
    conf {"trigger": "webhook"}."""
    scheduling_metadata(airflow)
    runs = [(job, {"trigger": "webhook"} if job in (webhook or set()) else None) for job in jobs]
    trigger_together(airflow.url, airflow.token("admin"), runs)


def dags_registered(airflow: Standalone, count: int) -> Callable[[], bool]:
    engine = scheduling_metadata(airflow)

    def registered() -> bool:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT count(*) FROM dag WHERE dag_id LIKE 'dup-%' AND NOT is_paused")
            ).scalar()
        return found == count

    return registered


def finished_runs(airflow: Standalone, count: int) -> Callable[[], bool]:
    engine = airflow.metadata()

    def done() -> bool:
        with engine.connect() as conn:
            states = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id LIKE 'dup-%'")).scalars().all()
        return len(states) == count and all(s in ("success", "failed") for s in states)

    return done


def task_rows(airflow: Standalone) -> dict[tuple[str, str], sa.Row[object]]:
    """Each task instance of the ``dup-…`` DAGs by (dag_id, task_id): its state, start and end."""
    with airflow.metadata().connect() as conn:
        rows = conn.execute(
            sa.text("SELECT dag_id, task_id, state, start_date, end_date FROM task_instance WHERE dag_id LIKE 'dup-%'")
        ).all()
    return {(r.dag_id, r.task_id): r for r in rows}
