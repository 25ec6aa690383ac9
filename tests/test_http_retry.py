"""Retries within a run, through urllib3's Retry on the hook's session: what stays ours around it."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.http import HttpSubscriber
from scheduled_jobs.models.connectors import HttpSubscriberSettings, RetrySettings

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer

ORDERS = [{"id": "SO-1"}]


@pytest.fixture
def api(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": httpserver.port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_API", json.dumps(connection))
    return httpserver


def read(**retry: Any) -> list[Batch | RejectedSource]:
    settings = {
        "type": "http",
        "connection": "shop_api",
        "endpoint": "/orders",
        "retry": {"attempts": 3, "backoff_seconds": 0.01, **retry},
    }
    return list(HttpSubscriber(HttpSubscriberSettings.model_validate(settings)).batches())


def test_a_retry_after_over_the_limit_is_not_waited_for(api: HTTPServer) -> None:
    api.expect_request("/orders").respond_with_data("later", status=503, headers={"Retry-After": "3600"})
    started = time.monotonic()
    (refused,) = read(max_retry_after_seconds=5)
    assert time.monotonic() - started < 60  # not the hour it asked for
    assert isinstance(refused, RejectedSource)
    assert refused.reason.endswith("later (Retry-After 3600 s is longer than the limit)"), refused.reason
    assert len(api.log) == 1


def test_a_transient_refusal_is_tried_attempts_times_and_says_so(api: HTTPServer) -> None:
    api.expect_request("/orders").respond_with_data("busy", status=502)
    (refused,) = read()
    assert isinstance(refused, RejectedSource)
    assert refused.reason == f"HTTP 502 from GET http://127.0.0.1:{api.port}/orders: busy (after 3 tries)"
    assert len(api.log) == 3


def test_an_unreadable_retry_after_falls_back_to_the_backoff(api: HTTPServer) -> None:
    api.expect_ordered_request("/orders").respond_with_data("", status=429, headers={"Retry-After": "soon"})
    api.expect_ordered_request("/orders").respond_with_json(ORDERS)
    (batch,) = read()
    assert isinstance(batch, Batch) and batch.records == ORDERS


@pytest.mark.parametrize("status", [400, 404, 413])
def test_a_client_error_is_tried_once_even_with_a_retry_after(api: HTTPServer, status: int) -> None:
    api.expect_request("/orders").respond_with_data("no", status=status, headers={"Retry-After": "0"})
    (refused,) = read()
    assert isinstance(refused, RejectedSource) and refused.reason.endswith(": no")
    assert len(api.log) == 1


def test_the_worst_case_counts_every_try_and_wait() -> None:
    retry = RetrySettings(attempts=3, backoff_seconds=1, max_backoff_seconds=30, max_retry_after_seconds=0)
    assert retry.worst_case_seconds(10) == 3 * 10 + 1 + 2
    assert all(0.5 <= retry.backoff(1) <= 1 for _ in range(100))
