"""Webhooks under a real scheduler (``airflow standalone``): the API server only answers, Airflow exports.

The issue's attack: a destination that accepts connections and never answers, and 50 webhooks from
one User. Airflow's ``/api/v2/version`` and our ``/api/routes`` keep answering within two seconds, the
tasks wait in the store, and once the destination answers again the route's asset-scheduled export DAG
delivers every one of them, in far fewer DAG runs than webhooks, each with the route's priority.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from helpers.orders_to_erp import ROUTE, write_project
from helpers.sink import Sink
from helpers.standalone import Standalone

from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
DAG_ID = f"realtime_export.{ROUTE}"
ASSET = f"x-scheduled-jobs://routes/{ROUTE}"
WEBHOOKS = 50


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink(plan=lambda number, key: "hold").start()
    yield server
    server.stop()


@pytest.fixture
def airflow(tmp_path: Path, sink: Sink, airflow_metadata_url: str) -> Iterator[Standalone]:
    # Records of this incoming configuration only arrive by webhook: no subscriber, no job.
    definitions, configurations = write_project(
        tmp_path,
        publisher="  timeout_seconds: 120\n  retry: {attempts: 1}\n",
        route="realtime: true\npriority: 7\n",
    )
    with Standalone(
        tmp_path / "home",
        definitions=definitions,
        configurations=configurations,
        metadata_url=airflow_metadata_url,
        env={"AIRFLOW_CONN_SINK": sink.connection_env},
    ) as airflow:
        yield airflow


def timed_get(url: str, token: str) -> float:
    started = time.monotonic()
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    took = time.monotonic() - started
    assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
    return took


def test_a_held_destination_and_50_webhooks_leave_the_api_server_free_and_airflow_delivers(
    airflow: Standalone, sink: Sink
) -> None:
    user, viewer = airflow.token("user"), airflow.token("viewer")
    airflow.wait_for(airflow.dag_ready(DAG_ID, ASSET), 300, f"DAG {DAG_ID} and its asset")
    store = TaskStore.from_url(f"sqlite:///{airflow.store_path}")
    took = []
    for number in range(WEBHOOKS):
        started = time.monotonic()
        pushed = httpx.post(
            f"{airflow.url}/scheduled-jobs/webhooks/orders",
            json={"id": f"SO-{number}", "total": number},
            headers={"Authorization": f"Bearer {user}"},
            timeout=30,
        )
        took.append(round(time.monotonic() - started, 2))
        assert pushed.status_code == 202, (number, pushed.text)
        (handed,) = pushed.json()["realtime_exports"]
        assert isinstance(handed["asset_event_id"], int), handed
    # Each is a few tens of milliseconds. Once in a run, on SQLite, one waits as long as Airflow's own
    # execution API takes to start the export's task (PATCH /execution/task-instances/<id>/run, 2-7 s here).
    assert statistics.median(took) < 0.5, f"webhooks took {took} s"
    assert sink.held.wait(180), "Airflow never started the export\n" + airflow.log_tail()

    # The destination holds the export's request: the API server answers as if nothing were going on.
    probes = []
    for _ in range(5):
        probes.append(timed_get(f"{airflow.url}/api/v2/version", viewer))
        probes.append(timed_get(f"{airflow.url}/scheduled-jobs/api/routes", viewer))
    assert max(probes) < 2, f"the API server answered in up to {max(probes):.1f} s while the destination held"
    assert sink.holding == 1, "one export, one request in flight"
    assert store.counts(ROUTE)["finished"] == 0

    sink.plan = lambda number, key: "ok"  # the destination recovers
    sink.release.set()
    airflow.wait_for(lambda: store.counts(ROUTE)["finished"] == WEBHOOKS, 300, "every task delivered", every=1)
    assert sorted(sink.bodies) == sorted(f"{ROUTE}-{task['id']}" for task in store.list_tasks(ROUTE))
    assert sink.duplicates() == {}

    with airflow.metadata().connect() as conn:
        runs = conn.execute(sa.text("SELECT run_type, state FROM dag_run WHERE dag_id = :dag"), {"dag": DAG_ID}).all()
        weights = (
            conn.execute(
                sa.text("SELECT DISTINCT priority_weight FROM task_instance WHERE dag_id = :dag"), {"dag": DAG_ID}
            )
            .scalars()
            .all()
        )
        events = conn.execute(
            sa.text("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = :uri"),
            {"uri": ASSET},
        ).scalar()
    assert events == WEBHOOKS
    assert {run.run_type for run in runs} == {"asset_triggered"}
    assert 1 <= len(runs) <= 10, f"{len(runs)} export runs for {WEBHOOKS} webhooks: the events did not coalesce"
    assert {run.state for run in runs} <= {"success", "running", "queued"}
    assert weights == [7], "the export runs with the route's priority"
