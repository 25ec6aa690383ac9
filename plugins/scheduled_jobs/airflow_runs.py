"""Everything the package reads from, or writes to, Airflow's own database: runs, their states, asset events.

The only module that reaches Airflow's internals, and only where Airflow 3 has no public way to do the
same from where the code runs:

- In a task or in the triggerer, a run's state comes from the task SDK, which asks the API server:
  ``get_dagrun_state`` of the public ``RuntimeTaskInstanceProtocol`` (``airflow.sdk.types``). It is a
  static method, and the triggerer has no task instance, so it is called on the class that implements
  it (``airflow.sdk.execution_time.task_runner``).
- In the API server (the web app), Airflow's public interface is its REST API (and the Python client on
  top of it), over HTTP with credentials of its own. Calling it would need credentials the plugin does
  not have, and a round trip back into the worker threads of the very server that is answering the
  request: the threads this design keeps free. So the web app reads ``DagRun`` and ``DagModel`` and
  records asset events with a session on the metadata database, exactly as Airflow's own routes in
  that same process do (``POST /api/v2/assets/events`` calls ``register_asset_change``).

An Airflow upgrade that moves these internals breaks this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class LastRun:
    """A DAG's latest run: its id, its state and when it started (or was due)."""

    run_id: str
    state: str
    at: dt.datetime | None


def latest_runs(dag_ids: list[str]) -> dict[str, LastRun]:
    """The latest run of each DAG that has one (one query for all of them)."""
    if not dag_ids:
        return {}
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    latest = select(func.max(DagRun.id)).where(DagRun.dag_id.in_(dag_ids)).group_by(DagRun.dag_id)
    query = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.run_after).where(
        DagRun.id.in_(latest)
    )
    with create_session() as session:
        return {
            row.dag_id: LastRun(row.run_id, str(row.state), row.start_date or row.run_after)
            for row in session.execute(query)
        }


def run_is_alive(dag_id: str, run_id: str) -> bool | None:
    """Whether Airflow says a DAG run is queued or running; None when it cannot answer.

    Works wherever Airflow's task SDK talks to its supervisor: in a task, and in the triggerer.
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = str(RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id))
    except Exception:  # an unknown run (deleted), no supervisor, no answer: let the lease decide
        return None
    return state.rsplit(".", 1)[-1].lower() in ("queued", "running")


EXECUTING = ("queued", "running", "restarting")
"""Task states in which a run's work may be executing: its hold stays, whatever its DAG's toggle says
(pausing a DAG stops no task that already runs)."""


def run_executing(dag_id: str, run_id: str) -> bool | None:
    """Whether a task of this DAG run is queued or running; None when Airflow cannot answer.

    Works where ``run_is_alive`` does (``get_task_states`` of the task SDK, in Airflow 3.1 too).
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
    except Exception:  # no supervisor, no answer
        return None
    return any(str(state).rsplit(".", 1)[-1].lower() in EXECUTING for state in states.values())


def dag_inactive(dag_id: str) -> str | None:
    """Why Airflow will run no task of this DAG (``is paused in Airflow``, ``is disabled ...``); None when it
    will, or cannot tell. In a task only (a worker): the triggerer cannot ask for a DAG (``compat.dag_of``),
    and on Airflow 3.1 it is always None."""
    from scheduled_jobs.compat import dag_of

    found = dag_of(dag_id)
    if found is None:
        return None
    paused, tags = found
    if paused:
        return "is paused in Airflow"
    if "disabled" in tags:
        return "is disabled (disabled: true in its definition)"
    return None


AssetEventOutcome = Literal["recorded", "unknown_asset", "dag_missing", "dag_paused"]
"""``recorded``, or why no event was recorded: Airflow does not know the asset, or would queue no run
of the DAG (it skips a paused DAG, and one it has not parsed or has removed)."""


@dataclass(frozen=True)
class AssetEvent:
    outcome: AssetEventOutcome
    event_id: int | None = None


def record_asset_event(uri: str, dag_id: str, extra: dict[str, Any]) -> AssetEvent:
    """Record an event on the asset ``uri`` so that Airflow queues a run of ``dag_id``, the DAG it schedules.

    Through ``AssetManager.register_asset_change`` with a session on the metadata database: what
    Airflow's own ``POST /api/v2/assets/events`` does in the API server (``source_is_api=True``). No
    event is recorded when Airflow would queue no run. Errors of Airflow's database propagate.
    """
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == uri, AssetModel.uri == uri))
        if asset is None:
            return AssetEvent("unknown_asset")
        blocked = _why_no_run(session, dag_id)
        if blocked is not None:
            return AssetEvent(blocked)
        event = asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
        return AssetEvent("recorded", event.id if event is not None else None)


def _why_no_run(session: Session, dag_id: str) -> Literal["dag_missing", "dag_paused"] | None:
    from airflow.models.dag import DagModel

    dag = session.get(DagModel, dag_id)
    if dag is None or dag.is_stale:
        return "dag_missing"
    return "dag_paused" if dag.is_paused else None


