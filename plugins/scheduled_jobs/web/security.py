"""Who may use the web app: Airflow's own authentication and auth manager, on every route.

A plugin's FastAPI app is served without authentication unless it asks for it, so every route
depends on one of these. Pages and reads need the right to read DAGs; a webhook needs the right to
trigger DAG runs, or the secret of its own webhook connection.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
from fastapi import HTTPException, Request, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

    from scheduled_jobs.models.configurations import IncomingConfiguration

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105 (a header name, not a secret)
log = logging.getLogger(__name__)


async def authenticated_user(request: Request) -> BaseUser:
    """The Airflow user behind the request's bearer token or the UI's session cookie (401/403 otherwise)."""
    credentials = await bearer_scheme(request)
    return await get_user(request, None, credentials)


async def require_dag_read(request: Request) -> BaseUser:
    """Pages and the JSON API: the user may read DAGs (Airflow's Viewer role and up)."""
    user = await authenticated_user(request)
    if not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: reading scheduled jobs needs read access to DAGs")
    return user


def require_dag_run_trigger(user: BaseUser) -> None:
    if not get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Forbidden: pushing to a webhook needs the right to trigger DAG runs (Airflow's User role and up)",
        )


def _connection_secret(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id).password or None
    except AirflowNotFoundException:
        return None


def webhook_secret_matches(incoming: IncomingConfiguration, offered: str) -> bool:
    """Whether ``offered`` is the password of the configuration's webhook connection (constant time)."""
    if incoming.webhook is None:
        return False
    expected = _connection_secret(incoming.webhook.connection)
    if expected is None:
        log.error(
            "Webhook of %r: connection %r does not exist or has no password; the secret cannot be checked",
            incoming.name,
            incoming.webhook.connection,
        )
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))
