"""HTTP connectors through Airflow HTTP connections (``HttpHook``): a paginated subscriber and a publisher.

Base URL and credentials live in the connection; YAML only names it. Each thread gets its own
``requests`` session from the hook, so connections are reused across requests.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import Field, field_validator

from scheduled_jobs.connectors.base import Batch, ConnectorSettings, Publisher, RejectedSource, Subscriber, dig
from scheduled_jobs.connectors.retry import RetrySettings, is_transient_status, retry_after_seconds
from scheduled_jobs.exceptions import DeliveryError, SourceError
from scheduled_jobs.models import StrictModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from scheduled_jobs.store.tasks import ClaimedTask

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_FIELD = re.compile(r"{([^{}]+)}")


class _HttpSettings(ConnectorSettings):
    connection: str = Field(min_length=1)
    """The Airflow HTTP connection (base URL, auth, extra headers)."""
    method: Method = "GET"
    endpoint: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    retry: RetrySettings = Field(default_factory=RetrySettings)


class PagePagination(StrictModel):
    type: Literal["page"] = "page"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = "per_page"
    size: int = Field(default=100, gt=0)


class OffsetPagination(StrictModel):
    type: Literal["offset"] = "offset"
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, gt=0)


class CursorPagination(StrictModel):
    type: Literal["cursor"] = "cursor"
    cursor_param: str = "cursor"
    cursor_path: str = Field(min_length=1)
    """Where the next cursor is in the body, e.g. ``meta.next_cursor``; empty or absent = last page."""


class NextLinkPagination(StrictModel):
    type: Literal["next_link"] = "next_link"
    next_link_path: str | None = None
    """Where the next page's URL is in the body (e.g. ``links.next``); absent = the ``Link: rel="next"`` header."""


Pagination = Annotated[
    PagePagination | OffsetPagination | CursorPagination | NextLinkPagination, Field(discriminator="type")
]


class HttpSubscriberSettings(_HttpSettings):
    """``subscriber: {type: http, ...}``: records from a JSON API, page after page."""

    type: Literal["http"] = "http"
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    records_path: str | None = None
    pagination: Pagination | None = None
    max_pages: int = Field(default=100, gt=0, le=100_000)
    max_records: int = Field(default=100_000, gt=0)
    max_response_bytes: int = Field(default=20_000_000, gt=0)


