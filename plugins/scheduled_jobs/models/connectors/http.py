"""``subscriber: {type: http}`` and ``publisher: {type: http}``: the request, its pagination, its retries."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from scheduled_jobs.models.base import StrictModel
from scheduled_jobs.models.connectors.base import ConnectorSettings
from scheduled_jobs.models.connectors.retry import RetrySettings

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ENDPOINT_FIELD = re.compile(r"{([^{}]+)}")
"""A ``{field}`` of an endpoint template, filled in per task."""


class HttpSettings(ConnectorSettings):
    """What the HTTP subscriber and publisher share: the connection, the request, its timeout and retries."""

    connection: str = Field(min_length=1)
    """The Airflow HTTP connection (base URL, auth, extra headers)."""
    method: Method = "GET"
    endpoint: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30, gt=0, le=600)
    """The total deadline of each try: connecting, sending and the whole answer (``connectors/deadline.py``)."""
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


class HttpSubscriberSettings(HttpSettings):
    """``subscriber: {type: http, ...}``: records from a JSON API, page after page."""

    type: Literal["http"] = "http"
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    records_path: str | None = None
    pagination: Pagination | None = None
    max_pages: int = Field(default=100, gt=0, le=100_000)
    max_records: int = Field(default=100_000, gt=0)
    max_response_bytes: int = Field(default=20_000_000, gt=0)
    """The most of one page that is read (default 20 MB); a larger page is rejected, never read whole."""


class HttpPublisherSettings(HttpSettings):
    """``publisher: {type: http, ...}``: one request per task, the payload as JSON body."""

    type: Literal["http"] = "http"
    method: Method = "POST"
    success_status_codes: list[int] = Field(default_factory=lambda: [200, 201, 202, 204], min_length=1)
    max_response_bytes: int = Field(default=1_048_576, gt=0)
    """The most of a destination's answer that is read (default 1 MiB); a longer answer fails the
    task as retryable, and the rest is never read."""
    idempotency_header: str = "Idempotency-Key"
    """Carries ``<route>-<task id>`` on every try, so a destination can drop a repeat."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_fields(cls, value: str) -> str:
        for name in ENDPOINT_FIELD.findall(value):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
                raise ValueError(f"{{{name}}} in {value!r} is not a field name (e.g. {{id}} or {{customer.id}})")
        return value
