"""Fuzz: random and hostile files and pages through the real subscribers, ingest loop and store.

Each input is either stored whole (every record of it a task, exactly as sent) or rejected with a reason
(a file in ``rejected/`` with its ``.error.txt``, a page error after the earlier pages were stored); the
run always goes on to the next input, and a plain input is never refused.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
import sqlalchemy as sa
from helpers import hostile
from hypothesis import strategies as st

from scheduled_jobs.connectors.files import FileSubscriber, FileSubscriberSettings
from scheduled_jobs.connectors.http import HttpSubscriber, HttpSubscriberSettings
from scheduled_jobs.ingesting import ingest
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_httpserver import HTTPServer

SETTINGS = hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_api() -> Iterator[HTTPServer]:
    """A loopback API behind the Airflow connection ``fuzz_api``, one server for every example."""
    import os

    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http"}
    os.environ["AIRFLOW_CONN_FUZZ_API"] = json.dumps(connection)
    yield server
    del os.environ["AIRFLOW_CONN_FUZZ_API"]
    server.stop()


def _stored(store: TaskStore) -> dict[str, Any]:
    return {task["entity_key"]: json.loads(task["payload"]) for task in store.list_tasks("r")}


def _reset(store: TaskStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scheduled_jobs_task"))
        conn.execute(sa.text("DELETE FROM scheduled_jobs_entity"))


@st.composite
def inbox_files(draw: st.DrawFn) -> tuple[str, bytes, list[dict[str, Any]] | None]:
    """(file name, bytes, the records a plain reader finds when it is plain, else None)."""
    kind = draw(st.sampled_from(["json", "jsonl", "csv"]))
    records = draw(st.lists(hostile.records(), min_size=1, max_size=4))
    if kind == "json":
        text = hostile.dumps(records)
    elif kind == "jsonl":
        text = "\n".join(hostile.dumps(record) for record in records) + "\n"
    else:
        columns = sorted({name for record in records for name in record if "\x00" not in name}) or [hostile.KEY]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        for record in records:
            writer.writerow([str(record.get(name, "")) for name in columns])
        text = out.getvalue()
        records = [dict(zip(columns, [str(r.get(n, "")) for n in columns], strict=True)) for r in records]
    data = draw(hostile.mangled(text))
    plain = data == text.encode("utf-8", "surrogatepass") and all(hostile.plain(r) for r in records)
    if kind == "csv" and "\x00" in text:  # CSV is text: a NUL byte marks a binary or UTF-16 file, refused
        plain = False
    return kind, data, records if plain else None


def _read_back(kind: str, data: bytes) -> list[dict[str, Any]]:
    """The records of a file the subscriber took, read with the standard library."""
    text = data.decode("utf-8")
    if kind == "json":
        document = json.loads(text)
        return document if isinstance(document, list) else [document]
    if kind == "jsonl":
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    return [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]


@SETTINGS
@hypothesis.given(files=st.lists(inbox_files(), min_size=1, max_size=4))
def test_fuzz_every_file_is_stored_whole_or_rejected_with_a_reason(
    files: list[tuple[str, bytes, list[dict[str, Any]] | None]],
) -> None:
    base = Path(tempfile.mkdtemp(prefix="sj-fuzz-"))
    try:
        store = TaskStore.from_url(f"sqlite:///{base / 'store.db'}")
        inbox = base / "inbox"
        inbox.mkdir()
        names = []
        for number, (kind, data, _) in enumerate(files):
            names.append(f"{number}.{kind}")
            (inbox / names[-1]).write_bytes(data)
        (inbox / "9.json").write_text('[{"id": "the-good-one", "n": 1}]')
        settings = FileSubscriberSettings(type="file", base_folder=str(inbox), pattern="*", settle_seconds=0)

        summary = ingest(store, FileSubscriber(settings), ["r"], hostile.KEY)  # never raises

        processed = {path.name for path in (inbox / "processed").glob("*")}
        rejected = {path.name for path in (inbox / "rejected").glob("*") if not path.name.endswith(".error.txt")}
        assert "9.json" in processed, summary.rejected
        assert processed | rejected == {*names, "9.json"} and not processed & rejected
        assert sorted(Path(r["source"]).name for r in summary.rejected) == sorted(rejected)
        expected: dict[str, Any] = {}
        for name, (kind, data, plain) in zip(names, files, strict=True):
            hypothesis.event(f"{kind} {'rejected' if name in rejected else 'stored'}")
            if name in rejected:
                reason = (inbox / "rejected" / f"{name}.error.txt").read_text(encoding="utf-8")
                assert 0 < len(reason) < 400, reason
                assert plain is None, f"{name}: a plain file was rejected: {reason}"
                continue
            for record in _read_back(kind, data):
                expected[str(record[hostile.KEY])] = record
        expected["the-good-one"] = {"id": "the-good-one", "n": 1}
        assert _stored(store) == expected, "a taken file was not stored whole"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@st.composite
def api_pages(draw: st.DrawFn) -> tuple[bytes, list[dict[str, Any]] | None]:
    """(the page's bytes, its records when it is a plain page a subscriber must take)."""
    records = draw(st.lists(hostile.records(), min_size=1, max_size=PAGE_SIZE))
    text = hostile.dumps(records)
    data = draw(hostile.mangled(text))
    plain = data == text.encode("utf-8", "surrogatepass") and all(hostile.plain(r) for r in records)
    return data, records if plain else None


PAGE_SIZE = 3


def _stops_paging(reason: str) -> bool:
    """The subscriber's own refusals (not JSON, not objects) stop the paging; a page whose records the
    ingest loop refuses ("record 2: a record has no entity key 'id'") is rejected and paging goes on."""
    return reason.startswith("the page is refused") or re.match(r"record \d+ is a ", reason) is not None


@SETTINGS
@hypothesis.given(pages=st.lists(api_pages(), min_size=1, max_size=4))
def test_fuzz_every_page_is_stored_whole_or_rejected_with_a_reason(
    pages: list[tuple[bytes, list[dict[str, Any]] | None]], fuzz_api: HTTPServer
) -> None:
    from werkzeug import Response

    fuzz_api.clear()

    def page(request: Any) -> Response:
        number = int(request.args["page"])
        body = pages[number - 1][0] if number <= len(pages) else b"[]"
        return Response(body, content_type="application/json")

    fuzz_api.expect_request("/orders").respond_with_handler(page)
    base = Path(tempfile.mkdtemp(prefix="sj-fuzz-"))
    try:
        store = TaskStore.from_url(f"sqlite:///{base / 'store.db'}")
        settings = HttpSubscriberSettings.model_validate(
            {
                "type": "http",
                "connection": "fuzz_api",
                "endpoint": "/orders",
                "pagination": {"type": "page", "size": PAGE_SIZE},
                "retry": {"attempts": 1},
            }
        )
        summary = ingest(store, HttpSubscriber(settings), ["r"], hostile.KEY)  # never raises

        reasons = {int(r["source"].rsplit("page ", 1)[1].rstrip(")")): r["reason"] for r in summary.rejected}
        assert all(0 < len(reason) < 700 for reason in reasons.values()), reasons
        expected: dict[str, Any] = {}
        for number, (data, plain) in enumerate(pages, start=1):
            reason = reasons.pop(number, None)
            if reason is not None:
                assert plain is None, f"a plain page was rejected: {reason}"
                if _stops_paging(reason):
                    hypothesis.event("page refused: paging stops")
                    break  # not plain JSON objects: the subscriber cannot go on paging
                hypothesis.event("page rejected for a record: paging goes on")
                records = json.loads(data)  # its records were readable, one of them unusable
            else:
                hypothesis.event("page stored")
                records = json.loads(data)
                records = records if isinstance(records, list) else [records]
                for record in records:
                    expected[str(record[hostile.KEY])] = record
            if len(records if isinstance(records, list) else [records]) < PAGE_SIZE:
                break
        assert not reasons, f"pages rejected that were never read: {reasons}"
        assert _stored(store) == expected, "a page taken was not stored whole"
    finally:
        shutil.rmtree(base, ignore_errors=True)
