"""The file subscriber against careless and hostile producers, through the real ingest loop and store.

Each test is an attack or an accident seen in the field: a file read while it is still being written,
a link out of the inbox, a poison file, two runs over one folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.files import FileSubscriber, FileSubscriberSettings
from scheduled_jobs.exceptions import SourceError
from scheduled_jobs.ingesting import ingest
from scheduled_jobs.store import TaskStore

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TaskStore:
    if request.param == "sqlite":
        return TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store = TaskStore.from_url(request.getfixturevalue("postgres_server_url"))
    with store.engine.begin() as conn:  # each test starts from an empty queue
        conn.execute(sa.text("TRUNCATE scheduled_jobs_task, scheduled_jobs_entity RESTART IDENTITY"))
    return store


def subscriber(base: Path, pattern: str, **extra: Any) -> FileSubscriber:
    return FileSubscriber(FileSubscriberSettings(type="file", base_folder=str(base), pattern=pattern, **extra))


def stored(store: TaskStore, route: str = "r") -> dict[str, dict[str, Any]]:
    return {task["entity_key"]: json.loads(task["payload"]) for task in store.list_tasks(route)}


def settled(*paths: Path) -> None:
    """Date the files a minute back: what they look like a minute after their producer finished."""
    a_minute_ago = time.time() - 60
    for path in paths:
        os.utime(path, (a_minute_ago, a_minute_ago))


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# A file still being written is not read.


def test_a_file_still_being_written_is_left_until_its_producer_has_finished(tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with (inbox / "products.csv").open("w") as csv_file, (inbox / "orders.jsonl").open("w") as jsonl_file:
        csv_file.write("id,name,price\nP1,Laptop,999\nP2,La")
        jsonl_file.write('{"id": "O1", "total": 10}\n{"id": "O2", "to')
        csv_file.flush()
        jsonl_file.flush()
        # The run happens while the producer is in the middle of both files, with the default settings.
        during = [ingest(store, subscriber(inbox, pattern), ["r"], "id") for pattern in ("*.csv", "*.jsonl")]
        assert [(s.sources, s.rejected) for s in during] == [(0, []), (0, [])]
        assert stored(store) == {}
        assert names(inbox) == ["orders.jsonl", "products.csv"]  # nothing moved from under the producer
        csv_file.write("ptop Pro,1299\nP3,Mouse,25\n")
        jsonl_file.write('tal": 20}\n{"id": "O3", "total": 30}\n')
    settled(inbox / "products.csv", inbox / "orders.jsonl")
    for pattern in ("*.csv", "*.jsonl"):
        assert ingest(store, subscriber(inbox, pattern), ["r"], "id").rejected == []
    assert stored(store) == {
        "P1": {"id": "P1", "name": "Laptop", "price": "999"},
        "P2": {"id": "P2", "name": "Laptop Pro", "price": "1299"},
        "P3": {"id": "P3", "name": "Mouse", "price": "25"},
        "O1": {"id": "O1", "total": 10},
        "O2": {"id": "O2", "total": 20},
        "O3": {"id": "O3", "total": 30},
    }
    assert names(inbox / "processed") == ["orders.jsonl", "products.csv"]


def test_settle_seconds_is_waited_for_across_runs_not_slept_within_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.json").write_text('[{"id": 1}]')
    waiting = subscriber(tmp_path, "*.json", settle_seconds=0.5)
    started = time.monotonic()
    with caplog.at_level("INFO", logger="scheduled_jobs.connectors.files"):
        assert list(waiting.batches()) == []
    assert time.monotonic() - started < 0.4  # the run went on at once, it did not sleep for the file
    assert f"{tmp_path / 'a.json'}: changed" in caplog.text
    assert "left for a later run (settle_seconds: 0.5)" in caplog.text
    time.sleep(0.6)
    (batch,) = waiting.batches()
    assert isinstance(batch, Batch)
    assert batch.records == [{"id": 1}]


def test_settle_seconds_0_takes_a_fresh_file_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"id": 1}]')
    assert list(subscriber(tmp_path, "*.json").batches()) == []  # the default waits a few seconds
    (batch,) = subscriber(tmp_path, "*.json", settle_seconds=0).batches()
    assert isinstance(batch, Batch)


def test_a_file_dated_in_the_future_waits_unless_settling_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.json").write_text('[{"id": 1}]')
    in_an_hour = time.time() + 3600
    os.utime(tmp_path / "a.json", (in_an_hour, in_an_hour))
    with caplog.at_level("INFO", logger="scheduled_jobs.connectors.files"):
        assert list(subscriber(tmp_path, "*.json").batches()) == []
    assert re.search(
        r"its modification time is in the future; it changed \d+\.\d s ago, left for a later run \(settle_seconds: 5\)",
        caplog.text,
    ), caplog.text
    (batch,) = subscriber(tmp_path, "*.json", settle_seconds=0).batches()
    assert isinstance(batch, Batch)


@pytest.mark.parametrize("year", [2100, 9999])
def test_a_file_dated_far_in_the_future_is_taken_once_it_has_settled_not_left_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, year: int
) -> None:
    """``touch -d 2100``, or a producer with a broken clock: its modification time says nothing of when
    it was written, so its change time (which no producer can set) decides when it has settled."""
    import datetime as dt

    (tmp_path / "a.json").write_text('[{"id": 1}]')
    far = dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp()
    os.utime(tmp_path / "a.json", (far, far))
    waiting = subscriber(tmp_path, "*.json", settle_seconds=0.5)
    with caplog.at_level("INFO", logger="scheduled_jobs.connectors.files"):
        assert list(waiting.batches()) == []  # just written: it may still be being written
    assert "its modification time is in the future" in caplog.text
    time.sleep(0.6)
    (batch,) = waiting.batches()  # the next run reads it
    assert isinstance(batch, Batch)
    assert batch.records == [{"id": 1}]
    batch.acknowledge()
    assert names(tmp_path / "processed") == ["a.json"]


def test_temporary_and_hidden_files_are_never_read(tmp_path: Path) -> None:
    for name in (".orders.json", "orders.json.tmp", "orders.json.partial", "orders.json.part"):
        (tmp_path / name).write_text('[{"id": "half"')
    (tmp_path / "orders.json").write_text('[{"id": "whole"}]')
    settled(*tmp_path.iterdir())
    items = list(subscriber(tmp_path, "*").batches())
    assert [(type(item).__name__, os.path.basename(item.source)) for item in items] == [("Batch", "orders.json")]


def test_a_ready_marker_holds_its_file_back_and_is_not_read_itself(tmp_path: Path) -> None:
    (tmp_path / "orders.json").write_text('[{"id": 1}]')
    settled(tmp_path / "orders.json")
    waiting = subscriber(tmp_path, "*", ready_marker="{name}.done")
    assert list(waiting.batches()) == []
    (tmp_path / "orders.json.done").touch()
    settled(tmp_path / "orders.json.done")
    (batch,) = waiting.batches()
    assert isinstance(batch, Batch)
    assert batch.records == [{"id": 1}]
    batch.acknowledge()
    assert names(tmp_path) == ["processed"]  # the marker has done its job: it goes
    assert names(tmp_path / "processed") == ["orders.json"]


# Files stay where they belong.


def test_a_link_out_of_the_base_folder_is_refused_and_never_followed(tmp_path: Path) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    secret = tmp_path / "elsewhere" / "secrets.json"
    secret.parent.mkdir()
    secret.write_text('[{"id": "S", "password": "hunter2"}]')
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.json").symlink_to(secret)
    (inbox / "b.json").write_text('[{"id": "B"}]')
    settled(secret, inbox / "b.json")
    summary = ingest(store, subscriber(inbox, "*.json"), ["r"], "id")
    reason = (
        "a symbolic link to a file outside the base folder: links out of the base folder are never followed; "
        "put the file itself in the folder"
    )
    assert summary.rejected == [{"source": str(inbox / "a.json"), "reason": reason}]
    assert stored(store) == {"B": {"id": "B"}}
    assert (inbox / "rejected" / "a.json").is_symlink()  # the link was set aside, not the file it points to
    assert (inbox / "rejected" / "a.json.error.txt").read_text() == reason + "\n"
    assert names(secret.parent) == ["secrets.json"]
    assert secret.read_text() == '[{"id": "S", "password": "hunter2"}]'


def test_a_link_to_a_file_inside_the_base_folder_is_read_and_only_the_link_moves(tmp_path: Path) -> None:
    target = tmp_path / "archive" / "orders.data"
    target.parent.mkdir()
    target.write_text('[{"id": 1}]')
    (tmp_path / "orders.json").symlink_to(target)
    settled(target)
    (batch,) = subscriber(tmp_path, "*.json").batches()
    assert isinstance(batch, Batch)
    assert batch.records == [{"id": 1}]
    batch.acknowledge()
    assert (tmp_path / "processed" / "orders.json").is_symlink()
    assert target.read_text() == '[{"id": 1}]'


def test_a_file_in_a_folder_linked_from_outside_is_reported_and_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secrets.json").write_text('[{"id": "S"}]')
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "sub").symlink_to(elsewhere, target_is_directory=True)
    settled(elsewhere / "secrets.json")
    (item,) = subscriber(inbox, "sub/*.json").batches()
    assert isinstance(item, RejectedSource)
    assert item.reason == (
        "in a folder that is a symbolic link out of the base folder: links out of the base folder are never "
        "followed; put the file itself in the folder"
    )
    item.set_aside()  # moving it would move the file outside through the link: nothing moves
    assert names(elsewhere) == ["secrets.json"]
    assert names(inbox) == ["sub"]


@pytest.mark.parametrize("folder", ["processed", "rejected"])
def test_a_linked_processed_or_rejected_folder_moves_nothing(tmp_path: Path, folder: str) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / folder).symlink_to(elsewhere, target_is_directory=True)
    (inbox / "good.json").write_text('[{"id": "G"}]')
    (inbox / "bad.json").write_text('[{"id": ')
    settled(inbox / "good.json", inbox / "bad.json")
    message = f"{inbox / folder}: a symbolic link; files are never moved through a link: make it a real folder"
    with pytest.raises(SourceError) as caught:
        ingest(store, subscriber(inbox, "*.json"), ["r"], "id")
    assert str(caught.value) == message
    assert names(elsewhere) == []
    assert names(inbox) == sorted(["bad.json", "good.json", folder])
    assert (inbox / folder).is_symlink()  # not removed either


def test_a_processed_link_that_appears_during_the_run_moves_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.json").write_text('[{"id": "A"}]')
    settled(inbox / "a.json")
    (batch,) = subscriber(inbox, "*.json").batches()
    assert isinstance(batch, Batch)
    (inbox / "processed").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SourceError, match="a symbolic link; files are never moved through a link"):
        batch.acknowledge()
    assert names(elsewhere) == []
    assert names(inbox) == ["a.json", "processed"]


def test_a_file_another_run_took_is_not_this_runs_file(tmp_path: Path) -> None:
    for number in (1, 2, 3):
        (tmp_path / f"{number}.json").write_text(f'[{{"id": {number}}}]')
    settled(*tmp_path.iterdir())
    second = subscriber(tmp_path, "*.json").batches()
    first_of_second = next(second)  # the second run has listed the folder and read 1.json ...
    assert isinstance(first_of_second, Batch)
    for item in subscriber(tmp_path, "*.json").batches():  # ... when the first run takes every file
        assert isinstance(item, Batch)
        item.acknowledge()
    first_of_second.acknowledge()  # already moved by the other run: nothing to do
    assert list(second) == []  # 2.json and 3.json are gone: not read, not rejected
    assert names(tmp_path) == ["processed"]
    assert names(tmp_path / "processed") == ["1.json", "2.json", "3.json"]


def test_a_base_folder_that_goes_away_is_the_runs_error_not_a_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for number in (1, 2):
        (inbox / f"{number}.json").write_text(f'[{{"id": {number}}}]')
    settled(*inbox.iterdir())
    run = subscriber(inbox, "*.json").batches()
    assert isinstance(next(run), Batch)
    inbox.rename(tmp_path / "unmounted")  # the share goes away in the middle of the run
    with pytest.raises(SourceError) as caught:
        next(run)
    assert str(caught.value) == f"{inbox}: the base folder cannot be read: No such file or directory"
    assert names(tmp_path / "unmounted") == ["1.json", "2.json"]  # no file was blamed and set aside


# One poison file rejects itself, not the run.


def test_poison_files_reject_themselves_and_the_files_after_them_are_stored(tmp_path: Path, store: TaskStore) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = {
        "1-good.json": '[{"id": "A"}]',
        "2-nested.json": "[" * 100_000,
        "3-digits.jsonl": '{"id": "B"}\n{"id": "C", "total": ' + "9" * 5000 + "}\n",
        "4-nul.csv": "id,name\nD,Dora\nE,Er\x00ic\n",
        "5-good.jsonl": '{"id": "F"}\n',
    }
    for name, text in files.items():
        (inbox / name).write_text(text)
    settled(*inbox.iterdir())
    summary = ingest(store, subscriber(inbox, "*"), ["r"], "id")
    reasons = {os.path.basename(rejected["source"]): rejected["reason"] for rejected in summary.rejected}
    assert sorted(reasons) == ["2-nested.json", "3-digits.jsonl", "4-nul.csv"]
    assert reasons["2-nested.json"] == ("nested more than 100 levels deep")
    assert reasons["3-digits.jsonl"] == "line 2: a number has more than 4300 digits"
    assert reasons["4-nul.csv"] == "line 3: holds a NUL byte; a CSV file is text (is this a binary file, or UTF-16?)"
    assert stored(store) == {"A": {"id": "A"}, "F": {"id": "F"}}
    assert names(inbox) == ["processed", "rejected"]
    assert names(inbox / "processed") == ["1-good.json", "5-good.jsonl"]
    for name, reason in reasons.items():
        assert (inbox / "rejected" / name).read_text() == files[name]
        assert (inbox / "rejected" / f"{name}.error.txt").read_text() == reason + "\n"
    again = ingest(store, subscriber(inbox, "*"), ["r"], "id")
    assert (again.sources, again.rejected) == (0, [])


def test_files_saved_with_a_byte_order_mark_are_read_as_their_producer_meant(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" and Windows Notepad start a file with a UTF-8 byte order mark.
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bom = b"\xef\xbb\xbf"
    (inbox / "a.csv").write_bytes(bom + b"id,name\nA,Ada\n")
    (inbox / "b.json").write_bytes(bom + b'[{"id": "B"}]')
    (inbox / "c.jsonl").write_bytes(bom + b'{"id": "C"}\n')
    settled(*inbox.iterdir())
    summary = ingest(store, subscriber(inbox, "*"), ["r"], "id")
    assert summary.rejected == []
    assert stored(store) == {"A": {"id": "A", "name": "Ada"}, "B": {"id": "B"}, "C": {"id": "C"}}


def test_a_file_too_large_for_memory_rejects_itself_and_the_files_after_it_are_stored(
    tmp_path: Path, store: TaskStore
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with (inbox / "1-huge.json").open("wb") as huge:
        huge.truncate(1 << 40)  # a terabyte, sparse: no disk used, but no worker can read it whole
    (inbox / "2-good.json").write_text('[{"id": "A"}]')
    settled(*inbox.iterdir())
    summary = ingest(store, subscriber(inbox, "*.json"), ["r"], "id")
    assert [(os.path.basename(r["source"]), r["reason"]) for r in summary.rejected] == [
        (
            "1-huge.json",
            f"{1 << 40} bytes, larger than max_file_bytes 200000000; split the file, or raise max_file_bytes",
        )
    ]
    assert stored(store) == {"A": {"id": "A"}}
    assert names(inbox / "rejected") == ["1-huge.json", "1-huge.json.error.txt"]


def test_a_file_name_holding_a_line_break_stays_on_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TaskStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    forged = inbox / "x.json\n[2026-01-01] INFO - all files imported.json"
    forged.write_text("not json")
    settled(forged)
    summary = ingest(store, subscriber(inbox, "*.json"), ["r"], "id")
    assert len(summary.rejected) == 1
    assert "\n" not in summary.rejected[0]["source"]
    rejections = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Rejected")]
    assert len(rejections) == 1 and "\n" not in rejections[0], rejections
