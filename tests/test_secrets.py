"""Secrets never leave the connection: a hostile destination echoes the credentials it was sent.

Real jobs run by ``dag.test()`` against an echoing loopback server; then every place a user or a log
reader can see is searched for every form of the connection's secrets: each column of each table of
the store, the JSON API and the HTML task page (through a real Airflow API server with real tokens),
the task log and XCom.
"""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import sqlalchemy as sa
from conftest import ROOT, connection_json
from helpers.airflow_compat import DagBag, dag_test
from helpers.echo import Echo
from helpers.live_api import PREFIX, Server, store_of
from helpers.ports import free_port
from werkzeug import Response

from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from airflow.models.dagrun import DagRun
    from pytest_httpserver import HTTPServer
    from werkzeug import Request

PASSWORD = "s3cr3t/Pa55+w0rd&x"
LOGIN = "svc"
API_KEY = "k3y-0123456789abcdef"
BASIC = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
ROUTE = "orders-to-echo"
# Every form in which a secret of the connection can travel or be shown.
FORMS = {
    "password": PASSWORD,
    "password, URL-encoded": quote(PASSWORD, safe=""),
    "password, URL-encoded (path)": quote(PASSWORD),
    "password, form-encoded": quote_plus(PASSWORD),
    "password, HTML-escaped": html.escape(PASSWORD),
    "login:password in base64": BASIC,
    "API key": API_KEY,
}


def leaks(where: str, text: str) -> list[str]:
    folded = text.casefold()
    return [f"{name} in {where}" for name, form in FORMS.items() if form.casefold() in folded]


def connection(kind: str, port: int) -> dict[str, Any]:
    if kind == "login":
        return {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": port,
            "schema": "http",
            "login": LOGIN,
            "password": PASSWORD,
            "extra": {"X-Api-Key": API_KEY},
        }
    # The credentials in the host's URL: requests sends them as Basic auth.
    host = f"http://{LOGIN}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
    return {"conn_type": "http", "host": host, "extra": {"X-Api-Key": API_KEY}}


@pytest.fixture
def echo() -> Iterator[Echo]:
    destination = Echo().start()
    yield destination
    destination.stop()


def write(project: Path, relative: str, text: str) -> None:
    (project / relative).write_text(text, encoding="utf-8")


def outgoing_job(project: Path) -> None:
    write(
        project,
        "configurations/outgoing/echo-api.yaml",
        """
name: Echo API
publisher:
  type: http
  connection: echo_api
  endpoint: /answer/{answer}/{id}
  retry: {attempts: 2, backoff_seconds: 0.01}
""",
    )
    write(
        project,
        f"configurations/routes/{ROUTE}.yaml",
        """
name: Orders to echo
incoming_configuration: shop-orders
outgoing_configuration: echo-api
""",
    )
    write(
        project,
        "job_definitions/orders-to-echo-export.yaml",
        f"""
name: Orders to echo export
job: outgoing
route: {ROUTE}
expression: "* * * * *"
""",
    )


def searched_store(engine: sa.Engine) -> list[str]:
    """Every value of every column of every table of the store, searched.

    The store's tables only: other tests leave their own tables (a SQL source's) in the same database.
    """
    found = []
    with engine.connect() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t.startswith("scheduled_jobs_")]
        assert "scheduled_jobs_task" in tables
        for table in tables:
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                for column, value in row._mapping.items():
                    found += leaks(f"{table}.{column}", str(value))
    return found


def searched_run(run: DagRun, output: str) -> list[str]:
    xcom = [ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()]
    return leaks("the task log", output) + leaks("XCom", json.dumps(xcom, default=str))


def searched_web(server: Server, viewer_token: str, task_ids: list[int]) -> list[str]:
    found = []
    with httpx.Client(
        base_url=server.url + PREFIX, headers={"Authorization": f"Bearer {viewer_token}"}, timeout=30
    ) as viewer:
        for path in [
            *(f"/api/tasks/{task_id}" for task_id in task_ids),
            *(f"/tasks/{task_id}" for task_id in task_ids),
            f"/api/routes/{ROUTE}/errors",
            f"/tasks?route={ROUTE}",
        ]:
            answer = viewer.get(path)
            assert answer.status_code == 200, (path, answer.text)
            found += leaks(path, answer.text)
    return found


def searched_everywhere(
    store: TaskStore, run: DagRun, log: str, web: tuple[Server, str] | None = None, task_ids: list[int] | None = None
) -> list[str]:
    """Every place a user or a log reader can see: the store, the task log and XCom, and (with ``web``, a
    server and a Viewer's token) the pages and the API of these tasks and of the route.
    """
    found = searched_store(store.engine) + searched_run(run, log)
    if web is not None:
        server, viewer_token = web
        found += searched_web(server, viewer_token, task_ids or [])
    return found


