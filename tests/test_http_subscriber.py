"""The HTTP subscriber against a real loopback server (pytest-httpserver): pages, limits, bad data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from helpers.echo import Echo
from werkzeug import Response

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.http import HttpSubscriber, HttpSubscriberSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_httpserver import HTTPServer
    from werkzeug import Request

ORDERS = [{"id": f"SO-{i}", "n": i} for i in range(1, 8)]


@pytest.fixture
def api(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": httpserver.port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_API", json.dumps(connection))
    return httpserver


def read(**settings: Any) -> list[Batch | RejectedSource]:
    base = {
        "type": "http",
        "connection": "shop_api",
        "endpoint": "/orders",
        "retry": {"attempts": 2, "backoff_seconds": 0.01},
    }
    return list(HttpSubscriber(HttpSubscriberSettings.model_validate({**base, **settings})).batches())


def ids(found: list[Batch | RejectedSource]) -> list[list[str]]:
    return [[r["id"] for r in b.records] for b in found if isinstance(b, Batch)]


def test_page_number_pagination(api: HTTPServer) -> None:
    def page(request: Request) -> Response:
        number, size = int(request.args["page"]), int(request.args["per_page"])
        chunk = ORDERS[(number - 1) * size : number * size]
        return Response(json.dumps({"data": chunk}), content_type="application/json")

    api.expect_request("/orders").respond_with_handler(page)
    found = read(records_path="data", pagination={"type": "page", "size": 3})
    assert ids(found) == [["SO-1", "SO-2", "SO-3"], ["SO-4", "SO-5", "SO-6"], ["SO-7"]]


def test_offset_pagination_and_params(api: HTTPServer) -> None:
    def page(request: Request) -> Response:
        assert request.args["status"] == "new"
        offset, limit = int(request.args["offset"]), int(request.args["limit"])
        return Response(json.dumps(ORDERS[offset : offset + limit]), content_type="application/json")

    api.expect_request("/orders").respond_with_handler(page)
    found = read(params={"status": "new"}, pagination={"type": "offset", "limit": 4})
    assert ids(found) == [["SO-1", "SO-2", "SO-3", "SO-4"], ["SO-5", "SO-6", "SO-7"]]


def test_cursor_pagination(api: HTTPServer) -> None:
    def page(request: Request) -> Response:
        start = int(request.args.get("cursor", "0"))
        following = start + 3 if start + 3 < len(ORDERS) else None
        body = {"items": ORDERS[start : start + 3], "meta": {"next": following}}
        return Response(json.dumps(body), content_type="application/json")

    api.expect_request("/orders").respond_with_handler(page)
    found = read(records_path="items", pagination={"type": "cursor", "cursor_path": "meta.next"})
    assert ids(found) == [["SO-1", "SO-2", "SO-3"], ["SO-4", "SO-5", "SO-6"], ["SO-7"]]


@pytest.mark.parametrize("where", ["header", "body"])
def test_next_link_pagination(api: HTTPServer, where: str) -> None:
    def page(request: Request) -> Response:
        start = int(request.args.get("from", "0"))
        link = f"/orders?from={start + 4}" if start + 4 < len(ORDERS) else None
        body: dict[str, Any] = {"items": ORDERS[start : start + 4]}
        headers = {}
        if where == "body":
            body["links"] = {"next": link}
        elif link:
            headers["Link"] = f'<{link}>; rel="next"'
        return Response(json.dumps(body), content_type="application/json", headers=headers)

    api.expect_request("/orders").respond_with_handler(page)
    pagination = {"type": "next_link"} | ({"next_link_path": "links.next"} if where == "body" else {})
    assert ids(read(records_path="items", pagination=pagination)) == [
        ["SO-1", "SO-2", "SO-3", "SO-4"],
        ["SO-5", "SO-6", "SO-7"],
    ]


@pytest.fixture
def elsewhere() -> Iterator[Echo]:
    """Another host (another port on loopback): it records every request it receives."""
    server = Echo().start()
    yield server
    server.stop()


OTHER_HOSTS = {
    "absolute": "http://127.0.0.1:{port}/orders?from=4",
    "scheme-relative": "//127.0.0.1:{port}/orders?from=4",
    "userinfo that looks like the host": "http://127.0.0.1:{home}@127.0.0.1:{port}/orders?from=4",
}


@pytest.mark.parametrize("where", ["header", "body"])
@pytest.mark.parametrize("form", OTHER_HOSTS)
def test_a_next_link_to_another_host_gets_no_request_and_no_credentials(
    api: HTTPServer, elsewhere: Echo, monkeypatch: pytest.MonkeyPatch, where: str, form: str
) -> None:
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": api.port,
        "schema": "http",
        "login": "shop",
        "password": "s3cr3t-Pa55word",
        "extra": {"X-Api-Key": "k3y-0123456789abcdef"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_API", json.dumps(connection))
    link = OTHER_HOSTS[form].format(port=elsewhere.port, home=api.port)
    body: dict[str, Any] = {"items": ORDERS[:4]}
    headers = {}
    if where == "body":
        body["links"] = {"next": link}
    else:
        headers["Link"] = f'<{link}>; rel="next"'
    api.expect_request("/orders").respond_with_response(
        Response(json.dumps(body), content_type="application/json", headers=headers)
    )
    pagination = {"type": "next_link"} | ({"next_link_path": "links.next"} if where == "body" else {})
    found = read(records_path="items", pagination=pagination)
    assert elsewhere.requests == []
    assert ids(found) == [["SO-1", "SO-2", "SO-3", "SO-4"]]  # the page before the link is kept
    refused = found[-1]
    assert isinstance(refused, RejectedSource)
    assert refused.source == f"http://127.0.0.1:{elsewhere.port}/orders?from=4 (page 2)"
    assert refused.reason == (
        f"the next link goes to http://127.0.0.1:{elsewhere.port}, not to the connection's "
        f"http://127.0.0.1:{api.port}; the connection's credentials go only to its own scheme, host and port, "
        "so the run stops here and nothing was sent there"
    )


def test_max_pages_and_max_records_bound_a_run(api: HTTPServer) -> None:
    api.expect_request("/orders").respond_with_handler(
        lambda request: Response(json.dumps([{"id": request.args["page"]}] * 2), content_type="application/json")
    )
    assert len(ids(read(pagination={"type": "page", "size": 2}, max_pages=3))) == 3
    assert sum(map(len, ids(read(pagination={"type": "page", "size": 2}, max_records=5)))) == 5


def test_a_page_that_is_not_json_is_rejected_after_the_good_pages(api: HTTPServer) -> None:
    def page(request: Request) -> Response:
        if request.args["page"] == "2":
            return Response("<html>Gateway error</html>", content_type="text/html")
        return Response(json.dumps(ORDERS[:2]), content_type="application/json")

    api.expect_request("/orders").respond_with_handler(page)
    found = read(pagination={"type": "page", "size": 2})
    assert ids(found) == [["SO-1", "SO-2"]]
    rejected = found[-1]
    assert isinstance(rejected, RejectedSource)
    assert rejected.source.endswith("/orders (page 2)")
    assert rejected.reason.startswith(
        "the page is refused (text/html): not valid JSON: Expecting value at line 1, column 1"
    )


def test_malformed_json_and_too_large_responses_are_rejected(api: HTTPServer) -> None:
    api.expect_request("/bad").respond_with_data('{"items": [', content_type="application/json")
    api.expect_request("/big").respond_with_data(json.dumps([{"id": "x" * 1000}] * 50), content_type="application/json")
    (bad,) = read(endpoint="/bad")
    assert isinstance(bad, RejectedSource) and bad.reason.startswith(
        "the page is refused (application/json): not valid JSON"
    )
    (big,) = read(endpoint="/big", max_response_bytes=10_000)
    assert isinstance(big, RejectedSource)
    assert big.reason == "response of 50600 bytes is larger than max_response_bytes 10000"


def test_a_client_error_is_not_retried_and_a_server_error_is(api: HTTPServer) -> None:
    api.expect_ordered_request("/orders").respond_with_data("busy", status=503)
    api.expect_ordered_request("/orders").respond_with_json(ORDERS[:1])
    assert ids(read()) == [["SO-1"]]
    api.clear()
    api.expect_request("/orders").respond_with_data("no such shop", status=404)
    (refused,) = read()
    assert isinstance(refused, RejectedSource)
    assert refused.reason == f"HTTP 404 from GET http://127.0.0.1:{api.port}/orders: no such shop"
    assert len(api.log) == 1


POISON_PAGES = {
    "100,000 nested [": (b"[" * 100_000, "nested more than 100 levels deep"),
    "a 5,000-digit number": (b'[{"id": "SO-9", "total": ' + b"9" * 5000 + b"}]", "a number has more than 4300 digits"),
    "NaN": (b'[{"id": "SO-9", "total": NaN}]', "NaN is not a JSON number"),
    "not UTF-8": (b'[{"id": "SO-9", "name": "\xff"}]', "not UTF-8 text: invalid start byte at byte 25"),
}


@pytest.mark.parametrize("case", sorted(POISON_PAGES))
def test_a_poison_page_is_rejected_after_the_pages_before_it_were_stored(
    api: HTTPServer, tmp_path: Any, case: str
) -> None:
    """Through the real ingest loop and store: the run goes on, stores page 1, and names page 2's problem."""
    from scheduled_jobs.ingesting import ingest
    from scheduled_jobs.store import TaskStore

    body, reason = POISON_PAGES[case]

    def page(request: Request) -> Response:
        if request.args["page"] == "1":
            return Response(json.dumps(ORDERS[:2]), content_type="application/json")
        return Response(body, content_type="application/json")

    api.expect_request("/orders").respond_with_handler(page)
    settings = {
        "type": "http",
        "connection": "shop_api",
        "endpoint": "/orders",
        "pagination": {"type": "page", "size": 2},
    }
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    subscriber = HttpSubscriber(HttpSubscriberSettings.model_validate(settings))
    summary = ingest(store, subscriber, ["r"], "id")
    assert [task["entity_key"] for task in store.list_tasks("r")] == ["SO-1", "SO-2"]
    ((rejected),) = summary.rejected
    assert rejected["source"].endswith("/orders (page 2)")
    assert rejected["reason"] == f"the page is refused (application/json): {reason}"
