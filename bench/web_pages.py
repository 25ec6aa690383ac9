"""How fast the Scheduled jobs page answers with 1,000 definitions, against Airflow's own DAG list.

Method: a fresh AIRFLOW_HOME (SQLite) with 1,000 job definitions (20 expression/time-zone pairs), the
DAGs written to the metadata database by ``airflow dags reserialize``; then Airflow's own API app
(``create_app``, the plugin mounted) answers, in process, as the admin:

- ours: ``GET /scheduled-jobs/jobs`` (the HTML page of 50, with fire times and last runs) and
  ``/scheduled-jobs/api/jobs?size=100``;
- the peer: Airflow's own DAG list of the same DAGs, ``GET /api/v2/dags?limit=50`` and ``limit=100``.

Median of 20 warm requests each. Usage: ``.venv/bin/python bench/web_pages.py``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = 1000
REPEATS = 20
EXPRESSIONS = ["* * * * *", "*/5 * * * *", "0 2 * * *", "30 6 * * 1-5", "0 */4 * * *"]
ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Tokyo"]


def prepare(home: Path) -> None:
    folder = home / "job_definitions"
    folder.mkdir(parents=True)
    (home / "configurations").mkdir()  # no routes: no real-time DAG beside the 1,000
    for n in range(DEFINITIONS):
        expression, zone = EXPRESSIONS[n % len(EXPRESSIONS)], ZONES[(n // len(EXPRESSIONS)) % len(ZONES)]
        (folder / f"job-{n:04d}.yaml").write_text(
            f"name: Job {n:04d}\njob: repair_stuck_tasks\nexpression: '{expression}'\ntimezone: {zone}\n"
        )
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(folder),
            "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(home / "configurations"),
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([airflow, *command], check=True, capture_output=True)


def median_seconds(client: object, path: str, headers: dict[str, str]) -> float:
    timings = []
    for _ in range(REPEATS + 1):
        started = time.perf_counter()
        answer = client.get(path, headers=headers)  # type: ignore[attr-defined]
        timings.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return statistics.median(timings[1:])  # the first is a cold start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sj-bench-web-") as tmp:
        prepare(Path(tmp))
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        client = TestClient(create_app())
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        headers = {"Authorization": f"Bearer {token}"}
        total = client.get("/api/v2/dags?limit=1", headers=headers).json()["total_entries"]
        assert total == DEFINITIONS, f"{total} DAGs serialized, expected {DEFINITIONS}"
        pairs = [
            ("HTML page of 50", "/scheduled-jobs/jobs", "/api/v2/dags?limit=50"),
            ("JSON, 100 jobs", "/scheduled-jobs/api/jobs?size=100", "/api/v2/dags?limit=100"),
        ]
        print(f"{DEFINITIONS} definitions, median of {REPEATS} warm requests")
        for label, ours, peer in pairs:
            mine, theirs = median_seconds(client, ours, headers), median_seconds(client, peer, headers)
            print(
                f"{label:>16}: Scheduled jobs {mine * 1000:7.1f} ms   Airflow DAG list {theirs * 1000:7.1f} ms"
                f"   ratio {mine / theirs:.2f}"
            )
        # Airflow's DAG list stops at [api] maximum_page_limit (100): no peer for all of them at once.
        every = median_seconds(client, f"/scheduled-jobs/api/jobs?size={DEFINITIONS}", headers)
        print(f"{'JSON, all 1,000':>16}: Scheduled jobs {every * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
