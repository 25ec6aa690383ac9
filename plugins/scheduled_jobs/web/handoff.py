"""Hand a webhook's real-time routes to Airflow: one event on each route's Asset, nothing exported here.

Airflow's scheduler then runs the route's export DAG (``scheduled_jobs.realtime``), with its log,
retries and priority, on a worker that holds the destination's connection; the API server never
pushes to a destination.

The event is recorded in process (``airflow_runs.record_asset_event``: why not over Airflow's REST API
is said there). The webhook has already authorized its caller (a token that may trigger DAG runs, or
the secret).
"""

from __future__ import annotations

import logging

from scheduled_jobs import realtime
from scheduled_jobs.airflow_runs import record_asset_event
from scheduled_jobs.web.responses import RealtimeExport

log = logging.getLogger(__name__)


def hand_over(routes: list[str], incoming_configuration: str, tasks_created: int) -> list[RealtimeExport]:
    """Record one event on each route's asset; what happened, per route, for the webhook's answer.

    The tasks are already committed to the store: if Airflow cannot take the event (its database is
    unreachable, or it has not parsed the route's DAG yet), they stay "new" for the route's next export,
    and the answer says so.
    """
    return [_hand_over_one(route, incoming_configuration, tasks_created) for route in routes]


def _hand_over_one(route: str, incoming_configuration: str, tasks_created: int) -> RealtimeExport:
    uri = realtime.asset_uri(route)
    handed = RealtimeExport(route=route, dag_id=realtime.dag_id(route), asset=uri)
    extra = {"webhook": incoming_configuration, "tasks_created": tasks_created}
    try:
        event = record_asset_event(uri, handed.dag_id, extra)
    except Exception as exc:  # the tasks are stored; only the early export is lost
        log.exception("Webhook of %r: could not record an event on %s", incoming_configuration, uri)
        handed.problem = (
            f"could not record an event on {uri} ({type(exc).__name__}); the tasks stay new for the route's next export"
        )
        return handed
    if event.outcome == "recorded":
        handed.asset_event_id = event.event_id
        return handed
    handed.problem = _PROBLEMS[event.outcome].format(uri=uri, dag_id=handed.dag_id)
    log.warning("Webhook of %r: %s", incoming_configuration, handed.problem)
    return handed


# Why no run was queued. Airflow would record an event on a paused or missing DAG and queue nothing:
# no event is recorded then, and the answer says so.
_PROBLEMS = {
    "unknown_asset": (
        "Airflow does not know the asset {uri} yet (the DAG files have not been parsed since the "
        "route became real-time); the tasks stay new for the route's next export"
    ),
    "dag_missing": (
        "Airflow has no active DAG {dag_id} (not parsed yet, or removed), so no export run was queued; "
        "the tasks stay new for the route's next export"
    ),
    "dag_paused": (
        "the DAG {dag_id} is paused in Airflow, so no export run was queued; the tasks stay new "
        "until it is unpaused and a later webhook or the route's next export sends them"
    ),
}
