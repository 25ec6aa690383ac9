"""Time from a webhook's POST to its task delivered by Airflow, under ``airflow standalone``.

Method: ``airflow standalone`` on a fresh home (SQLite metadata database and task store, LocalExecutor),
one webhook-only incoming configuration and one real-time route to a loopback HTTP sink (the test
suite's ``Sink``, a threaded server in this process). A User's token from ``POST /auth/token``. One
webhook as warm-up, then 10 webhooks of one entity each, one after the other, each sent once the
previous one's export run has finished (the route idle: the common case of a webhook now and then).
For each: POST → 202, and POST → the sink received the task. The parts come from Airflow's metadata
database: the asset event's time, its DAG run's creation (``queued_at``), the export task's start.

Usage: ``.venv/bin/python bench/webhook_latency.py [--samples 10] [--env KEY=VALUE ...]``
(``--env AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.2`` to try a documented setting).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from helpers.orders_to_erp import ROUTE, write_project  # noqa: E402
from helpers.sink import Sink  # noqa: E402
from helpers.standalone import Standalone  # noqa: E402

DAG_ID = f"realtime_export.{ROUTE}"
ASSET = f"x-scheduled-jobs://routes/{ROUTE}"


def idle(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        busy = conn.execute(
            sa.text("SELECT count(*) FROM dag_run WHERE dag_id = :dag AND state IN ('queued', 'running')"),
            {"dag": DAG_ID},
        ).scalar()
    return not busy


def parts(engine: sa.Engine, event_id: int) -> dict[str, float]:
    """Seconds from the asset event to its DAG run's creation, and from there to the export task's start."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT e.timestamp AS event, r.queued_at AS created, t.start_date AS started "
                "FROM asset_event e JOIN dagrun_asset_event d ON d.event_id = e.id "
                "JOIN dag_run r ON r.id = d.dag_run_id "
                "JOIN task_instance t ON t.dag_id = r.dag_id AND t.run_id = r.run_id WHERE e.id = :id"
            ),
            {"id": event_id},
        ).one()

    def moment(value: str | dt.datetime) -> dt.datetime:
        return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))

    event, created, started = (moment(v) for v in row)
    return {
        "event → run created": (created - event).total_seconds(),
        "run created → task started": (started - created).total_seconds(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for airflow standalone")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    sink = Sink().start()
    with tempfile.TemporaryDirectory(prefix="sj-bench-webhook-") as tmp:
        # A webhook-only incoming configuration (no subscriber, no job) and a real-time route.
        definitions, configurations = write_project(Path(tmp), route="realtime: true\n")
        airflow = Standalone(
            Path(tmp) / "home",
            definitions=definitions,
            configurations=configurations,
            env={"AIRFLOW_CONN_SINK": sink.connection_env, **extra},
        ).start()
        try:
            token = airflow.token("user")
            airflow.wait_for(airflow.dag_ready(DAG_ID, ASSET), 300, f"DAG {DAG_ID} and its asset")
            engine = airflow.metadata()
            answered, delivered, split = [], [], []
            for number in range(args.samples + 1):  # the first one warms the plugin's app and the store up
                airflow.wait_for(lambda: idle(engine), 120, "the previous export run to finish", every=0.2)
                key_count = len(sink.received)
                started = time.monotonic()
                pushed = httpx.post(
                    f"{airflow.url}/scheduled-jobs/webhooks/orders",
                    json={"id": f"SO-{number}"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                )
                took = time.monotonic() - started
                assert pushed.status_code == 202, pushed.text
                while len(sink.received) == key_count:
                    assert time.monotonic() - started < 300, "not delivered within 300 s\n" + airflow.log_tail()
                    time.sleep(0.005)
                arrived = time.monotonic() - started
                if number == 0:
                    continue
                answered.append(took)
                delivered.append(arrived)
                split.append(parts(engine, pushed.json()["realtime_exports"][0]["asset_event_id"]))
                print(f"webhook {number:2d}: 202 in {took * 1000:.0f} ms, delivered after {arrived:.2f} s")
        finally:
            airflow.stop()
            sink.stop()
    print(f"\nmachine: {platform.machine()}, Python {platform.python_version()}; settings: {extra or 'defaults'}")
    print(
        f"median of {len(delivered)}: POST → delivered {statistics.median(delivered):.2f} s "
        f"(min {min(delivered):.2f}, max {max(delivered):.2f}); POST → 202 {statistics.median(answered) * 1000:.0f} ms"
    )
    for name in split[0]:
        print(f"  median {name}: {statistics.median(s[name] for s in split):.2f} s")


if __name__ == "__main__":
    main()
