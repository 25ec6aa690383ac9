"""Writing job definitions from the UI: a form's values -> YAML, checked and saved the way the repository keeps them.

YAML stays the source of truth. A new job becomes ``<identifier>.yaml`` in the definitions folder; an edit
changes only the keys whose values changed, through ruamel.yaml's round trip, so the file's comments and
key order stay. Every draft is validated by the catalog's own pipeline (``load_catalog``, what
``scheduled-jobs validate`` runs) on a copy written to a temporary folder, and must read back through the
project's YAML reader to exactly the values the form held: a name or description can never smuggle a key in.

Writes are atomic (a hidden temporary file in the same folder, fsync, then a rename) and go through
descriptors of the folder opened without following symbolic links: a new file is linked in place only if
nothing has that name (never replacing), an edit replaces the file only while its bytes still hash to the
version the form was loaded from (a conflict otherwise). No web imports: the pages and their rights and
audit live in ``web/authoring.py``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken

from scheduled_jobs import settings
from scheduled_jobs.catalog import (
    MAX_IDENTIFIER_LENGTH,
    current_catalog,
    current_configurations,
    load_catalog,
    stuck_threshold_problems,
)
from scheduled_jobs.exceptions import Problem, ScheduledJobsError, SettingError
from scheduled_jobs.identifiers import IDENTIFIER_PATTERN, identifier_from_name
from scheduled_jobs.models.jobs import KIND_BY_TAG, JobKind
from scheduled_jobs.redaction import is_unicode
from scheduled_jobs.yaml_files import FILE_KEY, Limits, find_yaml_files, load_mapping

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from scheduled_jobs.catalog import Catalog
    from scheduled_jobs.models.configurations import Configurations

# -- the form's fields --------------------------------------------------------------------------------

COMMON_FIELDS = ("name", "identifier", "description", "disabled", "job", "expression", "timezone", "priority")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "incoming": ("incoming_configuration", "overlap"),
    "outgoing": ("route", "tasks_to_export", "overlap"),
    "repair_stuck_tasks": ("stuck_after_minutes", "max_attempts"),
    "prune_tasks": ("retention_days", "batch_size"),
}
"""Each kind's own keys, as the form asks for them (tests check this covers every kind's model)."""
ORDER = (
    "name",
    "identifier",
    "description",
    "disabled",
    "job",
    "incoming_configuration",
    "route",
    "tasks_to_export",
    "stuck_after_minutes",
    "max_attempts",
    "retention_days",
    "batch_size",
    "expression",
    "timezone",
    "priority",
    "overlap",
)
"""Every key the form writes, in the order a new file lists them (the examples' order)."""
FIELDS = frozenset(ORDER)
INTEGER_FIELDS = frozenset(
    {"priority", "tasks_to_export", "stuck_after_minutes", "max_attempts", "retention_days", "batch_size"}
)
MULTILINE_FIELDS = frozenset({"description"})
LIMITS = {"name": 200, "description": 2000, "expression": 200, "timezone": 64}
"""The longest value of each text field, in characters; any other text field holds an identifier."""
TEXT_LIMIT = MAX_IDENTIFIER_LENGTH
NUMBER_DIGITS = 12
UNPLACED_TIMEZONES = {
    "localtime": "is the server's own zone, which differs between machines; name the zone (e.g. Europe/Amsterdam)",
    "Factory": "is tzdata's placeholder zone (shown as -00), not a place; name the zone (e.g. Europe/Amsterdam)",
}
"""Zones ``zoneinfo`` lists that name no place: never offered, refused by the form."""
GENERAL = "(form)"
"""Where a problem that belongs to no one field is shown: above the form."""


def fields_of(kind: str) -> tuple[str, ...]:
    """The keys a job of ``kind`` has in the form; an unknown kind has the common ones only."""
    return COMMON_FIELDS + KIND_FIELDS.get(kind, ())


def _default(kind: str, key: str) -> Any:
    """The model's default of ``key`` for ``kind`` (what an absent key means); ``None`` when it has none."""
    model: type[JobKind] | None = KIND_BY_TAG.get(kind)
    info = model.model_fields.get(key) if model is not None else JobKind.model_fields.get(key)
    if info is None or info.is_required():
        return None
    return info.default


class Problems(dict[str, list[str]]):
    """Reasons by form field (``GENERAL`` for the form as a whole)."""

    def add(self, key: str, reason: str) -> None:
        self.setdefault(key, []).append(reason)


# -- a form's values ----------------------------------------------------------------------------------


def _text_problem(key: str, value: str) -> str | None:
    if "\x00" in value:
        return "holds a NUL character"
    if not is_unicode(value):
        return "is not valid text (a lone surrogate)"
    limit = LIMITS.get(key, TEXT_LIMIT)
    if len(value) > limit:
        return f"is at most {limit} characters, got {len(value)}"
    allowed = "\n\t" if key in MULTILINE_FIELDS else ""
    if any((ord(c) < 32 and c not in allowed) or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in value):
        return "must be one line of text, without control characters" if not allowed else "holds a control character"
    return None


def desired(form: Mapping[str, str], problems: Problems) -> dict[str, Any]:
    """The values the form asks for, typed, in ``ORDER``; ``None`` for a key the file should not hold.

    Texts are checked here (NUL, surrogates, control characters, length); a number that is not one is kept
    as the text typed, so that the model's own check words the problem (``must be a whole number``).
    """
    kind = (form.get("job") or "").strip()
    values: dict[str, Any] = {}
    for key in fields_of(kind):
        if key == "disabled":
            values[key] = (form.get(key) or "").strip().lower() in ("1", "true", "on", "yes")
            continue
        raw = form.get(key) or ""
        if key in MULTILINE_FIELDS:
            # A browser submits a textarea's line breaks as CRLF (the HTML form encoding): they are line breaks.
            raw = raw.replace("\r\n", "\n").replace("\r", "\n")
        reason = _text_problem(key, raw)
        if reason is not None:
            problems.add(key, reason)
            values[key] = None
            continue
        text = raw.strip() if key not in MULTILINE_FIELDS else raw.strip("\n").rstrip()
        if key in INTEGER_FIELDS:
            bare = text.removeprefix("-")
            digits = bare.isascii() and bare.isdigit()
            if digits and len(bare) > NUMBER_DIGITS:
                problems.add(key, f"is too large: at most {NUMBER_DIGITS} digits, got {len(bare)}")
                values[key] = None
                continue
            values[key] = int(text) if digits else (text or None)
        elif key == "timezone" and text in UNPLACED_TIMEZONES:
            problems.add(key, f"{text!r} {UNPLACED_TIMEZONES[text]}")
            values[key] = None
        else:
            values[key] = text or None
    if not values.get("identifier") and values.get("name"):
        values["identifier"] = identifier_from_name(values["name"]) or None
    identifier = values.get("identifier")
    if identifier is not None and not is_identifier(identifier):
        problems.add(
            "identifier",
            "must be lowercase letters and digits in groups joined by single dashes (e.g. orders-to-erp), "
            f"at most {MAX_IDENTIFIER_LENGTH} characters",
        )
    return values


def is_identifier(value: str) -> bool:
    """Whether ``value`` is an identifier, and so a safe file name: no ``/``, no ``..``, nothing hidden."""
    return len(value) <= MAX_IDENTIFIER_LENGTH and re.fullmatch(IDENTIFIER_PATTERN, value) is not None


# -- YAML out ---------------------------------------------------------------------------------------

_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


def _scalar(value: Any) -> Any:
    """A value as ruamel should emit it, so that the project's YAML 1.1 reader reads back the same value.

    ruamel.yaml writes YAML 1.2, where ``yes``, ``on``, ``1:30`` or ``=`` are plain strings; PyYAML (YAML
    1.1) reads them as a boolean, a number or a tag it refuses. Such a text is double-quoted.
    """
    if not isinstance(value, str):
        return value
    if "\n" in value:
        if any(line[:1].isspace() for line in value.split("\n")):
            # A line that starts with a tab or space makes a literal block that YAML readers refuse or
            # re-indent: double quotes keep every character (tabs and line breaks as escapes).
            return DoubleQuotedScalarString(value)
        return LiteralScalarString(value)
    if _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) != _STR_TAG:  # type: ignore[no-untyped-call]
        return DoubleQuotedScalarString(value)
    return value


