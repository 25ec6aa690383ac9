"""Reading user YAML safely and turning pydantic's complaints into ``path: key: reason`` problems."""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml

from scheduled_jobs.exceptions import Problem, ScheduledJobsError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

# libyaml's loader is the same safe loader, about ten times faster; fall back where it is missing.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FILE_KEY = "(file)"
MAX_DEPTH = 50
"""Collections nested deeper than this are refused: a definition needs a handful, and every walk stays shallow."""
MAX_PROBLEMS_PER_FILE = 20
"""Problems shown per file; the rest are counted. One file's ten thousand mistakes must not bury the others."""
MAX_NUMBER_CHARACTERS = 4300
"""Python's own limit on digits for int(); YAML's base-60 numbers would otherwise multiply big numbers."""


class _Refused(ScheduledJobsError):
    """The file is YAML that is not built on purpose: anchors or aliases, too deep, too many values."""


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader whose numbers and dates fail as YAML errors with a line, not as a bare ValueError."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_NUMBER_CHARACTERS:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number with more than {MAX_NUMBER_CHARACTERS} digits", node.start_mark
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    if len(node.value) > MAX_NUMBER_CHARACTERS:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number with more than {MAX_NUMBER_CHARACTERS} digits", node.start_mark
        )
    try:
        return yaml.SafeLoader.construct_yaml_float(loader, node)
    except OverflowError:  # a YAML 1.1 base-60 float (1:59:...:59.5) sums to an int no float holds
        raise yaml.constructor.ConstructorError(
            None, None, "a number too large for a float; quote it to keep it as text", node.start_mark
        ) from None


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError as exc:  # 2026-02-30 looks like a date to YAML, and Python refuses it
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value} is not a date ({exc}); quote it to keep it as text", node.start_mark
        ) from None


def _tag_checked(kind: str, construct: Any) -> Any:
    """``construct`` whose failure on a value is a YAML error at the value's line, not a crash.

    An explicit tag (``!!int abc``, ``!!bool maybe``, ``!!timestamp soon``) hands PyYAML's constructors
    text their implicit resolvers would never have given them, and they fail with a bare ValueError,
    IndexError, KeyError or AttributeError that would end the whole load (every job with it).
    """

    def checked(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
        try:
            return construct(loader, node)
        except yaml.YAMLError:
            raise
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError):
            shown = repr(node.value) if len(node.value) <= 40 else repr(node.value[:37]) + "..."
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{shown} is not a valid {kind} (the tag !!{kind}); remove the tag or fix the value",
                node.start_mark,
            ) from None

    return checked


for _kind, _construct in (
    ("int", _construct_int),
    ("float", _construct_float),
    ("bool", yaml.SafeLoader.construct_yaml_bool),
    ("timestamp", _construct_timestamp),
    ("binary", yaml.SafeLoader.construct_yaml_binary),
):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_kind}", _tag_checked(_kind, _construct))


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


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown place"


