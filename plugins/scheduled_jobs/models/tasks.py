"""A task as the layers above the store see it: its statuses, and a claimed task handed to a publisher.

Here, not in the store, so that connectors publish a task without importing the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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
