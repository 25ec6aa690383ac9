"""Per-DAG authorization, as Airflow grants it: a team-B user neither lists nor acts on team A's jobs and tasks.

Airflow's Simple auth manager in multi-team mode (``[core] multi_team``, users ``name:role:team``; Airflow 3.1's
Simple auth manager has no teams, so these tests need 3.2+), a real API server, the example project: team A's
bundle holds the orders DAGs (shop-orders-incoming, orders-to-erp-export, realtime_export.orders-to-erp), team
B's the product catalog's (product-catalog-incoming), and prune/repair sit in a bundle of no team.

And every route of the plugin's app goes through ``web.access`` (one of its guards).
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from helpers.live_api import PREFIX, Server, store_of, token_for
from packaging.version import Version

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw", "bobview": "bobview-pw"}
USERS = "admin:admin,alice:user:team_a,bob:op:team_b,bobview:viewer:team_b"
TEAM_A = ("shop-orders-incoming", "orders-to-erp-export", "realtime_export.orders-to-erp")
TEAM_B = ("product-catalog-incoming",)
NO_TEAM = ("prune-tasks", "repair-stuck-tasks")

pytestmark = pytest.mark.skipif(
    Version(version("apache-airflow-core")) < Version("3.2"),
    reason="Airflow 3.1's Simple auth manager has no teams ([core] multi_team is 3.2+)",
)


_BEFORE: dict[str, str | None] = {}
"""Each seeded DAG's bundle before this module (None: the module made the row), to give it back."""


def _seed_teams() -> None:
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        teams = {name: session.get(Team, name) or Team(name=name) for name in ("team_a", "team_b")}
        for bundle, team, dag_ids in (
            ("bundle_a", "team_a", TEAM_A),
            ("bundle_b", "team_b", TEAM_B),
            ("bundle_shared", None, NO_TEAM),
        ):
            found = session.get(DagBundleModel, bundle) or DagBundleModel(name=bundle)
            if team is not None:
                found.teams = [teams[team]]
            session.add(found)
            session.flush()
            for dag_id in dag_ids:
                dag = session.get(DagModel, dag_id)
                _BEFORE.setdefault(dag_id, None if dag is None else dag.bundle_name)
                dag = dag or DagModel(dag_id=dag_id)
                dag.bundle_name = bundle
                dag.fileloc = "/dags/scheduled_jobs.py"
                dag.is_paused = False
                session.add(dag)


def _clear_team_cache() -> None:
    """Airflow 3.3 keeps each DAG's team for a while (``DagModel.get_team_name``): a module before this one saw
    these DAGs without a team, and that answer would outlive its seeding, and this module's after it."""
    import airflow.models.dag as dag_module

    clear = getattr(dag_module, "clear_team_name_cache", None)
    if clear is not None:
        clear()


