"""The file subscriber and publisher on real files."""

from __future__ import annotations

import json
import os
import re
import stat
from typing import TYPE_CHECKING, Any

import pytest

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.files import FilePublisher, FilePublisherSettings, FileSubscriber, FileSubscriberSettings
from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.store import ClaimedTask

if TYPE_CHECKING:
    from pathlib import Path


def subscriber(base: Path, pattern: str, **extra: Any) -> FileSubscriber:
    """A subscriber that takes files at once: these tests are about reading, not about settling."""
    settings = {"settle_seconds": 0, **extra}
    return FileSubscriber(FileSubscriberSettings(type="file", base_folder=str(base), pattern=pattern, **settings))


def test_reads_json_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"data": {"items": [{"id": 1}, {"id": 2}]}}))
    (tmp_path / "b.jsonl").write_text('{"id": 3}\n\n{"id": 4}\n')
    (tmp_path / "c.csv").write_text("id,name\n5,Five\n6,Six\n")
    found = list(subscriber(tmp_path, "*.json", records_path="data.items").batches())
    found += list(subscriber(tmp_path, "*.jsonl").batches())
    found += list(subscriber(tmp_path, "*.csv").batches())
    assert [b.records for b in found if isinstance(b, Batch)] == [
        [{"id": 1}, {"id": 2}],
        [{"id": 3}, {"id": 4}],
        [{"id": "5", "name": "Five"}, {"id": "6", "name": "Six"}],
    ]


def test_acknowledge_moves_a_file_to_processed(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"id": 1}]')
    (batch,) = subscriber(tmp_path, "*.json").batches()
    assert isinstance(batch, Batch)
    batch.acknowledge()
    assert (tmp_path / "processed" / "a.json").exists()
    assert list(subscriber(tmp_path, "**/*.json").batches()) == []  # processed/ is never read again


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "bad.json",
            '{"id": 1,',
            "not valid JSON: Expecting property name enclosed in double quotes at line 1, column 10",
        ),
        ("bad.json", "[1, 2]", "record 0 is a int, expected a JSON object"),
        ("bad.jsonl", '{"id": 1}\nnope\n', "line 2, column 1: not valid JSON (Expecting value)"),
        ("bad.csv", "id,name\n1,a,extra\n", "line 2: more values (3) than the header has columns (2)"),
        ("bad.csv", "id,name\n1,a\n\n2\n", "line 4: fewer values (1) than the header has columns (2)"),
        ("bad.csv", 'id,name\n1,"a\nb"\n2,"c",\n', "line 4: more values (3) than the header has columns (2)"),
        ("bad.csv", "id,name,id\n1,a,2\n", "the header names column 'id' twice"),
        ("bad.csv", 'id,name\n1,"a"b\n', "line 2: ',' expected after '\"'"),
        (
            "bad.csv",
            b"id,name\n1,caf\xe9\n",
            "not UTF-8 text: the byte at offset 13 cannot be decoded; save the file as UTF-8",
        ),
        ("bad.json", '{"other": []}', "records_path 'orders': key 'orders' not found"),
    ],
)
def test_a_malformed_file_is_rejected_with_its_reason(
    tmp_path: Path, name: str, content: str | bytes, reason: str
) -> None:
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    else:
        (tmp_path / name).write_text(content)
    extra = {"records_path": "orders"} if "records_path" in reason else {}
    (item,) = subscriber(tmp_path, name, **extra).batches()
    assert isinstance(item, RejectedSource)
    assert item.reason == reason
    item.set_aside()
    assert (tmp_path / "rejected" / name).read_bytes() == (content if isinstance(content, bytes) else content.encode())
    assert (tmp_path / "rejected" / f"{name}.error.txt").read_text() == reason + "\n"