def _yaml() -> YAML:
    handler = YAML(typ="rt")
    handler.preserve_quotes = True
    handler.width = 4096  # a long description stays on one line, as a person writes it
    return handler


@dataclass(frozen=True)
class Layout:
    """What of a file's form ruamel does not keep by itself: its BOM, line endings and document markers."""

    bom: bool = False
    crlf: bool = False
    start: bool = False
    end: bool = False
    head: str = ""
    """Comment, blank and directive lines before ``---``: ruamel drops them, so they are kept verbatim."""


_START = re.compile(r"^---(?:[ \t]|$)", re.MULTILINE)
_END = re.compile(r"^\.\.\.(?:[ \t]|$)", re.MULTILINE)


def _layout(text: str) -> tuple[Layout, str]:
    """The file's layout, and its text for ruamel (no BOM, LF line ends, no lines before ``---``)."""
    bom = text.startswith("\ufeff")
    body = text.removeprefix("\ufeff").replace("\r\n", "\n")
    start = _START.search(body)
    head = ""
    if start is not None:
        before = body[: start.start()]
        if all(not line.strip() or line.lstrip()[:1] in "#%" for line in before.splitlines()):
            head, body = before, body[start.start() :]
    layout = Layout(bom=bom, crlf="\r\n" in text, start=start is not None, end=_END.search(body) is not None, head=head)
    return layout, body


