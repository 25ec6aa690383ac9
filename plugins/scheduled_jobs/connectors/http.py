"""HTTP connectors through Airflow HTTP connections (``HttpHook``): a paginated subscriber and a publisher.

Base URL and credentials live in the connection; YAML only names it. Each thread gets its own
``requests`` session from the hook, so connections are reused across requests.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urljoin, urlsplit

from scheduled_jobs import jsondata
from scheduled_jobs.connectors.base import Batch, Publisher, RejectedSource, Subscriber, dig
from scheduled_jobs.connectors.deadline import current, deadline
from scheduled_jobs.exceptions import DeliveryError, RequestRefusedError, SourceError
from scheduled_jobs.models.connectors.http import (
    ENDPOINT_FIELD,
    CursorPagination,
    HttpPublisherSettings,
    HttpSettings,
    HttpSubscriberSettings,
    NextLinkPagination,
    OffsetPagination,
    PagePagination,
)
from scheduled_jobs.models.connectors.retry import is_transient_status
from scheduled_jobs.models.tasks import idempotency_key
from scheduled_jobs.redaction import Redactor, clean_url, printable, redactor_for, shown

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterator

    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from scheduled_jobs.models.tasks import ClaimedTask

BODY_EXCERPT_CHARACTERS = 500
"""How much of a refusing answer's body an error keeps: enough to say why, never a whole page."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _hook(settings: HttpSettings, accepted: Callable[[int], bool]) -> HttpHook:
    """A hook whose sessions retry as ``settings.retry`` says, statuses ``accepted`` never retried."""
    from airflow.providers.http.hooks.http import HttpHook

    from scheduled_jobs.connectors.retry import adapter_for

    return HttpHook(
        method=settings.method, http_conn_id=settings.connection, adapter=adapter_for(settings.retry, accepted)
    )


def _redactor(hook: HttpHook, settings: HttpSettings) -> Redactor:
    """The redactor of the connection's secrets: its extra is sent as headers, so each value is one."""
    return redactor_for(hook.get_connection(settings.connection), headers_from_extra=True)


def _body_excerpt(response: requests.Response, redact: Redactor) -> str:
    """The start of a refusing answer's body, redacted: it may echo the request, credentials included."""
    import requests

    window = 4 * (BODY_EXCERPT_CHARACTERS + redact.longest)  # bytes; a UTF-8 character takes up to 4
    head = bytearray()
    whole = True
    try:
        for chunk in response.iter_content(chunk_size=8192):
            head += chunk
            if len(head) > window:
                whole = False
                break
    except requests.RequestException:  # the body broke off: what arrived says enough
        whole = False
    finally:
        response.close()
    text = bytes(head[:window]).decode("utf-8", errors="replace")
    return printable(redact.excerpt(text, BODY_EXCERPT_CHARACTERS, whole=whole))