def _drop_teams() -> None:
    """The metadata database is the session's: the other modules' DAGs have no team. A DAG row another module
    made (its runs refer to it) gets its bundle back; one this module made goes."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    with create_session() as session:
        for dag_id, bundle in _BEFORE.items():
            dag = session.get(DagModel, dag_id)
            if dag is None:
                continue
            if bundle is None:
                try:
                    with session.begin_nested():
                        session.delete(dag)
                except IntegrityError:  # runs of it were made meanwhile: it stays, in Airflow's own bundle
                    dag = session.get(DagModel, dag_id)
                    dag.bundle_name = "dags-folder"
            else:
                dag.bundle_name = bundle
        session.flush()
        for name in ("bundle_a", "bundle_b", "bundle_shared"):
            found = session.get(DagBundleModel, name)
            if found is not None:
                found.teams = []
                session.delete(found)
        session.execute(delete(Team).where(Team.name.in_(["team_a", "team_b"])))
    _BEFORE.clear()
    _clear_team_cache()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    from conftest import _HOME

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
        passwords = _HOME / "web-access-passwords.json"
        passwords.write_text(json.dumps(PASSWORDS))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        from airflow.api_fastapi.app import create_app, purge_cached_app

        _seed_teams()
        _clear_team_cache()
        try:
            with Server(create_app()) as running:
                yield running
        finally:
            purge_cached_app()
            _drop_teams()


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    return {name: token_for(server, name, password) for name, password in PASSWORDS.items()}


def _as(server: Server, tokens: dict[str, str], name: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + PREFIX, headers={"Authorization": f"Bearer {tokens[name]}"}, timeout=30)


@pytest.fixture
def tasks(project: Path) -> dict[str, list[int]]:
    """Two tasks on each route: orders-to-erp (team A's DAGs), products-to-webshop (team B's)."""
    store = store_of(project)
    ids: dict[str, list[int]] = {}
    for route in ("orders-to-erp", "products-to-webshop"):
        added = store.add_entities([route], [(f"{route}-{n}", {"n": n}) for n in (1, 2)], return_ids=True)
        ids[route] = list(added.task_ids)
    return ids


def test_airflow_itself_refuses_bob_team_as_dags(server: Server, tokens: dict[str, str]) -> None:
    # The setting is real: Airflow's own API refuses bob team A's DAG; team B's it lets him look up (200, or 404
    # when no module before this one serialized that DAG: the refusal is not what answers).
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    assert httpx.get(f"{server.url}/api/v2/dags/orders-to-erp-export/details", headers=bob).status_code == 403
    own = httpx.get(f"{server.url}/api/v2/dags/product-catalog-incoming/details", headers=bob)
    assert own.status_code in (200, 404), own.text


def test_bob_lists_only_his_teams_jobs_and_counts(
    server: Server, tokens: dict[str, str], project: Path, tasks: dict[str, list[int]]
) -> None:
    with _as(server, tokens, "bob") as bob, _as(server, tokens, "alice") as alice:
        listed = bob.get("/api/jobs").json()
        assert {j["identifier"] for j in listed["jobs"]} == {*TEAM_B, *NO_TEAM}
        assert listed["total"] == listed["matching"] == 3
        assert {j["identifier"] for j in alice.get("/api/jobs").json()["jobs"]} >= {TEAM_A[0], TEAM_A[1]}
        page = bob.get("/jobs").text
        for hidden in ("orders-to-erp-export", "Orders to ERP export", "shop-orders-incoming"):
            assert hidden not in page
        routes = {r["route"] for r in bob.get("/api/routes").json()["routes"]}
        assert routes == {"products-to-webshop"}
        assert "orders-to-erp" not in bob.get("/tasks").text
        assert bob.get("/api/routes/orders-to-erp/errors").json()["total"] == 0
        processes = {p["configuration"] for p in bob.get("/api/processes").json()["processes"]}
        assert "incoming:shop-orders" not in processes and "route:orders-to-erp" not in processes
        assert "incoming:shop-orders" not in bob.get("/processes").text


def test_bob_finds_no_team_a_task_in_any_list_or_search(
    server: Server, tokens: dict[str, str], project: Path, tasks: dict[str, list[int]]
) -> None:
    with _as(server, tokens, "bob") as bob:
        listed = bob.get("/api/tasks").json()
        assert {t["route"] for t in listed["rows"]} == {"products-to-webshop"}
        assert bob.get("/api/tasks", params={"route": "orders-to-erp"}).json()["rows"] == []
        assert bob.get("/api/tasks/count", params={"route": "orders-to-erp"}).json()["count"] == 0
        assert "orders-to-erp-1" not in bob.get("/tasks/list").text
        hidden, missing = tasks["orders-to-erp"][0], 999_999
        for path in ("/api/tasks/{}", "/tasks/{}"):
            refused, absent = bob.get(path.format(hidden)), bob.get(path.format(missing))
            assert refused.status_code == absent.status_code == 404
            assert refused.text.replace(str(hidden), "N") == absent.text.replace(str(missing), "N")
        entity = bob.get("/api/entity", params={"route": "orders-to-erp", "entity_key": "orders-to-erp-1"})
        assert entity.status_code == 404
        assert bob.get(f"/api/tasks/{tasks['products-to-webshop'][0]}").status_code == 200


def test_bob_acts_on_no_team_a_task(
    server: Server, tokens: dict[str, str], project: Path, tasks: dict[str, list[int]]
) -> None:
    with _as(server, tokens, "bob") as bob:
        by_id = bob.post("/api/tasks/delete", json={"ids": tasks["orders-to-erp"]})
        assert by_id.status_code == 200, by_id.text
        assert (by_id.json()["matched"], by_id.json()["changed"]) == (0, 0)
        matching = bob.post("/api/tasks/delete", json={"filter": {"route": "orders-to-erp"}, "confirm_count": 2})
        assert matching.status_code == 409, matching.text  # the filter matches none of his: 0, not 2
        everything = bob.post("/api/tasks/skip", json={"filter": {}, "confirm_count": 2, "reason": "x"})
        assert everything.status_code == 200, everything.text
        assert everything.json()["changed"] == 2  # his own two, never team A's
        form = bob.post("/tasks/actions", data={"do": "delete-selected", "id": tasks["orders-to-erp"]})
        assert form.status_code == 200, form.text
    with _as(server, tokens, "admin") as admin:
        for task_id in tasks["orders-to-erp"]:
            answer = admin.get(f"/api/tasks/{task_id}")
            assert answer.status_code == 200 and answer.json()["status"] == "new", answer.text


def test_bob_cannot_disable_or_edit_team_as_job(server: Server, tokens: dict[str, str], project: Path) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    path = project / "job_definitions" / "orders-to-erp-export.yaml"
    before = path.read_bytes()
    with _as(server, tokens, "bob") as bob:
        for target in ("orders-to-erp-export", "no-such-job"):
            assert bob.get(f"/jobs/{target}/edit").status_code == 404
        refused = bob.post("/jobs/orders-to-erp-export/disable", data={})
        absent = bob.post("/jobs/no-such-job/disable", data={})
        assert refused.status_code == absent.status_code == 404
        assert refused.text.replace("orders-to-erp-export", "N") == absent.text.replace("no-such-job", "N")
        own = bob.get("/jobs/product-catalog-incoming/edit")
        assert own.status_code == 200
    assert path.read_bytes() == before
    with create_session() as session:
        assert session.get(DagModel, "orders-to-erp-export").is_paused is False


def test_bob_cannot_push_to_team_as_webhook(server: Server, tokens: dict[str, str], project: Path) -> None:
    with _as(server, tokens, "bob") as bob:
        refused = bob.post("/webhooks/shop-orders", json={"id": 1})
        absent = bob.post("/webhooks/no-such-configuration", json={"id": 1})
        assert refused.status_code == absent.status_code == 404, refused.text
        assert "shop-orders" not in absent.text
        assert refused.text.replace("shop-orders", "N") == absent.text.replace("no-such-configuration", "N")
    with _as(server, tokens, "admin") as admin:
        assert admin.get("/api/tasks/count").json()["count"] == 0


def test_a_team_viewer_still_cannot_act(server: Server, tokens: dict[str, str], tasks: dict[str, list[int]]) -> None:
    with _as(server, tokens, "bobview") as viewer:
        answer = viewer.post("/api/tasks/delete", json={"ids": tasks["products-to-webshop"]})
        assert answer.status_code == 403


def test_the_new_job_form_offers_bob_only_the_routes_and_incoming_configurations_of_his_team(
    server: Server, tokens: dict[str, str], project: Path
) -> None:
    """The form's dropdowns name no route or incoming configuration of team A: listing them would tell bob
    they exist. Team A's alice sees hers and not bob's."""
    with _as(server, tokens, "bob") as bob:
        page = bob.get("/jobs/new")
    assert page.status_code == 200
    assert 'value="product-catalog"' in page.text and 'value="products-to-webshop"' in page.text
    assert 'value="shop-orders"' not in page.text and 'value="orders-to-erp"' not in page.text
    with _as(server, tokens, "alice") as alice:
        page = alice.get("/jobs/new")
    assert 'value="shop-orders"' in page.text and 'value="orders-to-erp"' in page.text
    assert 'value="product-catalog"' not in page.text


def _retired_team_a_dag(dag_id: str) -> None:
    """A DAG of team A that Airflow still knows and no definition file holds (a job removed)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add(DagModel(dag_id=dag_id, bundle_name="bundle_a", fileloc="/dags/scheduled_jobs.py"))


