"""Benchmark: export 10,000 tasks to a loopback HTTP sink, against a bare HTTP client loop.

Both send the same 10,000 JSON bodies with the same idempotency header to the same sink (a threaded
Python HTTP server in its own process), in the same run, at concurrency 1 and 16. The export also claims and settles every task in the store (PostgreSQL
by default). Usage: python bench/export_http.py [--tasks 10000] [--store URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sj-bench-home-"))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from helpers.sink import Sink  # noqa: E402
from store_bench import emptied_store, parse_arguments, serve_in_process  # noqa: E402

from scheduled_jobs.connectors.http import HttpPublisher, HttpPublisherSettings  # noqa: E402
from scheduled_jobs.exporting import export_route  # noqa: E402
from scheduled_jobs.store import TaskStore  # noqa: E402

ROUTE = "bench-route"


def payloads(count: int) -> list[dict[str, object]]:
    return [
        {"id": f"SO-{i:06d}", "customer": f"Customer {i}", "total": i * 1.5, "lines": [{"sku": "X", "qty": 1}]}
        for i in range(count)
    ]


def bare_loop(port: int, bodies: list[dict[str, object]], concurrency: int) -> float:
    local = threading.local()

    def send(index: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = bodies[index]
        response = session.post(
            f"http://127.0.0.1:{port}/orders/{body['id']}",
            json=body,
            headers={"Idempotency-Key": f"bare-{index}"},
            timeout=30,
        )
        assert response.status_code == 201

    start = time.perf_counter()
    if concurrency == 1:
        for index in range(len(bodies)):
            send(index)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, range(len(bodies))))
    return time.perf_counter() - start


def our_export(store: TaskStore, bodies: list[dict[str, object]], concurrency: int) -> float:
    store.add_entities([ROUTE], [(str(b["id"]), b) for b in bodies])
    publisher = HttpPublisher(HttpPublisherSettings(type="http", connection="bench_sink", endpoint="/orders/{id}"))
    start = time.perf_counter()
    result = export_route(store, publisher, ROUTE, concurrency=concurrency)
    elapsed = time.perf_counter() - start
    assert result.exported == len(bodies), result
    return elapsed


def serve_sink(port_queue: multiprocessing.Queue[int]) -> None:
    """The sink in its own process: it should not share the client's interpreter lock."""
    sink = Sink().start()
    port_queue.put(sink.port)
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parse_arguments(parser)
    sink_process, port = serve_in_process(serve_sink, timeout=30)
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
    os.environ["AIRFLOW_CONN_BENCH_SINK"] = json.dumps(connection)
    bodies = payloads(args.tasks)
    print(
        f"{args.tasks} tasks to a loopback sink; store {sa.engine.make_url(args.store).get_backend_name()}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; best of {args.repeat}"
    )
    print(f"{'concurrency':>11}{'bare loop/s':>14}{'export/s':>12}{'ratio':>8}")
    for concurrency in (1, 16):
        bare, ours = [], []
        for _ in range(args.repeat):  # interleaved, best of N: the machine's noise hits both alike
            bare.append(args.tasks / bare_loop(port, bodies, concurrency))
            ours.append(args.tasks / our_export(emptied_store(args.store), bodies, concurrency))
        print(f"{concurrency:>11}{max(bare):>14.0f}{max(ours):>12.0f}{max(ours) / max(bare):>8.2f}")
    sink_process.terminate()


if __name__ == "__main__":
    main()