class AnswerRefusedError(Exception):
    """An answer not read whole: over its size limit, past its deadline, or broken off. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _cut_off(settings: HttpSettings) -> str:
    return f"no complete answer within timeout_seconds {settings.timeout_seconds:g} s, so it was cut off there"


def read_body(response: requests.Response, settings: HttpSettings, limit: int) -> bytes:
    """The answer's body, read in chunks: at most ``limit`` bytes, before the try's deadline.

    ``AnswerRefusedError`` otherwise, and the connection is dropped, not kept for a next request with
    half an answer in it. A body that ended after the deadline passed counts as cut off: a socket the
    watchdog shut down looks like the end of an answer without a length.
    """
    import requests

    found = current()
    try:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise AnswerRefusedError(f"response of {declared} bytes is larger than max_response_bytes {limit}")
        content = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=65536):
                content += chunk
                if len(content) > limit:
                    raise AnswerRefusedError(f"response is larger than max_response_bytes {limit}")
                if found is not None and found.passed():
                    raise AnswerRefusedError(_cut_off(settings))
        except requests.RequestException as exc:
            if found is not None and found.passed():
                raise AnswerRefusedError(_cut_off(settings)) from None
            raise AnswerRefusedError(f"the answer broke off ({type(exc).__name__})") from None
        if found is not None and found.expired:
            raise AnswerRefusedError(_cut_off(settings))
    except AnswerRefusedError:
        response.close()
        raise
    return bytes(content)


def _network_reason(exc: BaseException) -> str:
    """The operating system's reason under a requests exception ("Connection refused"), else "".

    Not the exception's text: it names the URL, and a URL may carry credentials.
    """
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and isinstance(current.strerror, str) and current.strerror:
            return current.strerror
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        queue += [e for e in linked if isinstance(e, BaseException)]
    return ""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port filled in for http and https; ValueError for a bad port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or _DEFAULT_PORTS.get(scheme)


def _shown_origin(found: tuple[str, str, int | None]) -> str:
    scheme, host, port = found
    return printable(f"{scheme}://{host}" + (f":{port}" if port is not None else ""))


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


def _failure(exc: requests.RequestException) -> tuple[str, bool]:
    """(name, retried) of a network failure: ``retried`` when urllib3 gave up after its tries.

    requests reports a read timeout urllib3 gave up on as a ConnectionError: it is named a ReadTimeout,
    as when it happens once.
    """
    from urllib3.exceptions import MaxRetryError, ReadTimeoutError

    cause = exc.args[0] if exc.args else None
    if not isinstance(cause, MaxRetryError):  # e.g. the body broke off after the headers: not retried
        return type(exc).__name__, False
    return ("ReadTimeout" if isinstance(cause.reason, ReadTimeoutError) else type(exc).__name__), True


def send(
    hook: HttpHook,
    session: requests.Session,
    request: requests.Request,
    settings: HttpSettings,
    *,
    accepted: Callable[[int], bool],
    url: str,
    redact: Redactor,
) -> requests.Response:
    """Send through the hook, whose adapter retries transient failures (``connectors/retry.py``).

    Raises ``RequestRefusedError`` for a permanent refusal (a 4xx other than 408/425/429, tried once), and
    for a transient one after the last try or at once for a Retry-After over the limit. Its text is built
    from parts chosen here (method, URL without its credentials, status, the start of the body) and
    redacted: a destination may echo what it was sent.
    """
    import requests

    from scheduled_jobs.connectors.retry import ConnectorRetry

    tries = f"(after {settings.retry.attempts} tries)"
    where = redact(f"{settings.method} {clean_url(url)}")
    # Streamed: the caller reads the body with read_body(), in chunks, within its limit and deadline.
    # "stream" is also passed as an option for the HTTP providers that read it from there.
    session.stream = True
    options = {
        "timeout": settings.timeout_seconds,
        "check_response": False,
        "allow_redirects": False,
        "stream": True,
    }
    try:
        response = hook.run_and_check(session, session.prepare_request(request), options)
    except (requests.ConnectionError, requests.Timeout) as exc:
        name, retried = _failure(exc)
        found = current()
        if found is not None and found.expired:  # the watchdog cut the last try off
            problem = f"{where}: {_cut_off(settings)}"
        else:
            reason = _network_reason(exc)
            problem = f"{name} on {where}" + (f": {redact(reason)}" if reason else "")
        raise RequestRefusedError(f"{problem} {tries}" if retried else problem, retryable=True) from None
    if accepted(response.status_code):
        return cast("requests.Response", response)
    retries = getattr(session.get_adapter(url), "max_retries", None)
    too_long = retries.retry_after_over_limit(response.raw) if isinstance(retries, ConnectorRetry) else None
    problem = f"HTTP {response.status_code} from {where}: {_body_excerpt(response, redact)}"
    if not is_transient_status(response.status_code):
        raise RequestRefusedError(problem, retryable=False, status_code=response.status_code)
    if too_long is not None:
        raise RequestRefusedError(
            f"{problem} (Retry-After {too_long:.0f} s is longer than the limit)",
            retryable=True,
            status_code=response.status_code,
        )
    raise RequestRefusedError(f"{problem} {tries}", retryable=True, status_code=response.status_code)


class HttpPublisher(Publisher[HttpPublisherSettings]):
    def __init__(self, settings: HttpPublisherSettings) -> None:
        super().__init__(settings)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._redactor: Redactor | None = None

    def redact(self, text: str) -> str:
        # Before the first request the connection was not read, so no text can hold its secrets yet.
        return (self._redactor or Redactor())(text)

    def _session(self) -> tuple[HttpHook, requests.Session]:
        """This thread's hook and session: a hook mounts one connection pool, so threads do not share one."""
        found: tuple[HttpHook, requests.Session] | None = getattr(self._local, "pair", None)
        if found is None:
            hook = _hook(self.settings, self._accepted)
            with self._lock:
                if self._redactor is None:  # known before anything is sent, so before anything can echo it
                    self._redactor = _redactor(hook, self.settings)
            session = hook.get_conn(headers=self.settings.headers)
            found = self._local.pair = (hook, session)
            with self._lock:
                self._sessions.append(session)
        return found

    def _field(self, task: ClaimedTask, name: str) -> str:
        if name in ("entity_key", "task_id", "route"):
            return str({"entity_key": task.entity_key, "task_id": task.id, "route": task.route}[name])
        try:
            return str(dig(task.payload, name))
        except KeyError:
            raise DeliveryError(f"endpoint {self.settings.endpoint!r}: the entity has no field {name!r}") from None

    def endpoint_for(self, task: ClaimedTask) -> str:
        """The endpoint with the task's values filled in, each one URL-encoded.

        A value in the path can never choose another resource: one that is empty, ``.`` or ``..``, or
        holds a ``/`` or ``\\`` (which servers may decode back into a separator), is refused, because
        requests collapses dot segments and ``/api/customers/../orders/..`` would reach ``/api/``.
        """
        template = self.settings.endpoint
        path, question, query = template.partition("?")

        def path_value(match: re.Match[str]) -> str:
            value = self._field(task, match.group(1))
            if value in ("", ".", "..") or "/" in value or "\\" in value:
                raise DeliveryError(
                    f"endpoint {template!r}: {{{match.group(1)}}} is {shown(value, 80)}, which would change the "
                    "path's segments, so nothing was sent; a value in the path may not be empty, '.' or '..', "
                    "nor hold '/' or '\\'"
                )
            return quote(value, safe="")

        segments = []
        for segment in path.split("/"):
            filled = ENDPOINT_FIELD.sub(path_value, segment)
            if filled != segment and filled in (".", ".."):  # e.g. "{a}{b}" filled with "." and "."
                raise DeliveryError(
                    f"endpoint {template!r}: the segment {segment!r} becomes {filled!r}, which would change the "
                    "path's segments, so nothing was sent"
                )
            segments.append(filled)
        filled_query = ENDPOINT_FIELD.sub(lambda m: quote(self._field(task, m.group(1)), safe=""), query)
        return "/".join(segments) + question + filled_query

    def _accepted(self, status: int) -> bool:
        return status in self.settings.success_status_codes

    def publish(self, task: ClaimedTask) -> int:
        """Send one task; its response's status code. ``DeliveryError`` (with the status code, when a
        response came) when it was refused."""
        from requests import Request

        hook, session = self._session()
        url = hook.url_from_endpoint(self.endpoint_for(task))
        headers = {self.settings.idempotency_header: idempotency_key(task)}
        request = Request(self.settings.method, url, json=task.payload, headers=headers)
        redact = self._redactor or Redactor()
        # The whole answer is read (so that its connection can be kept alive), within the try's deadline.
        with deadline(self.settings.timeout_seconds):
            try:
                response = send(hook, session, request, self.settings, accepted=self._accepted, url=url, redact=redact)
            except RequestRefusedError as exc:
                raise DeliveryError(str(exc), retryable=exc.retryable, status_code=exc.status_code) from None
            try:
                read_body(response, self.settings, self.settings.max_response_bytes)
            except AnswerRefusedError as exc:
                where = redact(f"{self.settings.method} {clean_url(url)}")
                raise DeliveryError(
                    f"{where}: HTTP {response.status_code}, but {exc.reason}; it counts as not delivered",
                    retryable=True,
                    status_code=response.status_code,
                ) from None
        return int(response.status_code)

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


