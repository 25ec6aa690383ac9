"""The HTTP publisher against a hostile loopback destination: a payload value cannot choose another resource."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pytest
from helpers.echo import Echo

from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings
from scheduled_jobs.exporting import export_route
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ROUTE = "orders-to-api"
TEMPLATE = "/api/customers/{customer}/orders/{id}"


@pytest.fixture
def destination(monkeypatch: pytest.MonkeyPatch) -> Iterator[Echo]:
    server = Echo().start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_ORDERS_API", json.dumps(connection))
    yield server
    server.stop()


HOSTILE = {
    "dot-dot": {"customer": "..", "id": ".."},  # DELETE /api/customers/../orders/.. is DELETE /api/
    "dot": {"customer": ".", "id": "7"},
    "empty": {"customer": "", "id": "7"},
    "slash": {"customer": "c1/../..", "id": "7"},
    "backslash": {"customer": "c1\\..", "id": "7"},
    "dot-dot id": {"customer": "c1", "id": ".."},
}


def test_a_path_value_never_leaves_the_templates_resource(destination: Echo, tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    entities: list[tuple[str, dict[str, str]]] = list(HOSTILE.items())
    entities.append(("good", {"customer": "c 1", "id": "7"}))
    store.add_entities([ROUTE], entities)
    publisher = HttpPublisher(
        HttpPublisherSettings.model_validate(
            {"type": "http", "connection": "orders_api", "method": "DELETE", "endpoint": TEMPLATE}
        )
    )
    export_route(store, publisher, ROUTE)
    # Every request the destination saw names one order of one customer, decoded as a server would.
    for line in destination.requests:
        segments = [unquote(s) for s in urlsplit(line.split(" ", 1)[1]).path.split("/")]
        assert len(segments) == 6 and segments[:3] == ["", "api", "customers"] and segments[4] == "orders", line
        assert all(value not in ("", ".", "..") and "/" not in value for value in segments[3::2]), line
    assert destination.requests == ["DELETE /api/customers/c%201/orders/7"]
    tasks = {task["entity_key"]: task for task in store.list_tasks(ROUTE)}
    assert tasks["good"]["status"] == "finished"
    for name, values in HOSTILE.items():
        task = tasks[name]
        assert (task["status"], task["retryable"]) == ("failed", False), name
        field = "id" if name == "dot-dot id" else "customer"
        assert task["last_error"] == (
            f"endpoint {TEMPLATE!r}: {{{field}}} is {values[field]!r}, which would change the path's segments, "
            "so nothing was sent; a value in the path may not be empty, '.' or '..', nor hold '/' or '\\'"
        ), name
