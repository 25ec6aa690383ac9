"""Hand a webhook's real-time routes to Airflow: one event on each route's Asset, nothing exported here.

Airflow's scheduler then runs the route's export DAG (``scheduled_jobs.realtime``), with its log,
retries and priority, on a worker that holds the destination's connection; the API server never
pushes to a destination.

The event is recorded in process, through Airflow's ``AssetManager.register_asset_change`` with a
session on Airflow's metadata database. That is exactly what Airflow's own
``POST /api/v2/assets/events`` does inside this same API server (``source_is_api=True``). Calling that
endpoint over HTTP instead would need credentials of our own for the plugin, and a round trip back into
the worker threads of the server that is answering the webhook: the threads this design keeps free.
The webhook has already authorized its caller (a token that may trigger DAG runs, or the secret).
"""

from __future__ import annotations

import logging
from typing import Any

from scheduled_jobs import realtime

log = logging.getLogger(__name__)


def hand_over(routes: list[str], incoming_configuration: str, tasks_created: int) -> list[dict[str, Any]]:
    """Record one event on each route's asset; what happened, per route, for the webhook's answer.

    The tasks are already committed to the store: if Airflow cannot take the event (its database is
    unreachable, or it has not parsed the route's DAG yet), they stay "new" for the route's next export,
    and the answer says so.
    """
    return [_hand_over_one(route, incoming_configuration, tasks_created) for route in routes]


def _hand_over_one(route: str, incoming_configuration: str, tasks_created: int) -> dict[str, Any]:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = realtime.asset_uri(route)
    handed: dict[str, Any] = {"route": route, "dag_id": realtime.dag_id(route), "asset": uri, "asset_event_id": None}
    try:
        with create_session() as session:
            asset = session.scalar(select(AssetModel).where(AssetModel.name == uri, AssetModel.uri == uri))
            if asset is None:
                handed["problem"] = (
                    f"Airflow does not know the asset {uri} yet (the DAG files have not been parsed since the "
                    "route became real-time); the tasks stay new for the route's next export"
                )
                log.warning("Webhook of %r: %s", incoming_configuration, handed["problem"])
                return handed
            not_queued = _why_no_run_is_queued(session, handed["dag_id"])
            if not_queued is not None:  # Airflow would record the event and queue nothing: say so
                handed["problem"] = not_queued
                log.warning("Webhook of %r: %s", incoming_configuration, not_queued)
                return handed
            event = asset_manager.register_asset_change(
                asset=asset,
                extra={"webhook": incoming_configuration, "tasks_created": tasks_created},
                source_is_api=True,
                session=session,
            )
            handed["asset_event_id"] = event.id if event is not None else None
    except Exception as exc:  # the tasks are stored; only the early export is lost
        log.exception("Webhook of %r: could not record an event on %s", incoming_configuration, uri)
        handed["asset_event_id"] = None  # the commit may be what failed
        handed["problem"] = (
            f"could not record an event on {uri} ({type(exc).__name__}); the tasks stay new for the route's next export"
        )
    return handed


def _why_no_run_is_queued(session: Any, dag_id: str) -> str | None:
    """Why Airflow would queue no run of the route's DAG on an event (it skips paused and missing DAGs)."""
    from airflow.models.dag import DagModel

    dag = session.get(DagModel, dag_id)
    if dag is None or dag.is_stale:
        return (
            f"Airflow has no active DAG {dag_id} (not parsed yet, or removed), so no export run was queued; "
            "the tasks stay new for the route's next export"
        )
    if dag.is_paused:
        return (
            f"the DAG {dag_id} is paused in Airflow, so no export run was queued; the tasks stay new "
            "until it is unpaused and a later webhook or the route's next export sends them"
        )
    return None