class HttpSubscriber(Subscriber[HttpSubscriberSettings]):
    """Reads pages until one is empty or the pagination says it was the last (or ``max_pages``)."""

    _redactor = Redactor()

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def _rejected(self, source: str, reason: str) -> RejectedSource:
        return RejectedSource(printable(self.redact(source)), printable(self.redact(reason)))

    def _get(self, hook: HttpHook, session: requests.Session, url: str, params: dict[str, Any]) -> requests.Response:
        from requests import Request

        try:
            request = Request(self.settings.method, url, params=params)
            return send(hook, session, request, self.settings, accepted=_is_2xx, url=url, redact=self._redactor)
        except RequestRefusedError as exc:
            raise SourceError(url, str(exc)) from None

    def _body(self, response: requests.Response, source: str) -> Any:
        try:
            content = read_body(response, self.settings, self.settings.max_response_bytes)
        except AnswerRefusedError as exc:
            raise SourceError(source, exc.reason) from None
        try:
            return jsondata.loads(content)
        except ValueError as exc:
            kind = printable(response.headers.get("Content-Type", "no content type"))[:80]
            raise SourceError(source, f"the page is refused ({kind}): {exc}") from None

    def batches(self) -> Iterator[Batch | RejectedSource]:
        hook = _hook(self.settings, _is_2xx)
        self._redactor = _redactor(hook, self.settings)  # before anything is sent, so before anything can echo it
        session = hook.get_conn(headers=self.settings.headers)
        url: str | None = hook.url_from_endpoint(self.settings.endpoint)
        assert url is not None
        home = origin(url)
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
                source = self.redact(f"{clean_url(url)} (page {page})")
                try:
                    with deadline(self.settings.timeout_seconds):  # each try of the page, its body included
                        response = self._get(hook, session, url, params)
                        body = self._body(response, source)
                    found = dig(body, self.settings.records_path)
                except SourceError as exc:
                    yield self._rejected(source, exc.reason)
                    return
                except KeyError as exc:
                    yield self._rejected(source, f"records_path {exc.args[0]}")
                    return
                except Exception as exc:  # e.g. a header requests refuses: this page's problem, not the run's
                    reason = self.redact(f"the page could not be read ({type(exc).__name__}: {exc})")[:500]
                    yield self._rejected(source, reason)  # cut after redacting, so no secret is half-kept
                    return
                records = found if isinstance(found, list) else [found]
                bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
                if bad is not None:
                    yield self._rejected(
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
                try:
                    url = self._next(pagination, response, body, params, len(records), home=home)
                except SourceError as exc:  # a link to another host: the pages before it are stored
                    yield self._rejected(f"{exc.source} (page {page + 1})", exc.reason)
                    return
                if url is None:
                    return
        finally:
            session.close()

    def _next(
        self,
        pagination: Any,
        response: requests.Response,
        body: Any,
        params: dict[str, Any],
        count: int,
        *,
        home: tuple[str, str, int | None],
    ) -> str | None:
        """The next page's URL, with ``params`` moved on; None on the last page.

        A next link comes from the source's answer, and the session sends the connection's credentials
        with every request: a link that leaves the connection's scheme, host and port is refused
        (``SourceError``) before anything is sent to it.
        """
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
            target = urljoin(response.url, str(link))
            try:
                going = origin(target)
            except ValueError:
                raise SourceError(
                    clean_url(target), f"the next link {shown(str(link), 80)} has no valid host"
                ) from None
            if going != home:
                raise SourceError(
                    clean_url(target),
                    f"the next link goes to {_shown_origin(going)}, not to the connection's {_shown_origin(home)}; "
                    "the connection's credentials go only to its own scheme, host and port, so the run stops "
                    "here and nothing was sent there",
                )
            return target
        return url
