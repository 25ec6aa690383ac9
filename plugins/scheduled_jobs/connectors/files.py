"""File connectors: a subscriber reading JSON, JSON-lines or CSV files, a publisher writing JSON files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from scheduled_jobs import settings as sj_settings
from scheduled_jobs.connectors.base import (
    Batch,
    ConnectorSettings,
    Publisher,
    RejectedSource,
    Subscriber,
    dig,
)
from scheduled_jobs.exceptions import DeliveryError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from scheduled_jobs.store.tasks import ClaimedTask

PROCESSED_FOLDER = "processed"
REJECTED_FOLDER = "rejected"
_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def resolve_folder(folder: str) -> Path:
    """Absolute folders stay; relative ones are resolved in ``[scheduled_jobs] data_folder``."""
    path = Path(folder).expanduser()
    return path if path.is_absolute() else sj_settings.data_folder() / path


def _relative_folder_check(value: str) -> str:
    if ".." in Path(value).parts:
        raise ValueError(f"must not contain '..', got {value!r}")
    return value


class FileSubscriberSettings(ConnectorSettings):
    """``subscriber: {type: file, ...}`` of an incoming configuration."""

    type: Literal["file"] = "file"
    base_folder: str = Field(min_length=1)
    pattern: str = Field(default="*.json", min_length=1)
    format: Literal["json", "jsonl", "csv"] | None = None
    records_path: str | None = None
    """For JSON: a dotted path to the list of records inside each file, e.g. ``data.orders``."""

    _check_base = field_validator("base_folder")(_relative_folder_check)

    @field_validator("pattern")
    @classmethod
    def _pattern_inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"must be a pattern inside base_folder (no '/' at the start, no '..'), got {value!r}")
        return value


class FilePublisherSettings(ConnectorSettings):
    """``publisher: {type: file, ...}`` of an outgoing configuration."""

    type: Literal["file"] = "file"
    destination_folder: str = Field(min_length=1)
    filename: str = "{entity_key}-{task_id}.json"
    """A template over task_id, entity_key and route; characters unsafe in file names are replaced."""

    _check_destination = field_validator("destination_folder")(_relative_folder_check)

    @field_validator("filename")
    @classmethod
    def _filename_fields(cls, value: str) -> str:
        try:
            value.format(task_id=1, entity_key="k", route="r")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} may only use {{task_id}}, {{entity_key}} and {{route}} ({exc})") from None
        return value


def _records_from_json(path: Path, records_path: str | None) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    try:
        found = dig(document, records_path)
    except KeyError as exc:
        raise ValueError(f"records_path {exc.args[0]}") from None
    records = found if isinstance(found, list) else [found]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"record {index} is a {type(record).__name__}, expected a JSON object")
    return records


def _records_from_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"line {number}: a {type(record).__name__}, expected a JSON object")
            records.append(record)
    return records


def _records_from_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, strict=True)
        records: list[dict[str, Any]] = []
        for record in reader:
            if None in record:
                raise ValueError(f"line {reader.line_num}: more values than the header has columns")
            records.append(dict(record))
        return records


def _move_into(path: Path, folder: Path) -> Path:
    """Move a file into ``folder``, keeping an older file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():  # a file of the same name was processed before: keep both
        target = folder / f"{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}"
    return Path(shutil.move(str(path), target))


class FileSubscriber(Subscriber[FileSubscriberSettings]):
    """Reads every file matching the pattern; a processed file moves to ``processed/``.

    A file that cannot be read moves to ``rejected/`` with a ``.error.txt`` beside it saying why, so it
    is not read again until someone puts it back.
    """

    def _format(self, path: Path) -> str:
        return self.settings.format or _FORMATS.get(path.suffix.lower(), "json")

    def read_file(self, path: Path) -> list[dict[str, Any]]:
        kind = self._format(path)
        if kind == "jsonl":
            return _records_from_jsonl(path)
        if kind == "csv":
            return _records_from_csv(path)
        return _records_from_json(path, self.settings.records_path)

    def batches(self) -> Iterator[Batch | RejectedSource]:
        base = resolve_folder(self.settings.base_folder)
        skip = {base / PROCESSED_FOLDER, base / REJECTED_FOLDER}
        for path in sorted(base.glob(self.settings.pattern)):
            if not path.is_file() or any(folder in path.parents for folder in skip):
                continue
            try:
                records = self.read_file(path)
            except json.JSONDecodeError as exc:
                yield self._rejected(path, base, f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
            except (ValueError, UnicodeDecodeError, csv.Error, OSError) as exc:
                yield self._rejected(path, base, str(exc))
            else:
                yield Batch(
                    str(path),
                    records,
                    acknowledge=partial(_move_into, path, base / PROCESSED_FOLDER),
                    reject=partial(_set_aside, path, base),
                )

    @staticmethod
    def _rejected(path: Path, base: Path, reason: str) -> RejectedSource:
        return RejectedSource(str(path), reason, partial(_set_aside, path, base, reason))


def _set_aside(path: Path, base: Path, reason: str) -> None:
    """Move an unusable file to ``rejected/`` with the reason beside it, so it is not read again."""
    moved = _move_into(path, base / REJECTED_FOLDER)
    moved.with_name(moved.name + ".error.txt").write_text(reason + "\n", encoding="utf-8")


_UNSAFE = str.maketrans(dict.fromkeys('/\\:*?"<>|\x00', "_"))


class FilePublisher(Publisher[FilePublisherSettings]):
    """Writes each task's payload as a JSON file, atomically (written aside, then renamed)."""

    def publish(self, task: ClaimedTask) -> None:
        folder = resolve_folder(self.settings.destination_folder)
        name = self.settings.filename.format(task_id=task.id, entity_key=task.entity_key, route=task.route)
        target = folder / name.translate(_UNSAFE)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".partial")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(task.payload, handle, ensure_ascii=False, indent=2)
                handle.write("\n")
            os.replace(temporary, target)
        except OSError as exc:
            raise DeliveryError(f"cannot write {target}: {exc.strerror or exc}") from exc
