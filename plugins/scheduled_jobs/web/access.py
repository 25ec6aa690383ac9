"""Who may see and do what, per DAG, as Airflow's auth manager grants it: the one door of every route.

A job is its DAG (the job's identifier is its DAG id); a real-time route's export is the DAG
``realtime_export.<route>``. Every check that concerns a job asks the auth manager about that DAG, as
``DagDetails(id=..., team_name=...)``, the way Airflow's own API does (``requires_access_dag``), so the
team and per-DAG rules are Airflow's, not ours. A route's tasks belong to the DAGs that ingest or export
that route: the incoming jobs of its incoming configuration, its outgoing jobs and its real-time export.
Whoever may read one of them may read the route's tasks; whoever may edit one may act on them.

Lists are filtered by ``get_authorized_dag_ids``. A DAG Airflow does not know yet (a job saved a moment
ago, not parsed) has no team: it is asked about with its id alone. A route no DAG ingests or exports (a
route removed, whose tasks remain) and a configuration no job executes are shown only to a caller who may
reach every DAG. What a caller may not see is answered as if it did not exist: the same 404, the same
counts as without it.

Every route of the app depends on one of ``GUARDS`` (``reader``, ``signed_in``, ``webhook_caller``);
``tests/test_web_access.py`` enumerates the routes and fails on one that does not.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from fastapi import HTTPException, Request, status

from scheduled_jobs import airflow_runs, realtime
from scheduled_jobs.catalog import Catalog, current_catalog
from scheduled_jobs.models.jobs import IncomingJob, OutgoingJob
from scheduled_jobs.web.security import SECRET_HEADER, USER_STATE, authenticated_user

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

ACCESS_STATE = "scheduled_jobs_access"
"""Where the guards leave the caller's ``Access`` on ``request.state``."""