def _without_token(page: str) -> str:
    """A page without its CSRF token, which holds the time it was made."""
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page)


def _new_job(identifier: str, do: str) -> dict[str, str]:
    return {
        "name": "Mine",
        "identifier": identifier,
        "job": "prune_tasks",
        "retention_days": "3",
        "expression": "@daily",
        "do": do,
    }


@pytest.mark.parametrize("do", ["save", "preview"])
def test_a_new_job_never_tells_bob_a_team_a_identifier_is_taken(
    server: Server, tokens: dict[str, str], project: Path, monkeypatch: pytest.MonkeyPatch, do: str
) -> None:
    """The identifier of a job bob may not see answers as any identifier he may not use: the same refusal,
    the same text, as the DAG id of a team-A job long gone; never "exists", never its file."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    folder = project / "job_definitions"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _retired_team_a_dag("retired-team-a-job")
    try:
        with _as(server, tokens, "bob") as bob:
            hidden = bob.post("/jobs/new", data=_new_job("shop-orders-incoming", do))
            retired = bob.post("/jobs/new", data=_new_job("retired-team-a-job", do))
            assert hidden.status_code == retired.status_code == 403, hidden.text
            for word in ("also defined", "exists", str(folder)):
                assert word not in hidden.text, word
            assert _without_token(hidden.text).replace("shop-orders-incoming", "N") == _without_token(
                retired.text
            ).replace("retired-team-a-job", "N")
            own = bob.post("/jobs/new", data=_new_job("bobs-prune", "preview"))
            assert own.status_code == 200, own.text
    finally:
        with create_session() as session:
            session.execute(delete(DagModel).where(DagModel.dag_id == "retired-team-a-job"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _pointing(kind: str, target: str, do: str) -> dict[str, str]:
    key = "route" if kind == "outgoing" else "incoming_configuration"
    return {
        "name": "Bob steal",
        "identifier": "bob-steal",
        "job": kind,
        key: target,
        "overlap": "buffer_one",
        "expression": "0 0 1 1 *",
        "timezone": "UTC",
        "priority": "0",
        "do": do,
    }


@pytest.mark.parametrize("do", ["save", "preview"])
@pytest.mark.parametrize(("kind", "target"), [("outgoing", "orders-to-erp"), ("incoming", "shop-orders")])
def test_bob_cannot_point_a_job_of_his_at_team_as_route_or_incoming_configuration(
    server: Server,
    tokens: dict[str, str],
    project: Path,
    tasks: dict[str, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    target: str,
    do: str,
) -> None:
    """A job bob creates would make him one of the DAGs of team A's route (or of its webhook): refused, with
    the answer a made-up name gets, listing only what is his; nothing written, and no right gained."""
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    folder = project / "job_definitions"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with _as(server, tokens, "bob") as bob:
        refused = bob.post("/jobs/new", data=_pointing(kind, target, do))
        made_up = bob.post("/jobs/new", data=_pointing(kind, "no-such-thing", do))
        assert refused.status_code == made_up.status_code == 422, refused.text[:500]
        assert _without_token(refused.text).replace(target, "N") == _without_token(made_up.text).replace(
            "no-such-thing", "N"
        )
        for hidden in ("orders-to-erp", "shop-orders"):
            assert f"{hidden}," not in made_up.text and f"{hidden})" not in made_up.text
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
        assert bob.get("/api/tasks", params={"route": "orders-to-erp"}).json()["rows"] == []
        assert bob.post("/webhooks/shop-orders", json={"id": "x"}).status_code == 404


def test_a_job_airflow_has_not_parsed_yet_opens_its_route_to_no_other_team(
    server: Server, tokens: dict[str, str], project: Path, tasks: dict[str, list[int]]
) -> None:
    """A team-A author adds a job; until Airflow has parsed it its team is unknown: it must not make team A's
    route, or the job itself, visible to bob."""
    (project / "job_definitions" / "alice-new.yaml").write_text(
        "name: Alice new\nidentifier: alice-new-export\njob: outgoing\nroute: orders-to-erp\nexpression: '@daily'\n"
    )
    with _as(server, tokens, "bob") as bob:
        jobs = bob.get("/api/jobs").json()
        assert "alice-new-export" not in json.dumps(jobs)
        assert bob.get("/api/tasks", params={"route": "orders-to-erp"}).json()["rows"] == []
        assert bob.get(f"/api/tasks/{tasks['orders-to-erp'][0]}").status_code == 404
        assert bob.get("/jobs/alice-new-export/edit").status_code == 404


def test_bob_may_not_save_a_prune_or_repair_job_which_acts_on_every_teams_tasks(
    server: Server, tokens: dict[str, str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    folder = project / "job_definitions"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with _as(server, tokens, "bob") as bob:
        edit = bob.get("/jobs/prune-tasks/edit")
        version = re.search(r'name="version" value="([^"]+)"', edit.text)
        assert version, edit.text[:500]
        rewritten = {
            "name": "Prune tasks",
            "job": "prune_tasks",
            "retention_days": "1",
            "batch_size": "1000",
            "expression": "* * * * *",
            "timezone": "UTC",
            "priority": "0",
            "version": version.group(1),
            "do": "save",
        }
        assert bob.post("/jobs/prune-tasks/edit", data=rewritten).status_code == 403
        assert bob.post("/jobs/new", data=_new_job("bobs-prune", "save")).status_code == 403
        assert bob.post("/jobs/prune-tasks/disable", data={}).status_code == 403
        assert bob.post("/jobs/new", data=_new_job("bobs-prune", "preview")).status_code == 200
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- every route goes through web.access ---------------------------------------------------------------


def _depends_on(dependant: Any, guards: tuple[Any, ...]) -> bool:
    return any(d.call in guards or _depends_on(d, guards) for d in dependant.dependencies)


def test_every_route_goes_through_the_access_module() -> None:
    from fastapi.routing import APIRoute

    from scheduled_jobs.web.access import GUARDS
    from scheduled_jobs.web.app import create_app

    app = create_app()
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) > 25
    skipping = sorted(f"{sorted(r.methods)} {r.path}" for r in routes if not _depends_on(r.dependant, GUARDS))
    assert skipping == [], f"routes that skip web.access: {skipping}"
    others = [r for r in app.routes if not isinstance(r, APIRoute)]
    assert others == [], f"routes that are no APIRoute (no dependency can guard them): {others}"
