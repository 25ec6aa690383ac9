"""An incoming job reading a paged HTTP API, with a real-time HTTP route, run by ``dag.test()``.

Credentials live only in Airflow connections; they must not show in the task log or in XCom.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest
from conftest import ROOT
from helpers.airflow_compat import DagBag, dag_test
from helpers.sink import Sink
from werkzeug import Response

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_httpserver import HTTPServer
    from werkzeug import Request

PASSWORD = "s3cr3t-Pa55word"
ORDERS = [
    {"id": f"SO-{i}", "status": "paid" if i % 3 else "cancelled", "customer": {"name": f"C{i}"}} for i in range(1, 11)
]


@pytest.fixture
def shop(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": httpserver.port,
        "schema": "http",
        "login": "shop",
        "password": PASSWORD,
    }
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_API", json.dumps(connection))
    expected = "Basic " + base64.b64encode(f"shop:{PASSWORD}".encode()).decode()

    def page(request: Request) -> Response:
        if request.headers.get("Authorization") != expected:
            return Response("who are you?", status=401)
        number = int(request.args["page"])
        return Response(json.dumps({"data": ORDERS[(number - 1) * 4 : number * 4]}), content_type="application/json")

    httpserver.expect_request("/v1/orders").respond_with_handler(page)
    return httpserver


def write(project: Path, relative: str, text: str) -> None:
    (project / relative).write_text(text, encoding="utf-8")


def test_http_in_http_out_through_airflow_connections(
    project: Path, shop: HTTPServer, sink: Sink, capfd: pytest.CaptureFixture[str]
) -> None:
    write(
        project,
        "configurations/incoming/shop-api-orders.yaml",
        """
name: Shop API orders
entity_key: id
subscriber:
  type: http
  connection: shop_api
  endpoint: /v1/orders
  records_path: data
  pagination: {type: page, size: 4}
mapping:
  filter: {status: [paid]}
  fields: {id: id, customer: customer.name}
""",
    )
    write(
        project,
        "configurations/outgoing/erp-api.yaml",
        """
name: ERP API
publisher:
  type: http
  connection: sink
  method: PUT
  endpoint: /orders/{id}
""",
    )
    write(
        project,
        "configurations/routes/api-orders-to-erp.yaml",
        """
name: API orders to ERP
incoming_configuration: shop-api-orders
outgoing_configuration: erp-api
realtime: true
concurrency: 4
""",
    )
    write(
        project,
        "job_definitions/shop-api-orders.yaml",
        """
name: Shop API orders
job: incoming
incoming_configuration: shop-api-orders
expression: "*/5 * * * *"
""",
    )
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("shop-api-orders")
    run = dag_test(dag)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "run_incoming_configuration": "success",
        "export_api-orders-to-erp": "success",
        "watcher": "skipped",  # nothing failed: the run's state is its exports' and its incoming run's
    }
    paid = [o for o in ORDERS if o["status"] == "paid"]
    assert sorted(sink.bodies.values(), key=lambda b: int(b["id"][3:])) == [
        {"id": o["id"], "customer": o["customer"]["name"]} for o in paid
    ]
    assert sink.duplicates() == {}
    assert all(key.startswith("api-orders-to-erp-") for key in sink.received)
    xcom = [ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()]
    output = capfd.readouterr()
    assert PASSWORD not in output.out + output.err + json.dumps(xcom, default=str)
    assert f"exported {len(paid)}, failed 0, left 0" in output.out + output.err