class HttpPublisherSettings(_HttpSettings):
    """``publisher: {type: http, ...}``: one request per task, the payload as JSON body."""

    type: Literal["http"] = "http"
    method: Method = "POST"
    success_status_codes: list[int] = Field(default_factory=lambda: [200, 201, 202, 204], min_length=1)
    idempotency_header: str = "Idempotency-Key"
    """Carries ``<route>-<task id>`` on every try, so a destination can drop a repeat."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_fields(cls, value: str) -> str:
        for name in _FIELD.findall(value):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
                raise ValueError(f"{{{name}}} in {value!r} is not a field name (e.g. {{id}} or {{customer.id}})")
        return value


def _hook(settings: _HttpSettings) -> HttpHook:
    from airflow.providers.http.hooks.http import HttpHook

    return HttpHook(method=settings.method, http_conn_id=settings.connection)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


class Refused(Exception):
    """A request that did not succeed, after the retries it was worth."""

    def __init__(self, problem: str, *, transient: bool) -> None:
        super().__init__(problem)
        self.transient = transient


def send(
    hook: HttpHook,
    session: requests.Session,
    request: requests.Request,
    settings: _HttpSettings,
    *,
    accepted: Callable[[int], bool],
    url: str,
) -> requests.Response:
    """Send through the hook, retrying transient failures with backoff and honouring Retry-After.

    Raises ``Refused`` at once for a permanent refusal (a 4xx other than 408/425/429), and after the
    last try for a transient one.
    """
    import requests

    retry = settings.retry
    where = f"{settings.method} {url}"
    options = {"timeout": settings.timeout_seconds, "check_response": False, "allow_redirects": False}
    problem = ""
    for attempt in range(1, retry.attempts + 1):
        wait = retry.backoff(attempt)
        try:
            response = hook.run_and_check(session, session.prepare_request(request), options)
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__} on {where}"
        else:
            if accepted(response.status_code):
                return cast("requests.Response", response)
            problem = f"HTTP {response.status_code} from {where}: {_short(response.text)}"
            if not is_transient_status(response.status_code):
                raise Refused(problem, transient=False)
            asked = retry_after_seconds(response.headers)
            if asked is not None:
                if asked > retry.max_retry_after_seconds:
                    raise Refused(f"{problem} (Retry-After {asked:.0f} s is longer than the limit)", transient=True)
                wait = asked
        if attempt < retry.attempts:
            time.sleep(wait)
    raise Refused(f"{problem} (after {retry.attempts} tries)", transient=True)


class HttpPublisher(Publisher[HttpPublisherSettings]):
    def __init__(self, settings: HttpPublisherSettings) -> None:
        super().__init__(settings)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> tuple[HttpHook, requests.Session]:
        """This thread's hook and session: a hook mounts one connection pool, so threads do not share one."""
        found: tuple[HttpHook, requests.Session] | None = getattr(self._local, "pair", None)
        if found is None:
            hook = _hook(self.settings)
            session = hook.get_conn(headers=self.settings.headers)
            found = self._local.pair = (hook, session)
            with self._lock:
                self._sessions.append(session)
        return found

    def endpoint_for(self, task: ClaimedTask) -> str:
        def field(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in ("entity_key", "task_id", "route"):
                return str({"entity_key": task.entity_key, "task_id": task.id, "route": task.route}[name])
            try:
                return str(dig(task.payload, name))
            except KeyError:
                raise DeliveryError(f"endpoint {self.settings.endpoint!r}: the entity has no field {name!r}") from None

        from urllib.parse import quote

        return _FIELD.sub(lambda m: quote(field(m), safe=""), self.settings.endpoint)

    def _accepted(self, status: int) -> bool:
        return status in self.settings.success_status_codes

    def publish(self, task: ClaimedTask) -> None:
        from requests import Request

        hook, session = self._session()
        url = hook.url_from_endpoint(self.endpoint_for(task))
        headers = {self.settings.idempotency_header: f"{task.route}-{task.id}"}
        request = Request(self.settings.method, url, json=task.payload, headers=headers)
        try:
            send(hook, session, request, self.settings, accepted=self._accepted, url=url)
        except Refused as exc:
            raise DeliveryError(str(exc), transient=exc.transient) from None

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


class HttpSubscriber(Subscriber[HttpSubscriberSettings]):
    """Reads pages until one is empty or the pagination says it was the last (or ``max_pages``)."""

    def _get(self, hook: HttpHook, session: requests.Session, url: str, params: dict[str, Any]) -> requests.Response:
        from requests import Request

        try:
            request = Request(self.settings.method, url, params=params)
            return send(hook, session, request, self.settings, accepted=_is_2xx, url=url)
        except Refused as exc:
            raise SourceError(url, str(exc)) from None

    def _body(self, response: requests.Response, source: str) -> Any:
        limit = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise SourceError(source, f"response of {declared} bytes is larger than max_response_bytes {limit}")
        content = bytearray()
        for chunk in response.iter_content(chunk_size=65536):
            content += chunk
            if len(content) > limit:
                response.close()
                raise SourceError(source, f"response is larger than max_response_bytes {limit}")
        try:
            return json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise SourceError(source, f"the page is not JSON ({kind}): {exc}") from None

    def batches(self) -> Iterator[Batch | RejectedSource]:
        hook = _hook(self.settings)
        session = hook.get_conn(headers=self.settings.headers)
        session.stream = True  # bodies are read in chunks, so max_response_bytes bounds the memory used
        url: str | None = hook.url_from_endpoint(self.settings.endpoint)
        params: dict[str, Any] = dict(self.settings.params)
        pagination = self.settings.pagination
        if isinstance(pagination, PagePagination):
            params[pagination.page_param] = pagination.first_page
            if pagination.size_param:
                params[pagination.size_param] = pagination.size
        elif isinstance(pagination, OffsetPagination):
            params.update({pagination.offset_param: 0, pagination.limit_param: pagination.limit})
        records_seen = 0
        try:
            for page in range(1, self.settings.max_pages + 1):
                assert url is not None
                source = f"{url} (page {page})"
                try:
                    response = self._get(hook, session, url, params)
                    body = self._body(response, source)
                    found = dig(body, self.settings.records_path)
                except SourceError as exc:
                    yield RejectedSource(source, exc.reason)
                    return
                except KeyError as exc:
                    yield RejectedSource(source, f"records_path {exc.args[0]}")
                    return
                records = found if isinstance(found, list) else [found]
                bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
                if bad is not None:
                    yield RejectedSource(
                        source, f"record {bad} is a {type(records[bad]).__name__}, expected a JSON object"
                    )
                    return
                room = self.settings.max_records - records_seen
                if len(records) > room:
                    records = records[:room]
                records_seen += len(records)
                if records:
                    yield Batch(source, records)
                if not records or records_seen >= self.settings.max_records:
                    return
                url = self._next(pagination, response, body, params, len(records))
                if url is None:
                    return
        finally:
            session.close()

    def _next(
        self, pagination: Any, response: requests.Response, body: Any, params: dict[str, Any], count: int
    ) -> str | None:
        """The next page's URL, with ``params`` moved on; None on the last page."""
        url = response.url.split("?", 1)[0] if pagination is not None else None
        if isinstance(pagination, PagePagination):
            if count < pagination.size:
                return None
            params[pagination.page_param] += 1
        elif isinstance(pagination, OffsetPagination):
            if count < pagination.limit:
                return None
            params[pagination.offset_param] += count
        elif isinstance(pagination, CursorPagination):
            try:
                cursor = dig(body, pagination.cursor_path)
            except KeyError:
                return None
            if cursor in (None, ""):
                return None
            params[pagination.cursor_param] = cursor
        elif isinstance(pagination, NextLinkPagination):
            params.clear()  # the link carries its own query
            if pagination.next_link_path:
                try:
                    link = dig(body, pagination.next_link_path)
                except KeyError:
                    return None
            else:
                link = response.links.get("next", {}).get("url")
            if not link:
                return None
            from urllib.parse import urljoin

            return urljoin(response.url, str(link))
        return url
