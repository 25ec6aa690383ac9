"""File connectors: a subscriber reading JSON, JSON-lines or CSV files, a publisher writing JSON files.

The subscriber reads what producers nobody here controls drop in its base folder. It takes a file
only once the file has settled, never follows a link out of the base folder, never moves a file
through one, and turns whatever goes wrong with one file into that file's rejection.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import time
import uuid
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduled_jobs import jsondata
from scheduled_jobs import settings as sj_settings
from scheduled_jobs.connectors.base import Batch, Publisher, RejectedSource, Subscriber, dig
from scheduled_jobs.exceptions import DeliveryError, SourceError
from scheduled_jobs.models.connectors.files import FilePublisherSettings, FileSubscriberSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from scheduled_jobs.models.tasks import ClaimedTask

log = logging.getLogger(__name__)

PROCESSED_FOLDER = "processed"
REJECTED_FOLDER = "rejected"
ERROR_SUFFIX = ".error.txt"
_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Names a producer writes under before it renames the finished file (and dot-files, hidden the same
# way): never read, whatever the pattern says.
TEMPORARY_SUFFIXES = (".tmp", ".partial", ".part")
# The longest file name most file systems take (ext4, XFS, tmpfs, APFS): 255 bytes, of UTF-8 here.
NAME_MAX = 255

LINK_OUT_REASON = (
    "a symbolic link to a file outside the base folder: links out of the base folder are never followed; "
    "put the file itself in the folder"
)
FOLDER_LINK_OUT_REASON = (
    "in a folder that is a symbolic link out of the base folder: links out of the base folder are never followed; "
    "put the file itself in the folder"
)
LINKED_FOLDER_REASON = "a symbolic link; files are never moved through a link: make it a real folder"
NESTED_REASON = "nested too deeply to be read: lists and objects inside each other beyond Python's recursion limit"
NUL_REASON = "holds a NUL byte; a CSV file is text (is this a binary file, or UTF-16?)"


def resolve_folder(folder: str) -> Path:
    """Absolute folders stay; relative ones are resolved in ``[scheduled_jobs] data_folder``."""
    path = Path(folder).expanduser()
    return path if path.is_absolute() else sj_settings.data_folder() / path


# Reading: from the bytes of one file to its records. Anything raised here is that file's problem.


def _text(data: bytes) -> str:
    # A byte order mark (Excel's "CSV UTF-8", Notepad) is not part of the first header or value. Dropped
    # after decoding, not by "utf-8-sig", so that a decoding error's offset is still the file's.
    text = data.decode("utf-8")
    return text.removeprefix("\ufeff")


def _json_value(text: str) -> Any:
    return jsondata.loads(text)


def _records_from_json(data: bytes, records_path: str | None) -> list[dict[str, Any]]:
    document = _json_value(_text(data))
    try:
        found = dig(document, records_path)
    except KeyError as exc:
        raise ValueError(f"records_path {exc.args[0]}") from None
    records = found if isinstance(found, list) else [found]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"record {index} is a {type(record).__name__}, expected a JSON object")
    return records


def _records_from_jsonl(data: bytes) -> list[dict[str, Any]]:
    records = []
    # Split on "\n" only: a JSON string may hold U+2028 and other characters str.splitlines() breaks at.
    for number, line in enumerate(_text(data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = _json_value(line)
        except jsondata.InvalidJsonError as exc:
            raise ValueError(f"line {number}, column {exc.column}: not valid JSON ({exc.message})") from exc
        except Exception as exc:  # e.g. nested too deeply: the line's problem, said with its number
            raise ValueError(f"line {number}: {reason_of(exc)}") from exc
        if not isinstance(record, dict):
            raise ValueError(f"line {number}: a {type(record).__name__}, expected a JSON object")
        records.append(record)
    return records


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    """(line number, values) of each row; a ValueError naming the line for one csv cannot split."""
    reader = csv.reader(io.StringIO(_text(data), newline=""), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a quote in the middle of a field
            raise ValueError(f"line {reader.line_num}: {exc}") from exc
        if any("\x00" in value for value in row):
            raise ValueError(f"line {reader.line_num}: {NUL_REASON}")
        yield reader.line_num, row


def _records_from_csv(data: bytes) -> list[dict[str, Any]]:
    rows = _csv_rows(data)
    _, header = next(rows, (0, []))
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"the header names column {repeated[0]!r} twice")
    records: list[dict[str, Any]] = []
    for number, row in rows:
        if not row:  # a blank line
            continue
        # A short row is what a file read while it is still being written ends with: never half a record.
        if len(row) != len(header):
            more_or_fewer = "more" if len(row) > len(header) else "fewer"
            raise ValueError(
                f"line {number}: {more_or_fewer} values ({len(row)}) than the header has columns ({len(header)})"
            )
        records.append(dict(zip(header, row, strict=True)))
    return records


def reason_of(exc: BaseException) -> str:
    """Why a file's content could not be read, from parts we choose."""
    if isinstance(exc, RecursionError):
        return NESTED_REASON
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: the byte at offset {exc.start} cannot be decoded; save the file as UTF-8"
    if isinstance(exc, ValueError | csv.Error):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "too large to be read in the memory this worker has"
    return f"cannot be read ({type(exc).__name__})"


