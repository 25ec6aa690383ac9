"""``retry:`` of an HTTP connector: how often a transient failure is tried again in one run, and how long apart."""

from __future__ import annotations

import random

from pydantic import Field

from scheduled_jobs.models.base import StrictModel

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetrySettings(StrictModel):
    """``retry:`` of an HTTP connector: transient failures are retried with exponential backoff."""

    attempts: int = Field(default=4, ge=1, le=20)
    """Tries per request in one run, the first included."""
    backoff_seconds: float = Field(default=0.5, gt=0, le=60)
    max_backoff_seconds: float = Field(default=30, gt=0, le=600)
    max_retry_after_seconds: float = Field(default=120, ge=0, le=3600)
    """A longer Retry-After is not waited for: the request fails as transient (retried on a later run)."""

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based): exponential, with jitter."""
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return float(base * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not cryptography

    def worst_case_seconds(self, timeout_seconds: float) -> float:
        """How long one request can take with every try timing out and every wait at its longest."""
        waits = sum(min(self.max_backoff_seconds, self.backoff_seconds * 2.0**i) for i in range(self.attempts - 1))
        return float(self.attempts * timeout_seconds + max(waits, (self.attempts - 1) * self.max_retry_after_seconds))


def is_transient_status(status: int) -> bool:
    """An answer the destination may not give again later: retried within a run, and the task stays retryable."""
    return status in TRANSIENT_STATUS or status >= 500