def _dump(document: Any, layout: Layout | None = None) -> str:
    layout = layout or Layout()
    handler = _yaml()
    handler.explicit_start = layout.start
    handler.explicit_end = layout.end
    stream = io.StringIO()
    try:
        handler.dump(document, stream)
    except YAMLError as exc:  # a representer's refusal: never a 500, never a half-written file
        raise AuthoringError(GENERAL, f"{FILE_KEY}: the edited file cannot be written as YAML ({exc})") from None
    text = layout.head + stream.getvalue()
    if layout.crlf:
        text = text.replace("\n", "\r\n")
    return ("\ufeff" if layout.bom else "") + text


def _load(original: str, path: Path) -> tuple[CommentedMap, Layout]:
    """The file as ruamel's round trip reads it (comments kept), and its layout; a file it cannot read is
    an ``AuthoringError`` naming the line: the project's reader may accept what ruamel's scanner refuses
    (``key:<TAB>value``), and such a file is edited in the repository, not here."""
    layout, body = _layout(original)
    try:
        document = _yaml().load(body)
    except YAMLError as exc:
        where = ""
        if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        what = exc.problem if isinstance(exc, MarkedYAMLError) and exc.problem else type(exc).__name__
        raise AuthoringError(
            GENERAL,
            f"{FILE_KEY}: cannot be changed from the UI: the YAML editor that keeps its comments "
            f"cannot read it ({what}{where}); nothing was saved, change the file in the repository",
        ) from None
    if not isinstance(document, CommentedMap):
        raise AuthoringError(GENERAL, f"{FILE_KEY}: does not hold a mapping ({path.name})")
    return document, layout


def _is_block(value: Any) -> bool:
    return isinstance(value, (LiteralScalarString, FoldedScalarString))


def _take_following_comments(document: CommentedMap, key: Any) -> str:
    """Remove and return the comment lines ruamel attached to ``key`` that stand on the lines below it.

    ruamel stores the comment lines above a key with the key before it; they describe the next key, so a
    removal or an insertion after ``key`` must carry them along. A comment on ``key``'s own line stays.
    """
    entry = document.ca.items.get(key)
    token = entry[2] if entry is not None and len(entry) > 2 else None
    if token is None or not token.value:
        return ""
    value: str = token.value
    if value.startswith("#") and not _is_block(document.get(key)):
        own, _, following = value.partition("\n")
        token.value = own + "\n"
        return following
    entry[2] = None
    return value.removeprefix("\n")


