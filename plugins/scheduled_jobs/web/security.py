"""Who may use the web app: Airflow's own authentication and auth manager, on every route.

A plugin's FastAPI app is served without authentication unless it asks for it, so every route
depends on one of these. Pages and reads need the right to read DAGs; a webhook needs the right to
trigger DAG runs, or the secret of its own webhook connection; an action on tasks (retry, skip,
delete) needs the right to edit DAGs.

A POST authenticated by the UI's session cookie also needs a CSRF token (``csrf_token``): the cookie is
sent with any form another site makes the browser submit, a token is not. The token is bound to the login
session (its JWT), so a token read before a logout, or in another browser, signs nothing. A bearer token is never sent
by a browser on its own, so a request carrying one needs none.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
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


USER_STATE = "scheduled_jobs_user"
"""Where the route's guard (``access``) leaves the user on ``request.state``: the pages' forms need its CSRF token."""


def may_edit(user: BaseUser) -> bool:
    """Whether the user may edit DAGs (Airflow's User role and up): the right every task action needs."""
    return bool(get_auth_manager().is_authorized_dag(method="PUT", user=user))


def require_dag_edit(user: BaseUser, action: str = "retrying, skipping or deleting tasks") -> None:
    """Refuse (403) a user without the right to edit DAGs; ``action`` says what was refused, in the page's words."""
    if not may_edit(user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: {action} needs the right to edit DAGs (Airflow's User role and up)",
        )


# -- CSRF ---------------------------------------------------------------------------------------------

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_MAX_AGE_SECONDS = 12 * 3600
"""How long a page's token stays good: a form left open over a working day still submits."""
_CSRF_PURPOSE = b"scheduled-jobs csrf v1"


def _csrf_key() -> bytes:
    """A key only the API server knows: derived from Airflow's ``[api] secret_key`` (or the JWT secret).

    Every API server of one Airflow shares that setting, so a token made by one is accepted by the others.
    """
    from airflow.configuration import conf

    secret = conf.get("api", "secret_key", fallback="") or conf.get("api_auth", "jwt_secret", fallback="")
    if not secret:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Forbidden: no CSRF token can be checked: set Airflow's [api] secret_key",
        )
    return hmac.new(secret.encode("utf-8"), _CSRF_PURPOSE, hashlib.sha256).digest()


def session_credential(request: Request) -> str:
    """The JWT the request is signed in with: its bearer token, else the UI's ``_token`` cookie ("" without one).

    The same choice as Airflow's ``get_user``: an explicit bearer token wins over the cookie.
    """
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")


def _session_id(request: Request) -> str:
    """The login session, as the SHA-256 of its JWT.

    Airflow's tokens (3.1 to 3.3) each carry a fresh ``jti``, so one JWT is one session: a logout and a new
    login, a second browser, or a token the auth manager refreshes is another. The hash of the whole token
    names the same session as its ``jti`` without decoding it a second time, and holds for an auth manager
    whose tokens have no ``jti``; the token itself is never part of the CSRF token.
    """
    return hashlib.sha256(session_credential(request).encode("utf-8", "replace")).hexdigest()


def _csrf_mac(request: Request, user: BaseUser, issued: int) -> str:
    message = f"{user.get_id()}\x00{user.get_name()}\x00{_session_id(request)}\x00{issued}".encode()
    return hmac.new(_csrf_key(), message, hashlib.sha256).hexdigest()


def csrf_token(request: Request, user: BaseUser, now: float | None = None) -> str:
    """A token for the forms of this user in this login session: ``<issued>.<HMAC of the user, the session's
    JWT and the time>``, good for 12 hours and only while the session's JWT is the one sent."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_csrf_mac(request, user, issued)}"


def csrf_token_valid(request: Request, user: BaseUser, token: str | None, now: float | None = None) -> bool:
    if not token or len(token) > 200:
        return False
    issued_text, _, mac = token.partition(".")
    if not (issued_text.isascii() and issued_text.isdigit()) or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not -300 <= age <= CSRF_MAX_AGE_SECONDS:
        return False
    return hmac.compare_digest(_csrf_mac(request, user, issued).encode(), mac.encode("utf-8", "replace"))


def cookie_authenticated(request: Request) -> bool:
    """Whether Airflow's ``get_user`` takes the user from the session cookie: no bearer token was sent."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return not (scheme.lower() == "bearer" and credentials.strip())


def require_csrf(request: Request, user: BaseUser, offered: str | None) -> None:
    """Refuse (403) a cookie-authenticated request without a valid token of this user's session; a bearer
    request passes."""
    if not cookie_authenticated(request):
        return
    if not csrf_token_valid(request, user, offered):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: a request signed in by the session cookie needs a valid CSRF token of this login session "
            f"(the form's {CSRF_FIELD}, or the {CSRF_HEADER} header from GET api/csrf-token); reload the page",
        )


def require_dag_run_trigger(user: BaseUser) -> None:
    if not get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Forbidden: pushing to a webhook needs the right to trigger DAG runs (Airflow's User role and up)",
        )


def _connection_secret(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    from scheduled_jobs.compat import AirflowNotFoundException

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
