"""Every HTTP publish and every subscriber page ends by its total deadline, and answers have a size limit.

``timeout_seconds`` once bounded each socket read only: a destination that answers and then trickles
(a byte a second, its headers or its body) held a publish, its pool slot and its claim as long as it
liked, and a huge answer was read into memory whole. Each test runs against a real threaded loopback
server that misbehaves on purpose.
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import pytest
from helpers.ports import serve_http

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings, HttpSubscriber, HttpSubscriberSettings
from scheduled_jobs.exporting import export_route
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ROUTE = "orders-to-erp"
PASSWORD = "hunter2-very-secret"
TOKEN = "tok-3f9a-secret-header"
TRICKLE_BYTES = 8  # at one a second: an unbounded client takes 8 s, a bounded one its timeout
HUGE = 48 * 1024 * 1024
MARGIN = 1.5


class Hostile:
    """A loopback server: ``/trickle-body``, ``/trickle-headers``, ``/huge`` (declared), ``/huge-chunked``,
    ``/records`` (a good page). Every request is counted."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def start(self) -> Hostile:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                if length:
                    self.rfile.read(length)
                hostile.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/trickle-body":
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(TRICKLE_BYTES))
                        self.end_headers()
                        self.wfile.flush()
                        for _ in range(TRICKLE_BYTES):
                            time.sleep(1)
                            self.wfile.write(b" ")
                            self.wfile.flush()
                    elif path == "/trickle-status":
                        for byte in b"HTTP/1.1"[:TRICKLE_BYTES]:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(1)
                        self.wfile.write(b" 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                    elif path == "/trickle-headers":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        self.wfile.flush()
                        for _ in range(TRICKLE_BYTES):
                            time.sleep(1)
                            self.wfile.write(b"X")
                            self.wfile.flush()
                        self.wfile.write(b": y\r\nContent-Length: 2\r\n\r\n[]")
                    elif path in ("/huge", "/huge-chunked"):
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        if path == "/huge":
                            self.send_header("Content-Length", str(HUGE))
                        else:
                            self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        block = b"[" + b" " * (1024 * 1024 - 1)
                        for _ in range(HUGE // len(block)):
                            if path == "/huge":
                                self.wfile.write(block)
                            else:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                            block = b" " * len(block)
                        if path == "/huge-chunked":
                            self.wfile.write(b"0\r\n\r\n")
                    else:
                        body = json.dumps([{"id": "r-1"}]).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                except OSError:  # the client hung up on it, as it should
                    self.close_connection = True

            do_GET = do_POST = answer

        self.server = serve_http(Handler)
        self.port: int = self.server.server_address[1]
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hostile]:
    server = Hostile().start()
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": server.port,
        "schema": "http",
        "login": "erp",
        "password": PASSWORD,
        "extra": {"X-Api-Token": TOKEN},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ERP", json.dumps(connection))
    yield server
    server.stop()


def publisher(endpoint: str, **settings: object) -> HttpPublisher:
    base = {"type": "http", "connection": "erp", "endpoint": endpoint, "timeout_seconds": 2, "retry": {"attempts": 1}}
    return HttpPublisher(HttpPublisherSettings.model_validate({**base, **settings}))


def subscriber(endpoint: str, **settings: object) -> HttpSubscriber:
    base = {"type": "http", "connection": "erp", "endpoint": endpoint, "timeout_seconds": 2, "retry": {"attempts": 1}}
    return HttpSubscriber(HttpSubscriberSettings.model_validate({**base, **settings}))


def one_task(tmp_path: Path) -> TaskStore:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_entities([ROUTE], [("r-1", {"id": "r-1"})])
    return store


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text, text


@pytest.mark.parametrize("where", ["/trickle-body", "/trickle-headers", "/trickle-status"])
def test_a_trickling_destination_ends_the_publish_at_timeout_seconds(
    hostile: Hostile, tmp_path: Path, where: str
) -> None:
    store = one_task(tmp_path)
    started = time.monotonic()
    result = export_route(store, publisher(where), ROUTE)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + MARGIN, f"the publish took {elapsed:.1f} s with timeout_seconds 2"
    assert (result.exported, result.failed) == (0, 1)
    (task,) = store.list_tasks(ROUTE)
    assert (task["status"], task["retryable"]) == ("failed", True)
    assert "no complete answer within timeout_seconds 2 s" in task["last_error"], task["last_error"]
    assert task["last_error"].startswith(f"POST http://127.0.0.1:{hostile.port}{where}"), task["last_error"]
    assert_no_secret(task["last_error"])


def test_every_try_has_its_own_deadline_and_the_publish_ends_after_the_last(hostile: Hostile, tmp_path: Path) -> None:
    """Cut off before its status came, a try is retried (with a deadline of its own); after a status
    came (``/trickle-headers``, ``/trickle-body``) it is not, and the task is left to a later run."""
    store = one_task(tmp_path)
    retry = {"attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1}
    started = time.monotonic()
    # 1.5 s: longer than the gap between two bytes, so no single read times out; only the deadline ends a try
    export_route(store, publisher("/trickle-status", timeout_seconds=1.5, retry=retry), ROUTE)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * 1.5 + 0.1 + MARGIN, f"two tries took {elapsed:.1f} s with timeout_seconds 1.5"
    assert hostile.requests == ["/trickle-status", "/trickle-status"]
    (task,) = store.list_tasks(ROUTE)
    assert "no complete answer within timeout_seconds 1.5 s" in task["last_error"], task["last_error"]
    assert "(after 2 tries)" in task["last_error"]


@pytest.mark.parametrize("where", ["/trickle-body", "/trickle-headers", "/trickle-status"])
def test_a_trickling_source_ends_the_page_at_timeout_seconds(hostile: Hostile, where: str) -> None:
    started = time.monotonic()
    found = list(subscriber(where).batches())
    elapsed = time.monotonic() - started
    assert elapsed < 2 + MARGIN, f"one page took {elapsed:.1f} s with timeout_seconds 2"
    (rejected,) = found
    assert isinstance(rejected, RejectedSource)
    assert "no complete answer within timeout_seconds 2 s" in rejected.reason, rejected.reason
    assert_no_secret(rejected.source + rejected.reason)


@pytest.mark.parametrize("where", ["/huge", "/huge-chunked"])
def test_a_huge_answer_fails_the_publish_with_bounded_memory(hostile: Hostile, tmp_path: Path, where: str) -> None:
    store = one_task(tmp_path)
    tracemalloc.start()
    try:
        result = export_route(store, publisher(where, timeout_seconds=20), ROUTE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held for one answer"
    assert (result.exported, result.failed) == (0, 1)
    (task,) = store.list_tasks(ROUTE)
    assert (task["status"], task["retryable"]) == ("failed", True)
    assert "larger than max_response_bytes 1048576" in task["last_error"], task["last_error"]
    assert_no_secret(task["last_error"])


def test_a_publishers_answer_limit_is_a_setting(hostile: Hostile, tmp_path: Path) -> None:
    store = one_task(tmp_path)
    export_route(store, publisher("/records", max_response_bytes=4), ROUTE)
    (task,) = store.list_tasks(ROUTE)
    assert "larger than max_response_bytes 4" in task["last_error"], task["last_error"]
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'other.db'}")
    store.add_entities([ROUTE], [("r-1", {"id": "r-1"})])
    assert export_route(store, publisher("/records"), ROUTE).exported == 1


@pytest.mark.parametrize("where", ["/huge", "/huge-chunked"])
def test_a_huge_page_is_rejected_with_bounded_memory(hostile: Hostile, where: str) -> None:
    tracemalloc.start()
    try:
        found = list(subscriber(where, timeout_seconds=20, max_response_bytes=2_000_000).batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held for one page"
    (rejected,) = found
    assert isinstance(rejected, RejectedSource)
    assert "larger than max_response_bytes 2000000" in rejected.reason, rejected.reason


def test_a_good_page_still_reads(hostile: Hostile) -> None:
    (batch,) = list(subscriber("/records").batches())
    assert isinstance(batch, Batch)
    assert batch.records == [{"id": "r-1"}]