class Access:
    """One caller's rights, asked of the auth manager once per request and kept for that request."""

    def __init__(self, user: BaseUser, catalog: Catalog | None = None) -> None:
        self.user = user
        self._catalog = catalog
        self._authorized: dict[str, frozenset[str]] = {}

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = current_catalog()
        return self._catalog

    @functools.cached_property
    def known(self) -> frozenset[str]:
        """Every DAG id Airflow's database holds."""
        return airflow_runs.known_dag_ids()

    def _authorized_ids(self, method: ResourceMethod) -> frozenset[str]:
        if method not in self._authorized:
            found = get_auth_manager().get_authorized_dag_ids(user=self.user, method=method)
            self._authorized[method] = frozenset(found)
        return self._authorized[method]

    # -- DAGs ------------------------------------------------------------------------------------------

    def may_dag(self, method: ResourceMethod, dag_id: str, entity: DagAccessEntity | None = None) -> bool:
        """The auth manager's answer for one DAG, with its id and its team: Airflow's own check."""
        details = DagDetails(id=dag_id, team_name=airflow_runs.dag_team(dag_id))
        return bool(
            get_auth_manager().is_authorized_dag(method=method, access_entity=entity, details=details, user=self.user)
        )

    def dags(self, method: ResourceMethod, candidates: Iterable[str]) -> frozenset[str]:
        """Those of ``candidates`` the caller may ``method``: Airflow's list for the DAGs it knows. A DAG Airflow
        has not parsed yet (a job just added) has no team yet, and Airflow would grant it to every team: it is
        only for a caller who may ``method`` every DAG, until Airflow has parsed it and knows its team."""
        wanted = frozenset(candidates)
        allowed = set(wanted & self._authorized_ids(method))
        if wanted - self.known and self.unrestricted(method):
            allowed |= wanted - self.known
        return frozenset(allowed)

    def unrestricted(self, method: ResourceMethod) -> bool:
        """Whether the caller may ``method`` every DAG: only then does it see what belongs to no DAG."""
        if not self.known <= self._authorized_ids(method):
            return False
        return bool(get_auth_manager().is_authorized_dag(method=method, user=self.user))

    # -- jobs ------------------------------------------------------------------------------------------

    def job_ids(self, method: ResourceMethod = "GET") -> frozenset[str]:
        """The identifiers (DAG ids) of the catalog's jobs the caller may ``method``."""
        return self.dags(method, self.catalog.jobs)

    def may_job(self, method: ResourceMethod, identifier: str) -> bool:
        return identifier in self.catalog.jobs and identifier in self.dags(method, [identifier])

    def may_use_route(self, method: ResourceMethod, route: str) -> bool:
        """Whether a job of the caller's may export ``route``: only one whose tasks they may ``method`` (a job
        pointed at another team's route would make its DAG one of that route's, and its tasks the caller's)."""
        allowed = self.routes(method)
        return allowed is None or route in allowed

    def may_use_incoming(self, method: ResourceMethod, incoming: str) -> bool:
        """Whether a job of the caller's may run ``incoming``: one a job of theirs already runs, or whose route
        is theirs (else the job would open that configuration's webhook and routes to them)."""
        if self.unrestricted(method):
            return True
        if f"incoming:{incoming}" in (self.configurations(method) or frozenset()):
            return True
        routes = self.routes(method) or frozenset()
        configured = self.catalog.configurations.routes.valid if self.catalog.configurations else {}
        return any(configured[r].model.incoming_configuration == incoming for r in routes if r in configured)

    # -- routes ----------------------------------------------------------------------------------------

    @functools.cached_property
    def route_dags(self) -> dict[str, frozenset[str]]:
        """Per configured route, the DAGs that ingest or export it."""
        catalog = self.catalog
        configured = catalog.configurations.routes.valid if catalog.configurations else {}
        found: dict[str, set[str]] = {route: set() for route in configured}
        for route, loaded in configured.items():
            if loaded.model.realtime:
                found[route].add(realtime.dag_id(route))
        for job in catalog.jobs.values():
            definition = job.definition
            if isinstance(definition, OutgoingJob) and definition.route in found:
                found[definition.route].add(job.identifier)
            elif isinstance(definition, IncomingJob):
                for route, loaded in configured.items():
                    if loaded.model.incoming_configuration == definition.incoming_configuration:
                        found[route].add(job.identifier)
        return {route: frozenset(dags) for route, dags in found.items()}

    def routes(self, method: ResourceMethod = "GET") -> frozenset[str] | None:
        """The routes whose tasks the caller may ``method`` (GET: read, PUT: act on); None: every route."""
        if self.unrestricted(method):
            return None
        every = frozenset().union(*self.route_dags.values()) if self.route_dags else frozenset()
        allowed = self.dags(method, every)
        return frozenset(route for route, dags in self.route_dags.items() if dags & allowed)

    def may_route(self, method: ResourceMethod, route: str) -> bool:
        allowed = self.routes(method)
        return allowed is None or route in allowed

    # -- configurations (the duplicate rule's, the Processes page) ---------------------------------------

    def configurations(self, method: ResourceMethod = "GET") -> frozenset[str] | None:
        """The guarded configurations (``incoming:<id>``, ``route:<id>``) of jobs the caller may see; None: all."""
        if self.unrestricted(method):
            return None
        allowed = self.job_ids(method)
        return frozenset(
            c for j in self.catalog.jobs.values() if j.identifier in allowed and (c := j.guarded_configuration)
        )

    def skipped_dags(self) -> frozenset[str] | None:
        """The DAGs whose skipped runs and run history the caller may see; None: every DAG's."""
        if self.unrestricted("GET"):
            return None
        return self.job_ids("GET")

    # -- the webhook -----------------------------------------------------------------------------------

    def may_push(self, incoming: str) -> bool:
        """Whether the caller may trigger a run of a DAG that ingests ``incoming`` or exports one of its routes."""
        catalog = self.catalog
        dags = {
            j.identifier
            for j in catalog.jobs.values()
            if isinstance(j.definition, IncomingJob) and j.definition.incoming_configuration == incoming
        }
        if catalog.configurations is not None:
            for route in catalog.configurations.routes_of_incoming(incoming):
                dags |= self.route_dags.get(route.identifier, frozenset())
        if not dags:
            return self.unrestricted("PUT") and bool(
                get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, user=self.user)
            )
        known = dags & self.known if not self.unrestricted("PUT") else dags  # as in dags(): a team is needed
        return any(self.may_dag("POST", dag_id, DagAccessEntity.RUN) for dag_id in sorted(known))


def of(request: Request) -> Access:
    """The caller's ``Access``, left by the route's guard."""
    found: Access = getattr(request.state, ACCESS_STATE)
    return found


def _enter(request: Request, user: BaseUser) -> Access:
    access = Access(user)
    setattr(request.state, ACCESS_STATE, access)
    setattr(request.state, USER_STATE, user)
    return access


# -- the guards: every route depends on one ------------------------------------------------------------


async def reader(request: Request) -> Access:
    """Pages and the JSON API: a signed-in user who may read DAGs at all (Viewer and up); what each
    shows is then filtered to the DAGs that user may read."""
    user = await authenticated_user(request)
    if not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: reading scheduled jobs needs read access to DAGs")
    return _enter(request, user)


async def signed_in(request: Request) -> Access:
    """The forms and the JSON API's actions: a signed-in user; the handler checks its CSRF token, then the
    right on each job or task it acts on, before it changes anything."""
    return _enter(request, await authenticated_user(request))


async def webhook_caller(request: Request) -> Access | None:
    """A webhook push: None when it offers the webhook's secret (checked by the handler against the
    configuration's connection), else the signed-in user, whose rights the handler checks per configuration."""
    if request.headers.get(SECRET_HEADER):
        setattr(request.state, ACCESS_STATE, None)
        return None
    return _enter(request, await authenticated_user(request))


GUARDS = (reader, signed_in, webhook_caller)