# Where files go: never through a link.


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _real_folder(folder: Path) -> Path:
    """``folder``, created if needed; a SourceError when it is a symbolic link, which nothing is moved through."""
    if folder.is_symlink():
        raise SourceError(folder, LINKED_FOLDER_REASON)
    try:
        folder.mkdir()
    except FileExistsError:
        if not folder.is_dir():
            raise SourceError(folder, "not a folder: files are moved into it; make it a real folder") from None
    return folder


def _free_target(folder: Path, name: str) -> Path:
    """``folder/name``, or a name beside it when that, or its error file, is taken: an older file is kept."""
    target = folder / name
    while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + ERROR_SUFFIX)):
        stem, suffix = os.path.splitext(name)
        target = folder / f"{stem}.{uuid.uuid4().hex[:8]}{suffix}"
    return target


def _move_into(path: Path, folder: Path) -> Path | None:
    """Move a file into ``folder``: a link itself, never what it points to.

    None when the file is gone: another run over the same folder took it, so it is not this run's.
    """
    target = _free_target(_real_folder(folder), path.name)
    try:
        return Path(shutil.move(path, target))  # shutil.move moves a link as a link
    except FileNotFoundError:
        if os.path.lexists(path):
            raise
        log.info("%s: taken by another run meanwhile", path)
        return None


def _remove_marker(marker: Path | None) -> None:
    if marker is not None:
        with suppress(FileNotFoundError):
            marker.unlink()  # a link marker: the link goes, not what it points to


def _take_away(path: Path, base: Path, marker: Path | None) -> None:
    """Acknowledge: the file's tasks are stored, it moves to ``processed/``."""
    if _move_into(path, base / PROCESSED_FOLDER) is not None:
        _remove_marker(marker)


