"""The history of guarded job runs: one row per work task try, written when it starts and when it ends.

The Processes page reads the last runs of each configuration (``recent_job_runs``); the key is the
guard's (``incoming:<id>`` / ``route:<id>``), the same one the process ledger holds. States: ``running``,
``success``, ``failed`` and ``skipped`` (the work found nothing to do and said why). A row left
``running`` belongs to a try that never reached its end (a killed worker); the page shows Airflow's
state for it.

Figures are a small JSON object (what the run did: entities read, tasks created, exported...), the error
a text its writer already redacted; neither may hold a secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from scheduled_jobs.store.schema import job_runs
from scheduled_jobs.store.tasks import utcnow

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Engine

RUN_STATES = ("running", "success", "failed", "skipped")
MAX_FIGURES_CHARACTERS = 4000
MAX_ERROR_CHARACTERS = 2000


# Positional as the shared design (docs: issue 13) has it: the web layer and the operators call it so.
def job_run_started(  # noqa: PLR0917
    engine: Engine, configuration: str, dag_id: str, run_id: str, task_id: str, try_number: int
) -> int:
    """Record that a work task try started; its row id, for ``job_run_ended``."""
    values = {
        "configuration": configuration,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "try_number": try_number,
        "started_at": utcnow(),
        "state": "running",
    }
    with engine.begin() as conn:
        row_id = conn.execute(insert(job_runs).values(**values).returning(job_runs.c.id)).scalar_one()
    return int(row_id)


def job_run_ended(engine: Engine, row_id: int, state: str, figures: dict[str, Any] | None, error: str | None) -> None:
    """Record how a try ended. Figures too large to show are replaced by a note saying so."""
    if state not in RUN_STATES or state == "running":
        raise ValueError(f"a job run ends as success, failed or skipped, not {state!r}")
    text = None if figures is None else json.dumps(figures, separators=(",", ":"), sort_keys=True, default=str)
    if text is not None and len(text) > MAX_FIGURES_CHARACTERS:
        text = json.dumps({"note": f"figures of {len(text)} characters left out"})
    if error is not None and len(error) > MAX_ERROR_CHARACTERS:
        error = error[:MAX_ERROR_CHARACTERS] + "... (cut)"
    with engine.begin() as conn:
        conn.execute(
            update(job_runs)
            .where(job_runs.c.id == row_id)
            .values(state=state, ended_at=utcnow(), figures=text, error=error)
        )


def _row(row: Any) -> dict[str, Any]:
    values = dict(row._mapping)
    try:
        figures = json.loads(values["figures"]) if values["figures"] else None
    except ValueError:
        figures = None
    values["figures"] = figures if isinstance(figures, dict) else None
    return values


def recent_job_runs(
    engine: Engine, configuration: str | None = None, per_configuration: int = 10
) -> dict[str, list[dict[str, Any]]]:
    """The last ``per_configuration`` runs of one configuration (or of each), newest first.

    One indexed query per configuration (configuration, id DESC ... LIMIT), so a long history costs
    nothing here.
    """
    per_configuration = max(1, per_configuration)
    with engine.connect() as conn:
        if configuration is None:
            names = list(conn.execute(select(job_runs.c.configuration).distinct()).scalars())
        else:
            names = [configuration]
        runs: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(names):
            query = (
                select(job_runs)
                .where(job_runs.c.configuration == name)
                .order_by(job_runs.c.id.desc())
                .limit(per_configuration)
            )
            rows = [_row(row) for row in conn.execute(query)]
            if rows:
                runs[name] = rows
    return runs


def prune_job_runs(engine: Engine, older_than: dt.datetime, *, keep: int = 10, batch_size: int = 1000) -> int:
    """Delete runs that started before ``older_than``, except each configuration's newest ``keep``.

    In batches of short transactions; a row still ``running`` is left alone. How many went.
    """
    deleted = 0
    with engine.connect() as conn:
        names = list(conn.execute(select(job_runs.c.configuration).distinct()).scalars())
    for name in names:
        with engine.connect() as conn:
            kept_from = conn.execute(
                select(job_runs.c.id)
                .where(job_runs.c.configuration == name)
                .order_by(job_runs.c.id.desc())
                .offset(max(0, keep - 1))
                .limit(1)
            ).scalar()
        if kept_from is None:
            continue  # no more than ``keep`` runs
        while True:
            with engine.begin() as conn:
                ids = list(
                    conn.execute(
                        select(job_runs.c.id)
                        .where(
                            job_runs.c.configuration == name,
                            job_runs.c.id < kept_from,
                            job_runs.c.started_at < older_than,
                            job_runs.c.state != "running",
                        )
                        .order_by(job_runs.c.id)
                        .limit(batch_size)
                    ).scalars()
                )
                if ids:
                    conn.execute(delete(job_runs).where(job_runs.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < batch_size:
                break
    return deleted
