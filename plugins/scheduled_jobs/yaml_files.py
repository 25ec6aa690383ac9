"""Reading user YAML safely and turning pydantic's complaints into ``path: key: reason`` problems."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml

from scheduled_jobs.exceptions import Problem

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

# libyaml's loader is the same safe loader, about ten times faster; fall back where it is missing.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FILE_KEY = "(file)"


def find_yaml_files(folder: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` below ``folder``, sorted, hidden files and folders left out."""
    found: list[str] = []
    # os.walk and plain strings: a thousand definitions are listed in a millisecond, not pathlib's fifty.
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found.extend(
            os.path.join(parent, name)
            for name in files
            if name.endswith((".yaml", ".yml")) and not name.startswith(".")
        )
    return [Path(path) for path in sorted(found)]


def load_mapping(path: Path) -> tuple[dict[str, Any] | None, Problem | None]:
    """Parse one YAML file that must hold a mapping; a problem instead when it does not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, Problem(str(path), FILE_KEY, f"cannot be read: {exc}")
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        hint = " (quote values that start with '*', e.g. expression: \"*/5 * * * *\")" if "alias" in str(exc) else ""
        return None, Problem(str(path), FILE_KEY, f"is not valid YAML{where}: {problem}{hint}")
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        return None, Problem(str(path), FILE_KEY, f"must be a mapping of keys to values, found {kind}")
    return data, None


_CREDENTIAL_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key", "access_key", "private_key")
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


def inline_secret_problems(path: Path, data: object, prefix: str = "") -> list[Problem]:
    """Keys that carry a password or token inline: credentials belong in Airflow connections."""
    problems: list[Problem] = []
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            lowered = str(key).lower().replace("-", "_")
            in_headers = prefix.rsplit(".", 1)[-1] == "headers"
            if (any(word in lowered for word in _CREDENTIAL_WORDS) and not isinstance(value, dict | list)) or (
                in_headers and str(key).lower() in _CREDENTIAL_HEADERS
            ):
                problems.append(
                    Problem(
                        str(path),
                        name,
                        "looks like a credential written inline; keep it in an Airflow connection "
                        "(airflow connections add ...) and name that connection with connection:",
                    )
                )
            else:
                problems.extend(inline_secret_problems(path, value, name))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            problems.extend(inline_secret_problems(path, item, f"{prefix}[{index}]"))
    return problems


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
}


def _model_members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``M``, ``M | None``, ``Annotated[A | B, ...]``)."""
    from pydantic import BaseModel as _Base

    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, _Base) else []
    return [member for arg in get_args(annotation) for member in _model_members(arg)]


def _union_tag(model: type[BaseModel]) -> object:
    field = model.model_fields.get("type")
    return field.default if field is not None else None


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None]:
    """The user's key for a pydantic location (union tags dropped) and the model owning its last part."""
    key = ""
    owner: type[BaseModel] | None = model
    current: type[BaseModel] | None = model
    index = 0
    while index < len(loc):
        part = loc[index]
        owner = current
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
        field = current.model_fields.get(part) if current is not None and isinstance(part, str) else None
        members = _model_members(field.annotation) if field is not None else []
        current = members[0] if len(members) == 1 else None
        if field is not None and len(members) > 1 and index + 1 < len(loc):
            # A tagged union (optional or not) puts the tag in the location ('subscriber', 'file', 'pattern'): skip it.
            chosen = [m for m in members if _union_tag(m) == loc[index + 1]]
            if chosen:
                current = chosen[0]
                index += 1
        index += 1
    return key or FILE_KEY, owner


def problems_from_validation(path: Path, error: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One problem per pydantic error, with a readable reason and the closest key for a typo."""
    problems = []
    for item in error.errors(include_url=False):
        key, owner = _walk(model, item["loc"])
        kind = item["type"]
        value = item.get("input")
        ctx = item.get("ctx", {})
        if kind == "extra_forbidden":
            valid = sorted(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(str(item["loc"][-1]), valid, n=1, cutoff=0.6)
            if close:
                reason = f"unknown key; did you mean {close[0]!r}?"
            else:
                reason = f"unknown key; valid keys: {', '.join(valid)}" if valid else "unknown key"
        elif kind == "missing":
            reason = "is required"
        elif kind in _TYPE_NAMES:
            reason = f"must be {_TYPE_NAMES[kind]}, got {_describe(value)}"
        elif kind == "literal_error":
            reason = f"must be one of {ctx['expected']}, got {_describe(value)}"
        elif kind == "greater_than":
            reason = f"must be greater than {ctx['gt']}, got {_describe(value)}"
        elif kind == "greater_than_equal":
            reason = f"must be at least {ctx['ge']}, got {_describe(value)}"
        elif kind == "less_than_equal":
            reason = f"must be at most {ctx['le']}, got {_describe(value)}"
        elif kind == "string_too_short":
            reason = "must not be empty"
        elif kind == "union_tag_invalid":
            reason = f"type must be one of {ctx['expected_tags']}, got {_describe(ctx['tag'])}"
            key = f"{key}.type"
        elif kind == "union_tag_not_found":
            reason = "type is required"
            key = f"{key}.type"
        elif kind == "value_error":
            reason = str(ctx["error"])
        else:
            reason = str(item["msg"])
        problems.append(Problem(str(path), key, reason))
    return problems
