"""Real-time routes as Airflow work: one DAG per real-time route, scheduled on an Asset of that route.

A webhook stores its tasks and records an event on the route's asset; Airflow's scheduler then runs the
route's export DAG. Events that arrive while a run is queued or running coalesce into the next run
(``max_active_runs=1``), and each run exports every task that is "new" when it starts.

Kept free of heavy imports: the API server uses the names, the DAG file builds the DAGs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset

# Airflow leaves URIs of schemes starting with "x-" to their users: no provider normalizes or checks them.
ASSET_SCHEME = "x-scheduled-jobs"
# Job identifiers are lowercase letters, digits and '-': a '_' or '.' in the DAG id can never collide with one.
DAG_ID_PREFIX = "realtime_export."
EXPORT_TASK_ID = "export_route"
TAG = "realtime-export"


def asset_uri(route: str) -> str:
    """The route's asset, e.g. ``x-scheduled-jobs://routes/orders-to-erp`` (route identifiers are URI-safe)."""
    return f"{ASSET_SCHEME}://routes/{route}"


def route_asset(route: str) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=asset_uri(route), uri=asset_uri(route))


def dag_id(route: str) -> str:
    return f"{DAG_ID_PREFIX}{route}"


def route_of_dag_id(identifier: str) -> str | None:
    """The route whose real-time export DAG has this id, or None for any other DAG."""
    return identifier.removeprefix(DAG_ID_PREFIX) if identifier.startswith(DAG_ID_PREFIX) else None