def _give_following_comments(document: CommentedMap, key: Any, lines: str) -> None:
    """Put comment lines (from ``_take_following_comments``) right below ``key``."""
    if not lines:
        return
    entry = document.ca.items.setdefault(key, [None, None, None, None])
    token = entry[2]
    if token is not None and token.value:
        token.value = token.value + lines
    else:
        entry[2] = CommentToken("\n" + lines, CommentMark(0), None)


def _delete(document: CommentedMap, key: str) -> None:
    keys = list(document)
    index = keys.index(key)
    lines = _take_following_comments(document, key)
    del document[key]
    if index > 0:
        _give_following_comments(document, keys[index - 1], lines)
    elif lines:
        # The first key went: its following comments now lead the file.
        comment = document.ca.comment
        token = CommentToken(lines, CommentMark(0), None)
        if comment is None:
            document.ca.comment = [None, [token]]
        else:
            comment[1] = [*(comment[1] or []), token]


def _insert(document: CommentedMap, key: str, value: Any) -> None:
    """Insert ``key`` where ``ORDER`` puts it, below the comments of the key before it, above the next key's."""
    index = _position(document, key)
    keys = list(document)
    lines = _take_following_comments(document, keys[index - 1]) if index > 0 else ""
    document.insert(index, key, value)
    _give_following_comments(document, key, lines)


def new_text(values: Mapping[str, Any]) -> str:
    """The YAML of a new definition: every key with a value other than the model's default, in ``ORDER``."""
    kind = values.get("job") or ""
    document = CommentedMap()
    for key in ORDER:
        value = values.get(key)
        if key not in values or value is None:
            continue
        if key not in ("name", "identifier", "job", "expression") and value == _default(kind, key):
            continue
        document[key] = _scalar(value)
    return _dump(document)


def edited_text(
    original: str, before: Mapping[str, Any], values: Mapping[str, Any], identifier: str, path: Path
) -> str:
    """``original`` with only the keys whose value changed set, added or removed; comments and order kept.

    ``before``: the original as the project's reader reads it (what "changed" is measured against).
    The identifier stays the file's: when the file has none and the new name would make another one,
    ``identifier:`` is written so that the DAG id does not change.
    """
    document, layout = _load(original, path)
    kind = values.get("job") or ""
    wanted = dict(values)
    wanted["identifier"] = identifier
    if "identifier" not in before and identifier_from_name(str(values.get("name") or "")) == identifier:
        wanted["identifier"] = None  # generated from the name, as before: leave it unwritten
    for key in ORDER:
        want = wanted.get(key) if key in wanted else None
        if key in before:
            if want is None:
                _delete(document, key)
            elif before[key] != want or type(before[key]) is not type(want):
                document[key] = _scalar(want)
        elif want is not None and want != _default(kind, key):
            _insert(document, key, _scalar(want))
    return _dump(document, layout)


def _position(document: CommentedMap, key: str) -> int:
    """Where a key the file lacks goes: after the nearest key before it in ``ORDER`` that the file has."""
    earlier = ORDER[: ORDER.index(key)]
    keys = list(document)
    indexes = [keys.index(k) for k in earlier if k in document]
    return max(indexes) + 1 if indexes else 0


def expected_data(before: Mapping[str, Any] | None, values: Mapping[str, Any], text: str) -> dict[str, Any]:
    """What the file must read back as: ``before`` (an edit) or nothing (new) with the form's keys applied."""
    result = dict(before or {})
    kind = values.get("job") or ""
    for key in ORDER:
        want = values.get(key)
        if key == "identifier":
            continue
        if want is None:
            result.pop(key, None)
        elif key in result or want != _default(kind, key) or key in ("name", "job", "expression"):
            result[key] = want
    return result


# -- validation, through the catalog ------------------------------------------------------------------


def field_of(problem_key: str) -> str:
    """The form field a problem's key belongs to (``tasks_to_export``, ``route``), or ``GENERAL``."""
    head = problem_key.split(".", 1)[0].split("[", 1)[0]
    return head if head in FIELDS else GENERAL


