"""``subscriber: {type: file}`` and ``publisher: {type: file}``: folders, patterns and file names."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from scheduled_jobs.models.connectors.base import ConnectorSettings


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
    settle_seconds: float = Field(default=5, ge=0)
    """A file is taken only once it has not changed for this long, so a producer still writing it is
    not read half-way; a younger file is left for a later run. 0 takes every file at once."""
    max_file_bytes: int = Field(default=200_000_000, gt=0)
    """A larger file is rejected unread: a file is read whole, and one no worker can hold would stop every run."""
    ready_marker: str | None = None
    """When set, a file is taken only once this file exists beside it, e.g. ``{name}.done`` or
    ``{stem}.ok``; the marker is removed once its file is processed or rejected."""

    _check_base = field_validator("base_folder")(_relative_folder_check)

    @field_validator("pattern")
    @classmethod
    def _pattern_inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(f"must be a pattern inside base_folder (no '/' at the start, no '..'), got {value!r}")
        return value

    @field_validator("ready_marker")
    @classmethod
    def _marker_beside_its_file(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            example = value.format(name="orders.json", stem="orders")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} may only use {{name}} and {{stem}} ({exc})") from None
        # One marker per file, beside it: built from the file's name, not the file itself, not in another folder.
        if example in {value, "orders.json", ".", ".."} or "/" in example:
            raise ValueError(
                f"{value!r} must name another file beside each file, built from {{name}} or {{stem}}, "
                "e.g. '{name}.done'"
            )
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
