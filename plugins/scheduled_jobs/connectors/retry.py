"""Retries within one run, by urllib3: its ``Retry`` mounted on the HTTP hook's session.

urllib3 retries the transient answers and network failures, waits between tries and honours
Retry-After. What is ours: the schedule of waits (``RetrySettings.backoff``, so that
``worst_case_seconds`` stays true), an unreadable Retry-After falling back to that schedule, and the
cap on Retry-After: a longer one is not waited for (urllib3 would wait its own maximum, 6 hours).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from scheduled_jobs.connectors.deadline import WATCHED_POOLS, current
from scheduled_jobs.models.connectors.retry import is_transient_status

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from requests.adapters import HTTPAdapter
    from urllib3.connectionpool import ConnectionPool
    from urllib3.poolmanager import PoolManager
    from urllib3.response import BaseHTTPResponse

    from scheduled_jobs.models.connectors.retry import RetrySettings

_STATUSES = range(100, 1000)  # what http.client accepts as a status


class ConnectorRetry(Retry):
    """urllib3's ``Retry`` with our waits and the cap on Retry-After (see the module's docstring)."""

    # Only the statuses of status_forcelist are retried; urllib3 would also retry a 413 with Retry-After.
    RETRY_AFTER_STATUS_CODES: frozenset[int] = frozenset()

    settings: RetrySettings

    def new(self, **kw: Any) -> ConnectorRetry:
        retry = super().new(**kw)
        retry.settings = self.settings
        return retry

    def get_backoff_time(self) -> float:
        return self.settings.backoff(len(self.history))

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Wait before the next try, which then gets a deadline of its own (``connectors/deadline.py``)."""
        super().sleep(response)
        found = current()
        if found is not None:
            found.restart()

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # not a number nor an HTTP date: wait as if there were none
            return None

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> ConnectorRetry:
        if response is not None and self.retry_after_over_limit(response) is not None:
            # Not retried: urllib3 hands this answer back (raise_on_status is off), and send() says why.
            raise MaxRetryError(_pool, url or "", ResponseError("Retry-After is longer than the limit"))  # type: ignore[arg-type]
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            # Dropped, not drained for reuse: a refusing answer's body may never end.
            response.close()
        return retry

    def retry_after_over_limit(self, response: BaseHTTPResponse) -> float | None:
        """The seconds the answer's Retry-After asks for, when that is more than ``max_retry_after_seconds``."""
        asked = self.get_retry_after(response)
        return asked if asked is not None and asked > self.settings.max_retry_after_seconds else None


def retry_for(settings: RetrySettings, accepted: Callable[[int], bool]) -> ConnectorRetry:
    """The retries of one connector: every method (requests carry an idempotency key), transient
    statuses that are not ``accepted``, connection failures and timeouts, ``settings.attempts`` tries in all."""
    forced = frozenset(s for s in _STATUSES if is_transient_status(s) and not accepted(s))
    retry = ConnectorRetry(
        total=settings.attempts - 1,
        allowed_methods=None,
        status_forcelist=forced,
        raise_on_status=False,
        retry_after_max=sys.maxsize,  # our cap fails the request instead of shortening the wait
    )
    retry.settings = settings
    return retry


def adapter_for(settings: RetrySettings, accepted: Callable[[int], bool]) -> HTTPAdapter:
    """The adapter the HTTP hook mounts: its default (TCP keep-alive, as HttpHook sets it) with our
    retries, and connections whose sockets the thread's deadline watches (``connectors/deadline.py``)."""
    from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter  # type: ignore[import-untyped]

    class WatchedAdapter(TCPKeepAliveAdapter):  # type: ignore[misc]
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> PoolManager:
            manager: PoolManager = super().proxy_manager_for(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):  # SOCKS pools are their own: bodies check between chunks
                manager.pool_classes_by_scheme = WATCHED_POOLS
            return manager

    adapter: HTTPAdapter = WatchedAdapter(idle=120, count=20, interval=30, max_retries=retry_for(settings, accepted))
    return adapter