@dataclass
class Draft:
    """A form's values turned into a file: its text, and every problem by field."""

    identifier: str | None
    text: str
    problems: Problems = field(default_factory=Problems)
    broken: list[Problem] = field(default_factory=list)
    """Problems the change gives other files (each also a ``GENERAL`` problem, or counted in one)."""
    elsewhere: list[Problem] = field(default_factory=list)
    """Problems other files had before the change and keep: not this save's, but ``validate`` still fails."""

    @property
    def valid(self) -> bool:
        return not self.problems and not self.broken


MAKES_INVALID = "this change makes that file invalid; nothing was saved"


def _everyone(problem: Problem) -> bool:
    return True


def check(
    text: str,
    identifier: str | None,
    expected: Mapping[str, Any],
    problems: Problems,
    *,
    folder: Path | None = None,
    replacing: Path | None = None,
    visible: Callable[[Problem], bool] = _everyone,
) -> Draft:
    """Validate ``text`` as the definition file ``<identifier>.yaml`` within the whole catalog.

    The same pipeline as ``scheduled-jobs validate``: the file is written to a temporary folder and loaded
    by ``load_catalog`` with every other definition (``replacing``, the file an edit replaces, left out),
    so a taken identifier, a missing route or a bad cron are reported exactly as the command reports them.
    The catalog's cross-file rules (duplicate identifiers, the stuck-task threshold against every outgoing
    configuration) then judge every other file too: a problem of another file that it did not have before
    the change (by path and key) refuses the save, as ``path: key: reason`` under ``GENERAL``. ``visible``
    says which files the caller may see named; the others are counted, never named.
    """
    folder = folder or settings.definitions_folder()
    draft = Draft(identifier, text, problems)
    configurations = current_configurations()
    existing = find_yaml_files(folder)
    # The folder as it is: the cache's catalog (a stat of each file keeps it true) when it is the setting's.
    before = current_catalog() if folder == settings.definitions_folder() else _whole(folder, existing, configurations)
    with tempfile.TemporaryDirectory(prefix="scheduled-job-draft-") as scratch:
        # Only an identifier names the copy: "../x" must never place it outside the temporary folder.
        name = identifier if identifier is not None and is_identifier(identifier) else "new-job"
        candidate = Path(scratch) / f"{name}.yaml"
        target = replacing or folder / f"{name}.yaml"
        candidate.write_text(text, encoding="utf-8")
        others = [p for p in existing if replacing is None or p != replacing]
        after = _whole(folder, [*others, candidate], configurations)
        found: list[Problem] = [p for p in after.problems if p.path == str(candidate)]
        for problem in found:
            draft.problems.add(field_of(problem.key), problem.reason)
        had = {(p.path, p.key) for p in before.problems if replacing is None or p.path != str(replacing)}
        for problem in after.problems:
            if problem.path == str(candidate):
                continue
            # The other file's reason may name the checked copy ("also defined in"): name the real file.
            shown = Problem(problem.path, problem.key, problem.reason.replace(str(candidate), str(target)))
            (draft.elsewhere if (problem.path, problem.key) in had else draft.broken).append(shown)
        read_back, unreadable = load_mapping(candidate, Limits.from_settings())
    hidden = 0
    for problem in draft.broken:
        if visible(problem):
            draft.problems.add(GENERAL, f"{problem} ({MAKES_INVALID})")
        else:
            hidden += 1
    if hidden:
        draft.problems.add(
            GENERAL,
            f"{FILE_KEY}: this change makes {hidden} other definition or configuration file(s) that you may not "
            "see invalid; nothing was saved",
        )
    draft.elsewhere = [p for p in draft.elsewhere if visible(p)]
    if unreadable is None and read_back != dict(expected) and not found:
        # Never expected: the emitter and the reader disagree on a value. Refuse rather than save it.
        draft.problems.add(GENERAL, "the YAML made from the form does not read back as the form's values")
    return draft


def _whole(folder: Path, paths: list[Path], configurations: Configurations) -> Catalog:
    """The catalog of ``paths`` with every cross-file rule, as ``scheduled-jobs validate`` loads the folder."""
    catalog = load_catalog(folder, files=paths, configurations=configurations)
    if len(paths) == 1:
        # load_catalog checks one file on its own without the cross-file rules; here it is the whole folder.
        catalog.problems.extend(stuck_threshold_problems(catalog))
        catalog.problems.sort(key=lambda problem: (problem.path, problem.key))
    return catalog


