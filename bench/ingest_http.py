"""Benchmark: ingest 100,000 entities from a paged loopback HTTP source into the task store, PostgreSQL and SQLite.

Our path: the operator's ingest loop (scheduled_jobs.ingesting.ingest): HttpSubscriber pages (1,000
records each, read ahead in a thread) -> entity keys -> TaskStore.add_entities, which also records each
entity's last content (the entity-key rule, so re-imports make no duplicate tasks): on PostgreSQL one
statement per page (store/ingest.py), on SQLite an upsert and an insert.

Its peers, in the same run, on the same store: a bare bulk INSERT of the same 100,000 task rows (prepared
in memory before the clock starts: no HTTP, no JSON, no hashing, no dedupe) through SQLAlchemy's
executemany, 1,000 rows per statement; and on PostgreSQL also COPY of those rows (psycopg2's
``copy_expert``), the fastest way in. Rounds interleave ours and the peers; best of ``--repeat`` and the
spread (slowest-fastest) are printed.
Usage: python bench/ingest_http.py [--entities 100000] [--store URL] [--sqlite PATH|none] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins")]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sj-bench-home-"))

from store_bench import emptied_store, parse_arguments, scratch_database, serve_in_process  # noqa: E402

from scheduled_jobs.connectors.http import HttpSubscriber, HttpSubscriberSettings  # noqa: E402
from scheduled_jobs.ingesting import ingest  # noqa: E402
from scheduled_jobs.store import TaskStore  # noqa: E402
from scheduled_jobs.store.schema import tasks  # noqa: E402
from scheduled_jobs.store.tasks import content_hash, utcnow  # noqa: E402

ROUTE = "bench-ingest"
PAGE = 1000


def entity(i: int) -> dict[str, Any]:
    return {"id": f"P-{i:07d}", "name": f"Product {i}", "price": round(i * 0.37, 2), "stock": i % 50}


def serve(total: int, ports: multiprocessing.Queue[int]) -> None:
    pages = {
        n: json.dumps({"data": [entity(i) for i in range((n - 1) * PAGE, min(n * PAGE, total))]}).encode()
        for n in range(1, total // PAGE + 2)
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            page = int(parse_qs(urlparse(self.path).query)["page"][0])
            body = pages.get(page, b'{"data": []}')
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports.put(server.server_address[1])
    server.serve_forever()


def ours(url: str) -> float:
    store = emptied_store(url)
    settings = HttpSubscriberSettings(
        type="http",
        connection="bench_source",
        endpoint="/products",
        records_path="data",
        pagination={"type": "page", "size": PAGE},  # type: ignore[arg-type]
        max_pages=100_000,
        max_records=10_000_000,
    )
    start = time.perf_counter()
    summary = ingest(store, HttpSubscriber(settings), [ROUTE], "id", incoming="bench")
    elapsed = time.perf_counter() - start
    assert not summary.rejected, summary.rejected
    return summary.tasks_created / elapsed


def bare(url: str, total: int) -> float:
    store = emptied_store(url)
    now = utcnow()
    rows = []
    for i in range(total):
        record = entity(i)
        rows.append(
            {
                "route": ROUTE,
                "entity_key": record["id"],
                "content_hash": content_hash(record),
                "payload": json.dumps(record),
                "status": "new",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    start = time.perf_counter()
    with store.engine.begin() as conn:
        for offset in range(0, total, PAGE):
            conn.execute(tasks.insert(), rows[offset : offset + PAGE])
    return total / (time.perf_counter() - start)


def copied(url: str, total: int) -> float:
    """The same rows through PostgreSQL's COPY (text format), one COPY per 1,000 rows as the others batch."""
    store = emptied_store(url)
    now = utcnow().isoformat(sep=" ")
    columns = "route, entity_key, content_hash, payload, status, attempts, created_at, updated_at"

    def field(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    lines = []
    for i in range(total):
        record = entity(i)
        values = [ROUTE, record["id"], content_hash(record), json.dumps(record), "new", "0", now, now]
        lines.append("\t".join(field(value) for value in values) + "\n")
    start = time.perf_counter()
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for offset in range(0, total, PAGE):
            cursor.copy_expert(
                f"COPY {tasks.name} ({columns}) FROM STDIN", io.StringIO("".join(lines[offset : offset + PAGE]))
            )
        raw.commit()
    finally:
        raw.close()
    return total / (time.perf_counter() - start)


def spread(rates: list[float]) -> str:
    return f"{max(rates):>9.0f} /s  (spread {min(rates):.0f}-{max(rates):.0f})"


def measure(label: str, url: str, total: int, repeat: int) -> None:
    postgres = url.startswith("postgresql")
    ingest, insert, copy = [], [], []
    for _ in range(repeat):
        ingest.append(ours(url))
        insert.append(bare(url, total))
        if postgres:
            copy.append(copied(url, total))
    print(f"{label}:")
    print(f"  ingest (HTTP pages -> tasks, with dedupe): {spread(ingest)}")
    print(f"  bare bulk INSERT of the same task rows:    {spread(insert)}")
    if postgres:
        print(f"  bare COPY of the same task rows:           {spread(copy)}")
        bare_indexes = without_console_indexes(url, repeat)
        print(f"  ingest, without the console's 4 indexes:   {spread(bare_indexes)}")
    print(f"  ratio to the bulk INSERT: {max(ingest) / max(insert):.2f} (aim >= 0.70)", end="")
    print(f"; to COPY: {max(ingest) / max(copy):.2f}" if postgres else "")


CONSOLE_INDEXES = (
    "ix_scheduled_jobs_task_entity_key_id",
    "ix_scheduled_jobs_task_created_at_id",
    "ix_scheduled_jobs_task_updated_at_id",
    "ix_scheduled_jobs_task_unfinished",
)


def without_console_indexes(url: str, repeat: int) -> list[float]:
    """Ours in a database whose task table lacks migration 0005's four indexes: what the console's searches
    cost ingest."""
    with scratch_database(url, "sj_bench_ingest_bare") as scratch:
        store = TaskStore.from_url(scratch)
        with store.engine.begin() as conn:
            for index in CONSOLE_INDEXES:
                conn.execute(sa.text(f"DROP INDEX {index}"))
        store.engine.dispose()
        return [ours(scratch) for _ in range(repeat)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--sqlite", default="", help="the SQLite file to measure too ('none': PostgreSQL only)")
    args = parse_arguments(parser)
    source, port = serve_in_process(serve, args.entities, timeout=120)
    os.environ["AIRFLOW_CONN_BENCH_SOURCE"] = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port})
    print(
        f"{args.entities} entities, pages of {PAGE}; {platform.machine()}, {os.cpu_count()} cores, "
        f"best of {args.repeat}"
    )
    with scratch_database(args.store, "sj_bench_ingest") as url:
        measure("PostgreSQL (a new database on the server of --store)", url, args.entities, args.repeat)
    if args.sqlite != "none":
        path = args.sqlite or str(Path(tempfile.mkdtemp(prefix="sj-bench-sqlite-")) / "store.db")
        measure(
            "SQLite (WAL, synchronous=NORMAL, as the store opens it)", f"sqlite:///{path}", args.entities, args.repeat
        )
    source.terminate()


if __name__ == "__main__":
    main()
