"""The one exception hierarchy of the package.

Every user-facing error says where it comes from (the file), what it is about (the key) and why
(the reason), in the form ``path: key: reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class ScheduledJobsError(Exception):
    """Base class of every error this package raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in one file: printed as ``path: key: reason``."""

    path: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.key}: {self.reason}"


class InvalidDefinitionsError(ScheduledJobsError):
    """One or more job definitions or configurations are invalid."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in scheduled job files:"
        super().__init__("\n".join([header, *(str(p) for p in self.problems)]))


class SettingError(ScheduledJobsError):
    """A setting of ``[scheduled_jobs]`` cannot be used: ``problem`` says which, and why."""

    def __init__(self, section: str, key: str, reason: str) -> None:
        self.problem = Problem(f"[{section}]", key, reason)
        super().__init__(f"[{section}] {key}: {reason}")


class MissingSettingError(SettingError):
    """A setting of ``[scheduled_jobs]`` that has no default is not set."""


class InvalidSettingError(SettingError):
    """A setting of ``[scheduled_jobs]`` holds a value outside what it allows (a typo, a number out of range)."""


class StoreSchemaError(ScheduledJobsError):
    """The task store's schema is not the revision this version of the package needs."""


class UnknownJobError(ScheduledJobsError):
    """No job definition has the identifier or path the user asked for."""


class ConnectionUnusableError(ScheduledJobsError):
    """An Airflow connection the task store or a connector names cannot be used as it is set up."""


class SourceError(ScheduledJobsError):
    """A subscriber's source holds data that cannot be read (a malformed file, page or record)."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class DeliveryError(ScheduledJobsError):
    """A publisher could not deliver one task to its destination.

    ``retryable``: the destination may accept it later (timeouts, 5xx, 429), so a route that retries
    failed tasks tries it again on a later run; otherwise it is a permanent refusal (other 4xx). The
    store keeps it in the task's ``retryable`` column. ``status_code``: the destination's answer, where
    the publisher has one (HTTP), for the task's history.
    """

    def __init__(self, message: str, *, retryable: bool = False, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


class RequestRefusedError(ScheduledJobsError):
    """An HTTP request that did not succeed, after the retries it was worth.

    ``retryable`` as for ``DeliveryError``: the publisher passes it on, the subscriber names the page.
    ``status_code``: the response's, when there was one.
    """

    def __init__(self, problem: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(problem)
        self.retryable = retryable
        self.status_code = status_code


class IncomingRunError(ScheduledJobsError):
    """An incoming run stored what it could, but some sources were rejected."""


class WebhookRefusedError(ScheduledJobsError):
    """A request a webhook does not take: its HTTP status and a message saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