# -- files: read, write, conflicts ------------------------------------------------------------------


class AuthoringError(ScheduledJobsError):
    """A save that cannot be done: ``key`` names the field (or ``GENERAL``) it is about."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class ExistsError(AuthoringError):
    """A new definition's file name is taken: ``path`` is the file that has it."""

    def __init__(self, key: str, reason: str, path: Path) -> None:
        super().__init__(key, reason)
        self.path = path


class ConflictError(ScheduledJobsError):
    """The file changed on disk since the form was loaded: ``theirs`` is its text now (None: removed)."""

    def __init__(self, path: Path, theirs: str | None, version: str | None) -> None:
        what = "was removed" if theirs is None else "was changed"
        super().__init__(f"{path}: {FILE_KEY}: {what} since the form was loaded; nothing was saved")
        self.path = path
        self.theirs = theirs
        self.version = version


def version_of(data: bytes) -> str:
    """A file's version: the SHA-256 of its bytes (a form carries the one it was loaded from)."""
    return hashlib.sha256(data).hexdigest()


def saving_refused() -> str | None:
    """Why the UI may not save definitions now, or None when it may (the setting, then the folder)."""
    try:
        editing = settings.ui_editing()
    except SettingError as exc:
        return str(exc)
    if not editing:
        return (
            "saving from the UI is off ([scheduled_jobs] ui_editing is false): definitions come from the repository; "
            "copy or download the YAML below and commit it to the definitions folder"
        )
    try:
        folder = settings.definitions_folder()
    except SettingError as exc:
        return str(exc)
    if folder.is_symlink():
        return f"the definitions folder {folder} is a symbolic link, which the UI never writes through"
    if not folder.is_dir():
        return f"the definitions folder {folder} does not exist ([scheduled_jobs] definitions_folder)"
    if not os.access(folder, os.W_OK):
        return f"the definitions folder {folder} is not writable by the API server"
    return None


def read_only_reason(mode: int) -> str | None:
    """Why a file of ``mode`` is not replaced by a save (None: it may be): its owner may not write it.

    The mode bits, not ``os.access``: a rename in a writable folder replaces any file, and root may write all.
    """
    if stat.S_IMODE(mode) & stat.S_IWUSR:
        return None
    return f"{FILE_KEY}: is read-only (mode {stat.S_IMODE(mode):04o}); nothing was saved, change its mode first"


def file_refused(path: Path) -> str | None:
    """Why the edit page of ``path`` offers no Save (a read-only file), or None."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None  # a save reports it, under the folder's lock
    if read_only_reason(mode) is None and os.access(path, os.W_OK):
        return None
    return f"{path} is read-only (mode {stat.S_IMODE(mode):04o}): change it in the repository, or change its mode first"


@contextlib.contextmanager
def _folder(folder: Path, relative: Path | None = None) -> Iterator[int]:
    """A descriptor of the definitions folder (or a subfolder of it), locked, no symbolic link followed.

    The lock (``flock`` on the folder itself) serialises the saves of every API server process on this
    machine; another writer (an editor, a ``git pull``) is caught by the version check right before the rename.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        descriptor = os.open(folder, flags)
    except OSError as exc:
        raise AuthoringError(GENERAL, f"the definitions folder {folder} cannot be opened: {exc.strerror}") from None
    try:
        for part in relative.parts if relative is not None else ():
            if part in ("", ".", ".."):
                raise AuthoringError(GENERAL, f"{relative} is not a path inside the definitions folder")
            try:
                inner = os.open(part, flags, dir_fd=descriptor)
            except OSError as exc:
                raise AuthoringError(
                    GENERAL, f"the folder {part!r} cannot be opened ({exc.strerror}); a symbolic link is never followed"
                ) from None
            os.close(descriptor)
            descriptor = inner
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield descriptor
    finally:
        os.close(descriptor)