def export_through(project: Path, store: TaskStore, capfd: pytest.CaptureFixture[str]) -> tuple[DagRun, str]:
    """The route's export job, run by ``dag.test()``; its run and what it wrote (the task log)."""
    outgoing_job(project)
    store.add_entities([ROUTE], [("1", {"id": "1", "answer": "401"}), ("2", {"id": "2", "answer": "500"})])
    run = dag_test(DagBag(dag_folder=str(ROOT / "dags")).get_dag("orders-to-echo-export"))
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "export_route": "success",
    }
    output = capfd.readouterr()
    return run, output.out + output.err


@pytest.mark.parametrize("kind", ["login", "userinfo"])
def test_an_echoing_destination_puts_no_secret_in_the_store_the_pages_the_log_or_xcom(
    kind: str,
    project: Path,
    echo: Echo,
    server: Server,
    tokens: dict[str, str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps(connection(kind, echo.port)))
    store = store_of(project)
    run, log = export_through(project, store, capfd)
    # The destination did receive the credentials and sent them back: the attack happened.
    assert len(echo.requests) == 3, echo.requests  # the 401 once, the 500 twice (retried)
    assert all(BASIC in reply and API_KEY in reply for reply in echo.replies)
    tasks = {task["entity_key"]: task for task in store.list_tasks(ROUTE)}
    assert {key: task["status"] for key, task in tasks.items()} == {"1": "failed", "2": "failed"}
    errors = {key: str(task["last_error"]) for key, task in tasks.items()}
    found = searched_everywhere(store, run, log, (server, tokens["viewer"]), [task["id"] for task in tasks.values()])
    assert found == []
    # The error still says what happened and where, with what the destination answered.
    where = f"http://127.0.0.1:{echo.port}/answer"
    assert errors["1"].startswith(f"HTTP 401 from POST {where}/401/1: POST /answer/401/1 HTTP/1.1"), errors["1"]
    assert "Authorization: Basic ***" in errors["1"] and "X-Api-Key: ***" in errors["1"]
    assert errors["2"].startswith(f"HTTP 500 from POST {where}/500/2: POST /answer/500/2 HTTP/1.1"), errors["2"]


def test_credentials_in_the_hosts_url_stay_out_of_a_connection_error(
    project: Path,
    server: Server,
    tokens: dict[str, str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = free_port()  # nothing listens there: every try is refused
    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps(connection("userinfo", closed)))
    store = store_of(project)
    run, log = export_through(project, store, capfd)
    tasks = store.list_tasks(ROUTE)
    assert [task["status"] for task in tasks] == ["failed", "failed"]
    found = searched_everywhere(store, run, log, (server, tokens["viewer"]), [task["id"] for task in tasks])
    assert found == []
    error = str(tasks[0]["last_error"])
    assert error.startswith(f"ConnectionError on POST http://127.0.0.1:{closed}/answer/"), error
    assert "Connection refused" in error


@pytest.mark.postgres
def test_no_secret_reaches_a_postgresql_store(
    project: Path,
    echo: Echo,
    postgres_server_url: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps(connection("login", echo.port)))
    monkeypatch.setenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE", connection_json(postgres_server_url))
    store = TaskStore.from_url(postgres_server_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
        conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))
    run, log = export_through(project, store, capfd)
    assert all(BASIC in reply for reply in echo.replies)
    assert [task["status"] for task in store.list_tasks(ROUTE)] == ["failed", "failed"]
    assert searched_everywhere(store, run, log) == []


def test_a_source_that_echoes_the_credentials_rejects_its_page_without_them(
    project: Path, echo: Echo, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps(connection("login", echo.port)))
    write(
        project,
        "configurations/incoming/echo-orders.yaml",
        """
name: Echo orders
entity_key: id
subscriber:
  type: http
  connection: echo_api
  endpoint: /answer/401/orders
""",
    )
    write(
        project,
        "configurations/routes/echo-orders-to-erp.yaml",
        """
name: Echo orders to ERP
incoming_configuration: echo-orders
outgoing_configuration: erp-orders-file
""",
    )
    write(
        project,
        "job_definitions/echo-orders.yaml",
        """
name: Echo orders
job: incoming
incoming_configuration: echo-orders
expression: "* * * * *"
""",
    )
    run = dag_test(DagBag(dag_folder=str(ROOT / "dags")).get_dag("echo-orders"))
    output = capfd.readouterr()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["run_incoming_configuration"] == "failed"
    assert echo.replies and all(BASIC in reply and API_KEY in reply for reply in echo.replies)
    log = output.out + output.err
    assert f"HTTP 401 from GET http://127.0.0.1:{echo.port}/answer/401/orders" in log
    assert searched_everywhere(store_of(project), run, log) == []


def test_the_derived_forms_are_registered_with_airflows_log_masker() -> None:
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.definitions.connection import Connection

    from scheduled_jobs.redaction import redactor_for

    password = "an0ther/Pa55+w0rd"  # the masker is global: a secret no other test registered
    basic = base64.b64encode(f"{LOGIN}:{password}".encode()).decode()
    line = f"Authorization: Basic {basic}, then {quote(password, safe='')}"
    assert redact(line) == line  # Airflow alone knows neither form
    connection = Connection(conn_id="echo_api", conn_type="http", host="127.0.0.1", login=LOGIN, password=password)
    redactor_for(connection, headers_from_extra=True)
    assert redact(line) == "Authorization: Basic ***, then ***"


def test_an_unexpected_exception_carrying_the_key_is_stored_without_it(
    echo: Echo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings
    from scheduled_jobs.exporting import export_route

    # A key pasted with its line break: requests refuses the header, quoting its value in the exception.
    pasted = connection("login", echo.port) | {"extra": {"X-Api-Key": API_KEY + "\n"}}
    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps(pasted))
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_entities([ROUTE], [("1", {"id": "1"})])
    settings = {"type": "http", "connection": "echo_api", "endpoint": "/orders/{id}"}
    export_route(store, HttpPublisher(HttpPublisherSettings.model_validate(settings)), ROUTE)
    (task,) = store.list_tasks(ROUTE)
    assert echo.requests == []
    assert task["status"] == "failed"
    assert task["last_error"] == (
        "unexpected InvalidHeader: Invalid leading whitespace, reserved character(s), or return character(s) "
        "in header value: '***'"
    )


def refusing_destination(httpserver: HTTPServer, answer: Callable[[str], str]) -> None:
    """A destination answering 401 with a body built from the request's Authorization header."""

    def handler(request: Request) -> Response:
        return Response(answer(request.headers.get("Authorization", "")), status=401, content_type="application/json")

    httpserver.expect_request("/orders/1").respond_with_handler(handler)


def last_error_of_an_export(connection_fields: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings
    from scheduled_jobs.exporting import export_route

    monkeypatch.setenv("AIRFLOW_CONN_ECHO_API", json.dumps({"conn_type": "http", "schema": "http"} | connection_fields))
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_entities([ROUTE], [("1", {"id": "1"})])
    settings = {"type": "http", "connection": "echo_api", "endpoint": "/orders/{id}", "retry": {"attempts": 1}}
    export_route(store, HttpPublisher(HttpPublisherSettings.model_validate(settings)), ROUTE)
    (task,) = store.list_tasks(ROUTE)
    assert task["status"] == "failed"
    return str(task["last_error"])


def test_the_basic_header_echoed_url_encoded_or_with_escaped_slashes_is_stored_without_it(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "Pa55?w0rd>>"  # its login:password in base64 holds '/', '+' and '='
    basic = base64.b64encode(f"{LOGIN}:{password}".encode()).decode()
    assert {"/", "+"} <= set(basic)

    def answer(authorization: str) -> str:
        # PHP's json_encode escapes '/', and a login link carries the header URL-encoded.
        received = json.dumps({"received": authorization}).replace("/", "\\/")
        return f'{{"error": {received}, "retry": "/login?auth={quote(authorization, safe="")}"}}'

    refusing_destination(httpserver, answer)
    fields = {"host": "127.0.0.1", "port": httpserver.port, "login": LOGIN, "password": password}
    error = last_error_of_an_export(fields, tmp_path, monkeypatch)
    assert "HTTP 401 from POST" in error
    shown = {"as sent": basic, "URL-encoded": quote(basic, safe=""), "JSON with '\\/'": basic.replace("/", "\\/")}
    assert [name for name, form in shown.items() if form.casefold() in error.casefold()] == [], error


def test_a_bearer_token_of_an_extra_authorization_header_echoed_alone_is_stored_without_it(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.dG9rZW4"

    def answer(authorization: str) -> str:
        scheme, _, credential = authorization.partition(" ")
        return json.dumps({"error": "invalid_token", "scheme": scheme, "token": credential})

    refusing_destination(httpserver, answer)
    fields = {"host": "127.0.0.1", "port": httpserver.port, "extra": {"Authorization": f"Bearer {token}"}}
    error = last_error_of_an_export(fields, tmp_path, monkeypatch)
    assert "invalid_token" in error and "Bearer" in error
    assert token not in error, error