def run_states(runs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Airflow's state of each (dag_id, run_id) it knows (one query); a run Airflow does not know is left out.

    The Processes page asks this of the job runs our history still shows as "running": when Airflow says
    the run is over (a worker killed mid-run never wrote its end), the page shows Airflow's state.
    """
    wanted = sorted(set(runs))
    if not wanted:
        return {}
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select, tuple_

    found: dict[tuple[str, str], str] = {}
    with create_session() as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
                tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk)
            )
            for dag_id, run_id, state in session.execute(query):
                found[(dag_id, run_id)] = str(state).rsplit(".", 1)[-1].lower()
    return found


def runs_with_work(runs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (dag_id, run_id), the runs one of whose tasks is queued or running (``EXECUTING``), in one query
    per 500; in the API server, like ``run_states``."""
    wanted = sorted(set(runs))
    if not wanted:
        return set()
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select, tuple_

    found: set[tuple[str, str]] = set()
    with create_session() as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                select(TaskInstance.dag_id, TaskInstance.run_id)
                .where(tuple_(TaskInstance.dag_id, TaskInstance.run_id).in_(chunk))
                .where(TaskInstance.state.in_(EXECUTING))
                .distinct()
            )
            found |= {(dag_id, run_id) for dag_id, run_id in session.execute(query)}
    return found


def paused_dags(dag_ids: list[str]) -> set[str]:
    """Of these DAG ids, those Airflow has paused (one query); in the API server."""
    if not dag_ids:
        return set()
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagModel.dag_id).where(DagModel.dag_id.in_(sorted(set(dag_ids)))).where(DagModel.is_paused)
        return set(session.scalars(query))


AUDIT_EVENT_PREFIX = "scheduled_jobs."
"""Our rows in Airflow's audit log (the ``log`` table its UI shows as *Audit Log*) have events named so."""


def record_audit_log(event: str, user: str, display_name: str | None, extra: dict[str, Any]) -> int:
    """Write one row to Airflow's audit log: who (``owner``), when (``dttm``), what and how many (``extra``).

    Airflow 3 records its own API's actions with ``action_logging`` (``airflow.api_fastapi.logging.decorators``),
    a dependency that logs the *request* before the route has run. An action of ours is worth recording
    with its outcome (how many tasks changed), so the row is written after it, the way that dependency
    writes it: a ``Log`` added through a session on the metadata database, in the API server's process.
    Returns the row's id.
    """
    import json

    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        row = Log(
            event=f"{AUDIT_EVENT_PREFIX}{event}"[:60],
            owner=user,
            owner_display_name=display_name or user,
            extra=json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str),
        )
        session.add(row)
        session.flush()
        return int(row.id)


def set_dag_paused(dag_id: str, paused: bool) -> bool:
    """Pause or unpause a DAG, as the toggle of Airflow's UI does; False when Airflow has no such DAG (yet).

    Airflow's ``PATCH /api/v2/dags/{dag_id}`` sets ``DagModel.is_paused`` in the API server's process; a
    disable or enable from our pages does the same, with a session on the metadata database.
    """
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = session.get(DagModel, dag_id)
        if dag is None:
            return False
        dag.is_paused = paused
        return True


def request_parse(dag_ids: list[str]) -> int:
    """Ask the dag-processor to parse, first thing, the files that define these DAGs; how many were asked for.

    What the *Reparse DAG* button of Airflow's UI does (``PUT /api/v2/parseDagFile/{file_token}`` adds a
    ``DagPriorityParsingRequest``): a new or changed definition then shows within seconds instead of at the
    file's next periodic parse. A request already waiting for a file is left as it is.
    """
    if not dag_ids:
        return 0
    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        files = session.execute(
            select(DagModel.bundle_name, DagModel.relative_fileloc)
            .where(DagModel.dag_id.in_(dag_ids[:1000]), DagModel.relative_fileloc.is_not(None))
            .distinct()
        ).all()
        waiting = {
            (row.bundle_name, row.relative_fileloc)
            for row in session.execute(
                select(DagPriorityParsingRequest.bundle_name, DagPriorityParsingRequest.relative_fileloc)
            )
        }
        asked = 0
        for bundle_name, relative_fileloc in files:
            if relative_fileloc is not None and (bundle_name, relative_fileloc) not in waiting:
                session.add(DagPriorityParsingRequest(bundle_name=bundle_name, relative_fileloc=relative_fileloc))
                asked += 1
        return asked


def known_dag_ids() -> frozenset[str]:
    """Every DAG id Airflow's database holds (the web app's per-DAG authorization, ``web.access``)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return frozenset(session.scalars(select(DagModel.dag_id)))


def dag_team(dag_id: str) -> str | None:
    """The team that owns a DAG (through its bundle), as Airflow's own API asks it; None: no team."""
    from airflow.models.dag import DagModel

    team: str | None = DagModel.get_team_name(dag_id)
    return team
