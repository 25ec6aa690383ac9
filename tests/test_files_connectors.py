"""The file subscriber and publisher on real files."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from scheduled_jobs.connectors.base import Batch, RejectedSource
from scheduled_jobs.connectors.files import FilePublisher, FilePublisherSettings, FileSubscriber, FileSubscriberSettings
from scheduled_jobs.exceptions import DeliveryError
from scheduled_jobs.store import ClaimedTask

if TYPE_CHECKING:
    from pathlib import Path


def subscriber(base: Path, pattern: str, **extra: str) -> FileSubscriber:
    return FileSubscriber(FileSubscriberSettings(type="file", base_folder=str(base), pattern=pattern, **extra))


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
            "not valid JSON at line 1, column 10: Expecting property name enclosed in double quotes",
        ),
        ("bad.json", "[1, 2]", "record 0 is a int, expected a JSON object"),
        ("bad.jsonl", '{"id": 1}\nnope\n', "line 2: not valid JSON (Expecting value)"),
        ("bad.csv", "id,name\n1,a,extra\n", "line 2: more values than the header has columns"),
        ("bad.json", '{"other": []}', "records_path 'orders': key 'orders' not found"),
    ],
)
def test_a_malformed_file_is_rejected_with_its_reason(tmp_path: Path, name: str, content: str, reason: str) -> None:
    (tmp_path / name).write_text(content)
    extra = {"records_path": "orders"} if "records_path" in reason else {}
    (item,) = subscriber(tmp_path, name, **extra).batches()
    assert isinstance(item, RejectedSource)
    assert item.reason == reason
    item.set_aside()
    assert (tmp_path / "rejected" / name).exists()
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