def test_publisher_writes_each_payload_atomically(tmp_path: Path) -> None:
    settings = FilePublisherSettings(
        type="file", destination_folder=str(tmp_path / "out"), filename="{route}/{entity_key}.json"
    )
    task = ClaimedTask(7, "r", "SO/1", {"id": "SO/1", "name": "Café"}, 1, "token")
    FilePublisher(settings).publish(task)
    assert json.loads((tmp_path / "out" / "r_SO_1.json").read_text(encoding="utf-8")) == {"id": "SO/1", "name": "Café"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r_SO_1.json"]


def test_publisher_reports_an_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = FilePublisherSettings(type="file", destination_folder=str(blocker / "out"))
    with pytest.raises(DeliveryError, match=r"cannot write .*file/out/k-1\.json"):
        FilePublisher(settings).publish(ClaimedTask(1, "r", "k", {}, 1, "t"))


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_publisher_files_honour_the_umask_as_a_normal_write_does(tmp_path: Path, umask: int) -> None:
    settings = FilePublisherSettings(type="file", destination_folder=str(tmp_path))
    previous = os.umask(umask)
    try:
        FilePublisher(settings).publish(ClaimedTask(1, "r", "k", {"id": "k"}, 1, "t"))
        (tmp_path / "normal.json").write_text("{}")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "k-1.json").stat().st_mode)
    assert oct(mode) == oct(0o666 & ~umask) == oct(stat.S_IMODE((tmp_path / "normal.json").stat().st_mode))


def test_a_failed_write_leaves_no_partial_file_behind(tmp_path: Path) -> None:
    (tmp_path / "k-1.json").mkdir()  # the target name is taken by a folder: the final rename fails
    settings = FilePublisherSettings(type="file", destination_folder=str(tmp_path))
    with pytest.raises(DeliveryError, match=r"cannot write .*k-1\.json: Is a directory"):
        FilePublisher(settings).publish(ClaimedTask(1, "r", "k", {"secret": "payload"}, 1, "t"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k-1.json"]


def test_entity_keys_too_long_for_a_file_name_are_written_under_a_unique_shorter_name(tmp_path: Path) -> None:
    settings = FilePublisherSettings(type="file", destination_folder=str(tmp_path), filename="{entity_key}.json")
    keys = ["K" * 300, "K" * 300 + "2", "é" * 200, "é" * 200 + "x", "😀" * 70]
    publisher = FilePublisher(settings)
    for task_id, key in enumerate(keys, start=1):
        publisher.publish(ClaimedTask(task_id, "r", key, {"key": key}, 1, "t"))
    written = sorted(tmp_path.iterdir())
    assert len(written) == len(keys)  # each key its own file: none overwrote another
    assert sorted(json.loads(path.read_text(encoding="utf-8"))["key"] for path in written) == sorted(keys)
    for path in written:
        assert len(os.fsencode(path.name)) <= 255
        assert path.name.endswith(".json")
    assert {path.name[:10] for path in written} == {"K" * 10, "é" * 10, "😀" * 10}  # still recognisable
    short = "é" * 10
    publisher.publish(ClaimedTask(9, "r", short, {"key": short}, 1, "t"))
    assert (tmp_path / f"{short}.json").exists()  # a name that fits is kept as it is


def test_a_payload_that_is_not_json_is_a_delivery_error_not_an_invalid_file(tmp_path: Path) -> None:
    settings = FilePublisherSettings(type="file", destination_folder=str(tmp_path))
    with pytest.raises(DeliveryError, match="the payload is not writable as JSON"):
        FilePublisher(settings).publish(ClaimedTask(1, "r", "k", {"total": float("nan")}, 1, "t"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"settle_seconds": -1}, "greater than or equal to 0"),
        ({"ready_marker": "{name}"}, "must name another file beside each file"),
        ({"ready_marker": "done"}, "must name another file beside each file"),
        ({"ready_marker": "../{name}.done"}, "must name another file beside each file"),
        ({"ready_marker": "{path}.done"}, "may only use {name} and {stem}"),
    ],
)
def test_settling_settings_are_checked(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FileSubscriberSettings(type="file", base_folder=str(tmp_path), **extra)
