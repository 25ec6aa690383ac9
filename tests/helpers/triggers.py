"""Manual runs through Airflow's REST API (``POST /api/v2/dags/{dag_id}/dagRuns``), as the UI's Trigger button.

What ``airflow dags trigger`` does, without starting an ``airflow`` process (several seconds of imports on
a 2-core machine) for each run: several runs are asked for from threads released together.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def trigger(url: str, token: str, dag_id: str, conf: dict[str, Any] | None = None, *, wait_seconds: float = 0) -> str:
    """A manual run of ``dag_id`` (logical date none, as the CLI's); its run id.

    ``wait_seconds``: how long a DAG the API server does not know yet (404: just parsed) is asked for again.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        answer = httpx.post(
            f"{url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if answer.status_code != 404 or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, (dag_id, answer.status_code, answer.text[:500])
    return str(answer.json()["dag_run_id"])


def trigger_together(url: str, token: str, runs: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    """A manual run of each (dag_id, conf), the requests sent at the same moment; their run ids, in order."""
    start = threading.Barrier(len(runs))

    def one(run: tuple[str, dict[str, Any] | None]) -> str:
        start.wait(timeout=60)
        return trigger(url, token, *run)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(one, runs))
