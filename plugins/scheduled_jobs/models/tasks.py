"""A task as the layers above the store see it: its statuses, and a claimed task handed to a publisher.

Here, not in the store, so that connectors publish a task without importing the store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol


class TaskStatus(StrEnum):
    NEW = "new"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    route: str
    entity_key: str
    payload: Any
    attempts: int
    claim_token: str


class _RouteTask(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def route(self) -> str: ...


def idempotency_key(task: _RouteTask) -> str:
    """``<route>-<task id>``: the same on every try of a task, so a destination can drop a repeat."""
    return f"{task.route}-{task.id}"


@dataclass(frozen=True)
class Actor:
    """Who did something to a task: a job's run (an Airflow task try), a webhook call, or a user's action.

    Stored as compact JSON in ``created_by``/``claimed_by`` and in each event's ``actor``; the pages turn a
    run into links to Airflow's run and its log.
    """

    kind: Literal["run", "webhook", "user"]
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    user: str | None = None

    def to_json(self) -> str:
        values = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(values, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> Actor | None:
        """The actor a column holds; None for none, or for a value this version cannot read."""
        if not text:
            return None
        try:
            values = json.loads(text)
            return cls(**values) if isinstance(values, dict) else None
        except (ValueError, TypeError):
            return None

    def label(self) -> str:
        if self.kind == "run":
            return f"run {self.run_id} of {self.dag_id}" + (f" (try {self.try_number})" if self.try_number else "")
        if self.kind == "webhook":
            return f"webhook ({self.user})" if self.user else "webhook"
        return f"user {self.user}"