def _set_aside(path: Path, base: Path, marker: Path | None, reason: str) -> None:
    """Move an unusable file to ``rejected/`` with the reason beside it, so it is not read again."""
    moved = _move_into(path, base / REJECTED_FOLDER)
    if moved is None:
        return
    # O_EXCL: a name planted meanwhile (a link, say) is never written through.
    error_file = os.open(moved.with_name(moved.name + ERROR_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(error_file, "w", encoding="utf-8") as handle:
        handle.write(reason + "\n")
    _remove_marker(marker)


def _base_readable(base: Path) -> None:
    """A SourceError when the base folder itself cannot be read: that is the run's problem, not a file's."""
    try:
        with os.scandir(base):
            pass
    except OSError as exc:
        raise SourceError(base, f"the base folder cannot be read: {exc.strerror or type(exc).__name__}") from exc


class FileSubscriber(Subscriber[FileSubscriberSettings]):
    """Reads every settled file matching the pattern; a processed file moves to ``processed/``.

    A file that cannot be read moves to ``rejected/`` with a ``.error.txt`` beside it saying why, so it
    is not read again until someone puts it back.
    """

    def _format(self, path: Path) -> str:
        return self.settings.format or _FORMATS.get(path.suffix.lower(), "json")

    def parse(self, path: Path, data: bytes) -> list[dict[str, Any]]:
        """The records in ``data``, the content of ``path``."""
        kind = self._format(path)
        if kind == "jsonl":
            return _records_from_jsonl(data)
        if kind == "csv":
            return _records_from_csv(data)
        return _records_from_json(data, self.settings.records_path)

    def _marker(self, path: Path) -> Path | None:
        if self.settings.ready_marker is None:
            return None
        return path.with_name(self.settings.ready_marker.format(name=path.name, stem=path.stem))

    def batches(self) -> Iterator[Batch | RejectedSource]:
        base = resolve_folder(self.settings.base_folder)
        if not base.exists():
            log.info("%s does not exist (yet): nothing to read", base)
            return
        _base_readable(base)
        for folder in (PROCESSED_FOLDER, REJECTED_FOLDER):
            if (base / folder).is_symlink():  # before any file is read: no file's tasks are stored unmovable
                raise SourceError(base / folder, LINKED_FOLDER_REASON)
        real_base = os.path.realpath(base)
        skip = {base / PROCESSED_FOLDER, base / REJECTED_FOLDER}
        paths = sorted(base.glob(self.settings.pattern))
        markers = {self._marker(path) for path in paths} - {None}
        for path in paths:
            if path in skip or any(folder in path.parents for folder in skip):
                continue
            if path in markers or _temporary(path.name):
                continue
            item = self._take(path, base, real_base)
            if item is not None:
                yield item

    def _take(self, path: Path, base: Path, real_base: str) -> Batch | RejectedSource | None:
        """The file's batch or rejection; None when it is not this run's to read (not settled, gone)."""
        marker = self._marker(path)
        if not _inside(os.path.realpath(path.parent), real_base):
            # Moving it would move a file through the link: it is only reported, every run, until removed.
            return RejectedSource(str(path), FOLDER_LINK_OUT_REASON)
        real = os.path.realpath(path)
        if not _inside(real, real_base):
            return self._rejected(path, base, marker, LINK_OUT_REASON)
        if marker is not None and not os.path.lexists(marker):
            log.info("%s: no ready marker %s yet; left for a later run", path, marker.name)
            return None
        try:
            data = self._settled_content(path, real)
        except SourceError as exc:
            return self._rejected(path, base, marker, exc.reason)
        except OSError as exc:
            _base_readable(base)  # the base folder failing is not blamed on the file
            if isinstance(exc, FileNotFoundError):
                log.info("%s: taken by another run meanwhile", path)
                return None
            return self._rejected(path, base, marker, f"cannot be read: {exc.strerror or type(exc).__name__}")
        if data is None:
            return None
        try:
            records = self.parse(path, data)
        except Exception as exc:  # whatever its content breaks is this file's rejection, never the run's
            return self._rejected(path, base, marker, reason_of(exc))
        return Batch(
            str(path),
            records,
            acknowledge=partial(_take_away, path, base, marker),
            reject=partial(_set_aside, path, base, marker),
        )

    def _settled_content(self, path: Path, real: str) -> bytes | None:
        """The file's bytes once it has settled; None when it is not a regular file or still changing.

        A SourceError for a file larger than ``max_file_bytes``: it is rejected, never read.
        """
        # O_NOFOLLOW: a link swapped in after the check above is not followed; O_NONBLOCK: a FIFO named
        # like a data file does not hang the run.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(real, flags)
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode):  # a folder, a FIFO, a device: not a file to read
            os.close(descriptor)
            return None
        with os.fdopen(descriptor, "rb") as handle:
            unsettled = self._unsettled(before)
            if unsettled:
                log.info(
                    "%s: %s, left for a later run (settle_seconds: %g)", path, unsettled, self.settings.settle_seconds
                )
                return None
            limit = self.settings.max_file_bytes
            if before.st_size > limit:
                too_large = f"{before.st_size} bytes, larger than max_file_bytes {limit}"
                raise SourceError(path, f"{too_large}; split the file, or raise max_file_bytes")
            data = handle.read(limit + 1)  # a file growing meanwhile is never read past the limit
            after = os.fstat(handle.fileno())
        if _version(after) != _version(before):
            log.info("%s: changed while it was read, left for a later run", path)
            return None
        return data

    def _unsettled(self, status: os.stat_result) -> str:
        """Why the file may still be written ("" once it has not changed for settle_seconds)."""
        if self.settings.settle_seconds == 0:
            return ""
        now = time.time()
        age = now - status.st_mtime
        if age < 0:
            # ``touch -d 2100`` or a producer's skewed clock: the modification time says nothing of when
            # the file was last written, and waiting for it could be for ever. The change time can be set
            # by no producer (the file system sets it on every write), so it decides. Only a share whose own
            # clock is ahead puts that in the future too; then the wait is bounded by that skew.
            changed = now - status.st_ctime
            if changed < 0:
                return "its modification and change times are in the future (the file system's clock is ahead)"
            if changed < self.settings.settle_seconds:
                return f"its modification time is in the future; it changed {changed:.1f} s ago"
            return ""
        if age < self.settings.settle_seconds:
            return f"changed {age:.1f} s ago"
        return ""

    @staticmethod
    def _rejected(path: Path, base: Path, marker: Path | None, reason: str) -> RejectedSource:
        return RejectedSource(str(path), reason, partial(_set_aside, path, base, marker, reason))


def _temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith(TEMPORARY_SUFFIXES)


def _version(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns


# Writing.

_UNSAFE = str.maketrans(dict.fromkeys('/\\:*?"<>|\x00', "_"))


def fitting_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` when its UTF-8 fits in ``limit`` bytes; else its start, a hash of all of it and its suffix.

    The hash keeps two long names that share their start apart.
    """
    if len(name.encode()) <= limit:
        return name
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode()) > 16:  # not an extension, just a dot in the key
        stem, suffix = name, ""
    mark = "~" + hashlib.sha256(name.encode()).hexdigest()[:16]
    room = limit - len(mark.encode()) - len(suffix.encode())
    start = stem.encode()[:room].decode("utf-8", "ignore")  # never half a character
    return f"{start}{mark}{suffix}"


def _name_limit(folder: Path) -> int:
    try:
        return min(NAME_MAX, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _write_atomically(target: Path, content: bytes) -> None:
    """Write aside, then rename: a reader sees the whole file or none. The temporary file never stays."""
    temporary = target.with_name(f".{uuid.uuid4().hex}.partial")
    # os.open with 0o666, not mkstemp's 0o600: the umask (and a default ACL) applies, as to any file written.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            temporary.unlink()
        raise


class FilePublisher(Publisher[FilePublisherSettings]):
    """Writes each task's payload as a JSON file, atomically (written aside, then renamed)."""

    def publish(self, task: ClaimedTask) -> None:
        folder = resolve_folder(self.settings.destination_folder)
        name = self.settings.filename.format(task_id=task.id, entity_key=task.entity_key, route=task.route)
        target = folder / name.translate(_UNSAFE)
        try:
            content = (json.dumps(task.payload, ensure_ascii=False, allow_nan=False, indent=2) + "\n").encode()
        except ValueError as exc:
            raise DeliveryError(f"cannot write {target}: the payload is not writable as JSON ({exc})") from exc
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / fitting_name(target.name, _name_limit(folder))
            _write_atomically(target, content)
        except OSError as exc:
            raise DeliveryError(f"cannot write {target}: {exc.strerror or exc}") from exc
