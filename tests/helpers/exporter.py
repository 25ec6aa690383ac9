"""One exporter process for the reliability tests: ``python -m helpers.exporter STORE_URL ROUTE [options]``.

``--crash-at claimed`` kills itself (SIGKILL) right after its first claim commits, before any push;
``--crash-at pushed`` kills itself after N pushes, before they are settled.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings
from scheduled_jobs.exporting import export_route
from scheduled_jobs.store import ClaimedTask, TaskStore


class CrashingPublisher(HttpPublisher):
    def __init__(self, settings: HttpPublisherSettings, crash_at: str | None, after: int) -> None:
        super().__init__(settings)
        self.crash_at = crash_at
        self.after = after
        self.pushed = 0

    def publish(self, task: ClaimedTask) -> None:
        if self.crash_at == "claimed":
            os.kill(os.getpid(), signal.SIGKILL)
        super().publish(task)
        self.pushed += 1
        if self.crash_at == "pushed" and self.pushed >= self.after:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("route")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--crash-at", choices=["claimed", "pushed"], default=None)
    parser.add_argument("--after", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5)
    args = parser.parse_args()
    settings = HttpPublisherSettings(
        type="http",
        connection="sink",
        endpoint="/orders/{entity_key}",
        timeout_seconds=args.timeout,
        retry={"attempts": 4, "backoff_seconds": 0.05, "max_backoff_seconds": 0.5},  # type: ignore[arg-type]
    )
    publisher: Any = CrashingPublisher(settings, args.crash_at, args.after)
    result = export_route(
        TaskStore.from_url(args.store), publisher, args.route, limit=args.limit, concurrency=args.concurrency
    )
    print(result.as_dict(), file=sys.stderr)


if __name__ == "__main__":
    main()