def _read(descriptor: int, name: str) -> bytes | None:
    """The file's bytes (None when it does not exist); a symbolic link or anything but a file is refused."""
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=descriptor)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuthoringError(GENERAL, f"{name} is a symbolic link, which the UI never writes through") from None
        raise AuthoringError(GENERAL, f"{name} cannot be read: {exc.strerror}") from None
    with os.fdopen(handle, "rb") as opened:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise AuthoringError(GENERAL, f"{name} is not a regular file")
        limit = settings.yaml_max_bytes()
        data = opened.read(limit + 1)
    if len(data) > limit:
        raise AuthoringError(GENERAL, f"{name} is more than {limit} bytes ([scheduled_jobs] yaml_max_bytes)")
    return data


def read_definition(path: Path, folder: Path | None = None) -> tuple[bytes, str]:
    """A definition file's bytes and version, read as a save would read it (no link followed)."""
    folder = folder or settings.definitions_folder()
    relative = _inside(path, folder)
    with _folder(folder, relative.parent) as descriptor:
        data = _read(descriptor, relative.name)
    if data is None:
        raise AuthoringError(GENERAL, f"{path} does not exist")
    return data, version_of(data)


def _inside(path: Path, folder: Path) -> Path:
    relative = Path(os.path.relpath(path, folder))
    if relative.parts[:1] == ("..",) or relative.is_absolute():
        raise AuthoringError(GENERAL, f"{path} is not inside the definitions folder {folder}")
    return relative


def _write_temporary(descriptor: int, stem: str, data: bytes, mode: int) -> str:
    name = f".{stem}.{secrets.token_hex(8)}.tmp"  # hidden: the catalog never reads it
    handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=descriptor)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name, dir_fd=descriptor)
        raise
    return name


@dataclass(frozen=True)
class Saved:
    path: Path
    version: str
    before: str | None
    """The version replaced (None: a new file)."""


def create(identifier: str, text: str, folder: Path | None = None) -> Saved:
    """Write a new ``<identifier>.yaml``; refused when that name (or ``.yml``) is taken, never replaced."""
    folder = folder or settings.definitions_folder()
    if not is_identifier(identifier):
        raise AuthoringError("identifier", "is not an identifier, so no file is named after it")
    data = text.encode("utf-8")
    with _folder(folder) as descriptor:
        for suffix in (".yaml", ".yml"):
            with contextlib.suppress(FileNotFoundError):
                os.lstat(f"{identifier}{suffix}", dir_fd=descriptor)
                taken = folder / (identifier + suffix)
                raise ExistsError("identifier", f"{taken} already exists; choose another", taken)
        temporary = _write_temporary(descriptor, identifier, data, 0o644)
        target = f"{identifier}.yaml"
        try:
            # link(2) fails when the name exists (even as a dangling link): a new file replaces nothing.
            os.link(temporary, target, src_dir_fd=descriptor, dst_dir_fd=descriptor, follow_symlinks=False)
        except FileExistsError:
            taken = folder / target
            raise ExistsError("identifier", f"{taken} already exists; choose another", taken) from None
        finally:
            os.unlink(temporary, dir_fd=descriptor)
        os.fsync(descriptor)
    return Saved(folder / f"{identifier}.yaml", version_of(data), None)


def replace(path: Path, text: str, version: str, folder: Path | None = None) -> Saved:
    """Replace a definition file with ``text`` only while its bytes are still those of ``version``.

    ``ConflictError`` (nothing written) when the file changed or went away since; the check is made
    again right before the atomic rename, under the folder's lock.
    """
    folder = folder or settings.definitions_folder()
    relative = _inside(path, folder)
    data = text.encode("utf-8")
    with _folder(folder, relative.parent) as descriptor:
        current = _read(descriptor, relative.name)
        if current is None or version_of(current) != version:
            raise ConflictError(path, _decoded(current), None if current is None else version_of(current))
        mode = stat.S_IMODE(os.stat(relative.name, dir_fd=descriptor, follow_symlinks=False).st_mode)
        refused = read_only_reason(mode)
        if refused is None and not os.access(relative.name, os.W_OK, dir_fd=descriptor):
            refused = f"{FILE_KEY}: is not writable by the API server; nothing was saved"
        if refused is not None:
            # A rename would replace it all the same (the folder is writable): its mode says "do not change me".
            raise AuthoringError(GENERAL, refused)
        temporary = _write_temporary(descriptor, relative.stem, data, mode)
        try:
            again = _read(descriptor, relative.name)
            if again is None or version_of(again) != version:
                raise ConflictError(path, _decoded(again), None if again is None else version_of(again))
            os.replace(temporary, relative.name, src_dir_fd=descriptor, dst_dir_fd=descriptor)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=descriptor)
            raise
        os.fsync(descriptor)
    return Saved(path, version_of(data), version)