def _check_structure(text: str, max_nodes: int) -> None:
    """Refuse anchors, aliases, deep nesting and too many values from the event stream, before anything is built.

    Aliases are how a 700-byte file becomes a billion strings (the billion laughs): every later walk
    (credentials, validation) would expand them. Events are read one by one, so nothing is expanded
    here, and the reading stops at the first refusal. The node budget keeps every later step (building,
    the credential walk, validation, its problems) to a few milliseconds, whatever the file holds.
    """
    depth = 0
    nodes = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > max_nodes:
                raise _Refused(
                    f"holds more than {max_nodes} values (at {_where(event.start_mark)}) "
                    "([scheduled_jobs] yaml_max_nodes); split it into smaller files"
                )
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                f"YAML anchors/aliases are not allowed: the alias '*{event.anchor}' at {_where(event.start_mark)}; "
                "write each value out in full (and quote a value that starts with '*')"
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(
                f"YAML anchors/aliases are not allowed: the anchor '&{anchor}' at {_where(event.start_mark)}; "
                "write each value out in full"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(f"is nested more than {MAX_DEPTH} levels deep at {_where(event.start_mark)}; flatten it")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _read_bounded(path: Path, limit: int) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or a problem: never more than ``limit`` bytes, never a blocking read.

    Non-blocking open and a regular-file check: a FIFO or a device named ``*.yaml`` would otherwise
    block or never end.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, Problem(str(path), FILE_KEY, f"cannot be read: {exc}")
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return None, Problem(str(path), FILE_KEY, "is not a regular file; only plain YAML files are read")
        data = b"" if status.st_size > limit else handle.read(limit + 1)
    size = max(status.st_size, len(data))
    if size > limit:
        limit_text = f"the limit of {limit} bytes ([scheduled_jobs] yaml_max_bytes)"
        return None, Problem(str(path), FILE_KEY, f"is {size} bytes, over {limit_text}; split it or shorten it")
    return data, None


@dataclass(frozen=True)
class Limits:
    """How large a file may be, read once per load rather than once per file."""

    max_bytes: int
    max_nodes: int

    @classmethod
    def from_settings(cls) -> Limits:
        from scheduled_jobs import settings

        return cls(settings.yaml_max_bytes(), settings.yaml_max_nodes())


def load_mapping(path: Path, limits: Limits | None = None) -> tuple[dict[str, Any] | None, Problem | None]:
    """Parse one YAML file that must hold a mapping; a problem instead when it does not.

    Each step is bounded by the file's size and its number of values (``[scheduled_jobs] yaml_max_bytes``,
    ``yaml_max_nodes``): no alias expands, nesting is shallow, numbers are short, so no single file can
    hold up a DAG file's parse.
    """
    limits = limits or Limits.from_settings()
    raw, problem = _read_bounded(path, limits.max_bytes)
    if problem is not None or raw is None:
        return None, problem
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Problem(str(path), FILE_KEY, f"cannot be read: {exc}")
    try:
        _check_structure(text, limits.max_nodes)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, C or Python
    except _Refused as exc:
        return None, Problem(str(path), FILE_KEY, str(exc))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at {_where(mark)}"
        problem_text = getattr(exc, "problem", None) or str(exc)
        hint = " (quote values that start with '*', e.g. expression: \"*/5 * * * *\")" if "alias" in str(exc) else ""
        return None, Problem(str(path), FILE_KEY, f"is not valid YAML{where}: {problem_text}{hint}")
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        return None, Problem(str(path), FILE_KEY, f"must be a mapping of keys to values, found {kind}")
    return data, None


def capped(path: Path, problems: list[Problem], hidden: int = 0) -> list[Problem]:
    """At most ``MAX_PROBLEMS_PER_FILE`` problems of one file, and a count of the rest (``hidden`` more)."""
    if len(problems) <= MAX_PROBLEMS_PER_FILE and not hidden:
        return problems
    rest = len(problems[MAX_PROBLEMS_PER_FILE:]) + hidden
    shown = problems[:MAX_PROBLEMS_PER_FILE]
    note = Problem(str(path), FILE_KEY, f"{rest} more problems besides these {len(shown)} are not shown")
    return [*shown, note]


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


def problems_from_validation(
    path: Path,
    error: ValidationError,
    model: type[BaseModel],
    limit: int = MAX_PROBLEMS_PER_FILE,
    *,
    tag: str | None = None,
) -> list[Problem]:
    """One problem per pydantic error, with a readable reason and the closest key for a typo.

    Only the first ``limit``: the rest are counted by ``capped`` (``error.error_count()``), not worded.
    ``tag``: the file was validated as a member of a tagged union, whose tag pydantic puts first in the
    location (``outgoing``, ``route``); ``model`` is that member, and the user's key is ``route``.
    """
    problems = []
    for item in error.errors(include_url=False)[:limit]:
        loc = item["loc"]
        key, owner = _walk(model, loc[1:] if tag is not None and loc[:1] == (tag,) else loc)
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