def _decoded(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


# -- what a page does with them -------------------------------------------------------------------


def parse_existing(data: bytes, path: Path) -> dict[str, Any]:
    """The file's mapping as the catalog reads it (bounded, no aliases), from bytes already read."""
    with tempfile.TemporaryDirectory(prefix="scheduled-job-read-") as scratch:
        copy = Path(scratch) / path.name
        copy.write_bytes(data)
        mapping, problem = load_mapping(copy, Limits.from_settings())
    if mapping is None:
        raise AuthoringError(GENERAL, f"{path}: {problem.reason if problem else 'cannot be read'}")
    return mapping


def form_values(mapping: Mapping[str, Any], identifier: str) -> dict[str, str]:
    """A file's values as the form shows them (text), its identifier resolved."""
    shown: dict[str, str] = {}
    for key in ORDER:
        value = mapping.get(key)
        if key == "disabled":
            shown[key] = "on" if value is True else ""
        elif value is not None:
            shown[key] = str(value)
    shown["identifier"] = identifier
    return shown


def new_draft(form: Mapping[str, str], visible: Callable[[Problem], bool] = _everyone) -> tuple[Draft, dict[str, Any]]:
    """A new job's file from the form, validated: the draft and the values it holds."""
    problems = Problems()
    values = desired(form, problems)
    text = new_text(values)
    expected = expected_data(None, values, text)
    if values.get("identifier"):
        expected["identifier"] = values["identifier"]
    return check(text, values.get("identifier"), expected, problems, visible=visible), values


def edit_draft(
    form: Mapping[str, str],
    path: Path,
    identifier: str,
    original: bytes,
    visible: Callable[[Problem], bool] = _everyone,
) -> tuple[Draft, dict[str, Any]]:
    """An edit of the file at ``path`` (its bytes ``original``) from the form, validated."""
    problems = Problems()
    values = desired({**form, "identifier": identifier}, problems)
    before = parse_existing(original, path)
    for key in MULTILINE_FIELDS:
        # The form drops a text's final line break (a ``|`` block's): an unchanged text stays as the file has it.
        kept = before.get(key)
        if isinstance(kept, str) and isinstance(values.get(key), str) and _same_text(kept, values[key]):
            values[key] = kept
    text = edited_text(original.decode("utf-8"), before, values, identifier, path)
    expected = expected_data(before, values, text)
    if "identifier" in before or identifier_from_name(str(values.get("name") or "")) != identifier:
        expected["identifier"] = identifier
    return check(text, identifier, expected, problems, replacing=path, visible=visible), values


def _same_text(kept: str, shown: str) -> bool:
    return kept.replace("\r\n", "\n").strip("\n").rstrip() == shown


def toggled_text(original: bytes, path: Path, disabled: bool) -> str:
    """The file with ``disabled:`` set (only that key touched); comments and order kept."""
    before = parse_existing(original, path)
    if before.get("disabled") is disabled:
        return original.decode("utf-8")
    document, layout = _load(original.decode("utf-8"), path)
    if "disabled" in document:
        document["disabled"] = disabled
    else:
        _insert(document, "disabled", disabled)
    return _dump(document, layout)


def toggle_draft(
    original: bytes, path: Path, identifier: str, disabled: bool, visible: Callable[[Problem], bool] = _everyone
) -> Draft:
    """The file with ``disabled:`` set, checked within the whole catalog as any other save."""
    before = parse_existing(original, path)
    text = toggled_text(original, path, disabled)
    expected = dict(before) if before.get("disabled") is disabled else {**before, "disabled": disabled}
    return check(text, identifier, expected, Problems(), replacing=path, visible=visible)
