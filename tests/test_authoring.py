"""Writing job definitions from the UI (``authoring.py``, ``web/authoring.py``): the form's values become a
file that ``scheduled-jobs validate`` accepts and that reads back exactly as typed; writes are atomic,
never replace, never follow a link, never leave the folder, and never overwrite a file changed since the
form was loaded. Then the pages in a real API server: rights, CSRF, the audit log, hostile bodies.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduled_jobs import authoring
from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.cli import main as cli_main
from scheduled_jobs.models.jobs import KINDS, JobKind

if TYPE_CHECKING:
    from helpers.live_api import Server

FORMS: dict[str, dict[str, str]] = {
    "incoming": {"job": "incoming", "incoming_configuration": "product-catalog", "overlap": "skip"},
    "outgoing": {"job": "outgoing", "route": "orders-to-erp", "tasks_to_export": "25"},
    "repair_stuck_tasks": {"job": "repair_stuck_tasks", "stuck_after_minutes": "45", "max_attempts": "4"},
    "prune_tasks": {"job": "prune_tasks", "retention_days": "14", "batch_size": "500"},
}


def form(**values: str) -> dict[str, str]:
    base = {"name": "Nightly orders", "expression": "0 2 * * *", "timezone": "Europe/Amsterdam", "priority": "0"}
    return {**base, **FORMS["outgoing"], **values}


def files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too), with its bytes: to see that nothing else changed."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            found[str(path.relative_to(folder))] = b"<link>" if path.is_symlink() else path.read_bytes()
    return found


# -- the form covers every kind ----------------------------------------------------------------------


def test_the_form_has_every_key_of_every_job_kind() -> None:
    common = set(JobKind.model_fields) - {"job"}
    assert common <= set(authoring.COMMON_FIELDS)
    for kind in KINDS:
        own = set(kind.model_fields) - set(JobKind.model_fields)
        assert own == set(authoring.KIND_FIELDS[kind.tag()]), kind.tag()
    assert set(authoring.ORDER) == set(authoring.COMMON_FIELDS).union(*authoring.KIND_FIELDS.values())


@pytest.mark.parametrize("kind", list(FORMS))
def test_a_new_job_of_each_kind_is_saved_valid_and_reads_back_as_typed(project: Path, kind: str) -> None:
    folder = project / "job_definitions"
    values = {"name": f"My {kind} job", "expression": "*/10 * * * *", "timezone": "UTC", "priority": "7", **FORMS[kind]}
    draft, _ = authoring.new_draft(values)
    assert draft.valid, draft.problems
    saved = authoring.create(draft.identifier or "", draft.text)
    assert saved.path == folder / f"my-{kind.replace('_', '-')}-job.yaml"
    assert cli_main(["validate"]) == 0  # the command users run agrees
    job = load_catalog(folder).jobs[draft.identifier or ""]
    written = yaml.safe_load(saved.path.read_text())
    for key, value in FORMS[kind].items():
        if key != "overlap":
            assert str(written[key]) == value
    assert job.definition.priority == 7 and job.definition.name == f"My {kind} job"
    assert list(written)[:2] == ["name", "identifier"]
    assert not [name for name in os.listdir(folder) if name.startswith(".")], "a temporary file was left"


def test_problems_are_reported_at_the_field_they_belong_to(project: Path) -> None:
    draft, _ = authoring.new_draft(
        form(
            name="Shop orders incoming",  # its identifier is taken by the example job
            expression="0 25 * * *",
            timezone="Mars/Olympus",
            route="nowhere",
            tasks_to_export="abc",
            priority="1.5",
        )
    )
    problems = dict(draft.problems)
    assert problems["expression"] == ["hour: 25 is out of range 0-23"]
    assert "'Mars/Olympus' is not an IANA time zone name" in problems["timezone"][0]
    assert problems["route"][0].startswith("no route has identifier 'nowhere'")
    assert problems["tasks_to_export"] == ["must be a whole number, got 'abc'"]
    assert problems["priority"] == ["must be a whole number, got '1.5'"]
    assert "scheduled job 'shop-orders-incoming' is also defined in" in problems["identifier"][0]
    assert authoring.field_of("publisher.retry.attempts") == authoring.GENERAL
    assert authoring.field_of("tasks_to_export") == "tasks_to_export"


# -- YAML injection ---------------------------------------------------------------------------------

HOSTILE_TEXTS = [
    "yes",
    "no",
    "on",
    "off",
    "null",
    "~",
    "1:30",
    "=",
    "0x1F",
    ".inf",
    "2026-01-01",
    "12",
    "-",
    "- item",
    "job: prune_tasks",
    "x\njob: prune_tasks\nretention_days: 1",
    "# not a comment",
    "value # trailing",
    "&anchor",
    "*alias",
    "!!python/object/apply:os.system ['touch /tmp/pwned']",
    "{a: 1}",
    "[1, 2]",
    "'single'",
    '"double"',
    "back\\slash",
    " leading and trailing ",
    "%YAML 1.1",
    "---",
    "...",
    "é ß 日本 🙂",
    "|",
    ">",
    "@at",
    "`tick`",
    "a: b: c",
    "line one\n\n  indented line\n",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_a_name_or_description_is_written_as_one_scalar_that_reads_back_exactly(project: Path, text: str) -> None:
    """Without the quoting of YAML 1.1 words (``yes``, ``1:30``, ``=``) the file would read back as another value."""
    one_line = text.replace("\n", " ").strip() or "x"
    draft, _ = authoring.new_draft(form(name=one_line, identifier="hostile", description=text))
    assert draft.valid, (text, draft.problems)
    saved = authoring.create("hostile", draft.text)
    written = yaml.load(saved.path.read_text(), Loader=yaml.SafeLoader)
    assert written["name"] == one_line
    assert written["description"] == text.strip("\n").rstrip()
    assert set(written) == {
        "name",
        "identifier",
        "description",
        "job",
        "route",
        "tasks_to_export",
        "expression",
        "timezone",
    }
    job = load_catalog(project / "job_definitions").jobs["hostile"]
    assert job.definition.name == one_line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60).filter(
        lambda s: s.strip() and "\x7f" not in s and not any(0x80 <= ord(c) < 0xA0 for c in s)
    )
)
def test_any_name_reads_back_exactly(project: Path, name: str) -> None:
    draft, values = authoring.new_draft(form(name=name, identifier="any-name"))
    assert "name" not in draft.problems, draft.problems
    assert authoring.GENERAL not in draft.problems, (name, draft.text)
    written = yaml.load(draft.text, Loader=yaml.SafeLoader)
    assert written["name"] == values["name"] == name.strip()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("name", "Orders\x00", "holds a NUL character"),
        ("description", "a\x00b", "holds a NUL character"),
        ("name", "bad \ud800 text", "is not valid text (a lone surrogate)"),
        ("name", "two\nlines", "must be one line of text"),
        ("name", "bell\x07", "must be one line of text"),
        ("expression", "* * * * *\u2028job: x", "must be one line of text"),
        ("description", "escape \x1b[31m", "holds a control character"),
        ("name", "n" * 201, "is at most 200 characters, got 201"),
        ("description", "d" * 2001, "is at most 2000 characters, got 2001"),
        ("expression", "*" * 201, "is at most 200 characters"),
        ("route", "r" * 5000, "is at most 200 characters"),
    ],
)
def test_hostile_field_values_are_refused_at_their_field(project: Path, key: str, value: str, reason: str) -> None:
    draft, _ = authoring.new_draft(form(**{key: value, "identifier": "refused"}))
    assert any(reason in text for text in draft.problems.get(key, [])), draft.problems


# -- the file system ---------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["../escape", "..", "a/b", "/tmp/escape", ".hidden", "escape/..", "UPPER"])
def test_an_identifier_never_names_a_path_outside_the_folder(project: Path, identifier: str) -> None:
    before = files(project)
    scratch = Path(tempfile.gettempdir())
    outside = {scratch / "escape.yaml", project / "escape.yaml"}
    draft, _ = authoring.new_draft(form(identifier=identifier))
    assert draft.problems.get("identifier"), draft.problems
    assert not any(path.exists() for path in outside), "the draft was written outside its temporary folder"
    with pytest.raises(authoring.AuthoringError):
        authoring.create(identifier, draft.text)
    assert files(project) == before


def test_a_new_file_never_replaces_an_existing_file_or_link(project: Path) -> None:
    folder = project / "job_definitions"
    outside = project / "outside.yaml"
    outside.write_text("theirs: true\n")
    (folder / "linked.yaml").symlink_to(outside)
    (folder / "dangling.yaml").symlink_to(project / "nothing-here.yaml")
    (folder / "taken.yml").write_text("x: 1\n")
    before = files(project)
    for identifier in ("shop-orders-incoming", "linked", "dangling", "taken"):
        draft, _ = authoring.new_draft(form(identifier=identifier))
        with pytest.raises(authoring.ExistsError):
            authoring.create(identifier, draft.text)
    assert files(project) == before
    assert not (project / "nothing-here.yaml").exists()


def test_an_edit_never_writes_through_a_symbolic_link(project: Path) -> None:
    folder = project / "job_definitions"
    outside = project / "outside.yaml"
    outside.write_text((folder / "prune-tasks.yaml").read_text())
    (folder / "prune-tasks.yaml").unlink()
    (folder / "prune-tasks.yaml").symlink_to(outside)
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inner.yaml").write_text("name: x\n")
    (folder / "team").symlink_to(elsewhere, target_is_directory=True)
    before = files(project)
    with pytest.raises(authoring.AuthoringError, match="symbolic link"):
        authoring.read_definition(folder / "prune-tasks.yaml")
    with pytest.raises(authoring.AuthoringError, match="symbolic link"):
        authoring.replace(folder / "prune-tasks.yaml", "name: changed\n", authoring.version_of(outside.read_bytes()))
    with pytest.raises(authoring.AuthoringError, match="symbolic link is never followed"):
        authoring.replace(folder / "team" / "inner.yaml", "name: y\n", authoring.version_of(b"name: x\n"))
    with pytest.raises(authoring.AuthoringError, match="not inside the definitions folder"):
        authoring.replace(project / "outside.yaml", "name: y\n", authoring.version_of(outside.read_bytes()))
    assert files(project) == before


def test_a_definitions_folder_that_is_a_link_is_never_written(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    link = project / "linked-definitions"
    link.symlink_to(project / "job_definitions", target_is_directory=True)
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER", str(link))
    assert "is a symbolic link" in (authoring.saving_refused() or "")
    before = files(project / "job_definitions")
    draft, _ = authoring.new_draft(form(identifier="through-link"))
    with pytest.raises(authoring.AuthoringError, match="cannot be opened"):
        authoring.create("through-link", draft.text)
    assert files(project / "job_definitions") == before


def test_saving_is_off_unless_the_setting_and_the_folder_allow_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "ui_editing is false" in (authoring.saving_refused() or "")
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    assert authoring.saving_refused() is None
    folder = project / "job_definitions"
    folder.chmod(0o555)
    try:
        if os.geteuid() != 0:  # root may write anyway: the check then is the kernel's, not ours
            assert "is not writable" in (authoring.saving_refused() or "")
    finally:
        folder.chmod(0o755)
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER", str(project / "missing"))
    assert "does not exist" in (authoring.saving_refused() or "")


# -- edits keep the file --------------------------------------------------------------------------

COMMENTED = """\
# Orders go to the ERP every minute.  (a comment at the top)
name: Orders to ERP export   # the seed's Name
description: Push new orders to the ERP, 100 at a time.
job: outgoing
# which route:
route: orders-to-erp
tasks_to_export: 100
expression: "* * * * *"
timezone: Europe/Amsterdam
priority: 5  # above the imports
"""


def test_an_edit_changes_only_the_keys_that_changed_and_keeps_comments_and_order(project: Path) -> None:
    path = project / "job_definitions" / "orders-to-erp-export.yaml"
    path.write_text(COMMENTED)
    data, version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), "orders-to-erp-export")
    values.update(expression="*/5 * * * *", tasks_to_export="50", disabled="on")
    draft, _ = authoring.edit_draft(values, path, "orders-to-erp-export", data)
    assert draft.valid, draft.problems
    authoring.replace(path, draft.text, version)
    lines = path.read_text().splitlines()
    old = COMMENTED.splitlines()
    assert lines[0] == old[0] and lines[1] == old[1] and "# which route:" in lines
    assert lines[-1] == "priority: 5  # above the imports"
    changed = [line for line in lines if line not in old]
    assert changed == ["disabled: true", "tasks_to_export: 50", 'expression: "*/5 * * * *"'], changed
    assert lines.index("disabled: true") == lines.index("description: Push new orders to the ERP, 100 at a time.") + 1
    # A new name would make another identifier: the file then says which one it keeps (its DAG id).
    data, version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), "orders-to-erp-export")
    draft, _ = authoring.edit_draft({**values, "name": "ERP export"}, path, "orders-to-erp-export", data)
    authoring.replace(path, draft.text, version)
    assert load_catalog(project / "job_definitions").jobs["orders-to-erp-export"].name == "ERP export"


def test_a_file_changed_since_the_form_was_loaded_is_never_overwritten(project: Path) -> None:
    path = project / "job_definitions" / "orders-to-erp-export.yaml"
    data, version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), "orders-to-erp-export")
    draft, _ = authoring.edit_draft({**values, "priority": "9"}, path, "orders-to-erp-export", data)
    theirs = path.read_text().replace("priority: 5", "priority: 6  # a colleague's change")
    path.write_text(theirs)
    with pytest.raises(authoring.ConflictError) as conflict:
        authoring.replace(path, draft.text, version)
    assert conflict.value.theirs == theirs and path.read_text() == theirs
    path.unlink()
    with pytest.raises(authoring.ConflictError) as removed:
        authoring.replace(path, draft.text, version)
    assert removed.value.theirs is None and not path.exists()


def test_disable_and_enable_touch_only_the_disabled_key(project: Path) -> None:
    path = project / "job_definitions" / "orders-to-erp-export.yaml"
    path.write_text(COMMENTED)
    path.chmod(0o640)
    data, version = authoring.read_definition(path)
    authoring.replace(path, authoring.toggled_text(data, path, True), version)
    assert [line for line in path.read_text().splitlines() if line not in COMMENTED.splitlines()] == ["disabled: true"]
    assert (path.stat().st_mode & 0o777) == 0o640  # the file keeps its mode
    data, version = authoring.read_definition(path)
    authoring.replace(path, authoring.toggled_text(data, path, False), version)
    assert path.read_text() == COMMENTED.replace("description: Push", "description: Push").replace(
        "100 at a time.\n", "100 at a time.\ndisabled: false\n"
    )


# -- the pages in a real API server --------------------------------------------------------------------


def _page(server: Server, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}/scheduled-jobs{path}", cookies={"_token": token}, timeout=30)


def _token_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def _post(
    server: Server, token: str, path: str, fields: list[tuple[str, str]] | bytes, **headers: str
) -> httpx.Response:
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    return httpx.post(
        f"{server.url}/scheduled-jobs{path}",
        content=body,
        cookies={"_token": token},
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        timeout=30,
    )


def _audit_rows(since: int = 0) -> list[dict[str, Any]]:
    from test_web_console import audit_rows

    return [row for row in audit_rows(since) if row["event"].startswith("scheduled_jobs.job_definitions.")]


def _last_audit() -> int:
    from test_web_console import last_audit_id

    return last_audit_id()


@pytest.fixture
def editing(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__UI_EDITING", "True")
    return project / "job_definitions"


def test_the_form_creates_a_job_says_when_its_dag_appears_and_audits_it(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    admin = tokens["admin"]
    page = _page(server, admin, "/jobs/new")
    assert page.status_code == 200
    assert 'option value="product-catalog"' in page.text and 'option value="orders-to-erp"' in page.text
    assert 'list="timezones"' in page.text and '<option value="Europe/Amsterdam">' in page.text
    jobs = _page(server, admin, "/jobs").text
    assert 'id="new-job"' in jobs and "/disable" in jobs and 'class="edit-job"' in jobs
    since = _last_audit()
    fields = [("csrf_token", _token_of(page.text)), *form(name="Nightly orders: the ERP").items(), ("do", "save")]
    saved = _post(server, admin, "/jobs/new", fields)
    assert saved.status_code == 201, saved.text
    assert "appears at the next parse" in saved.text and "min_file_process_interval" in saved.text
    path = editing / "nightly-orders-the-erp.yaml"
    assert yaml.safe_load(path.read_text())["name"] == "Nightly orders: the ERP"
    (row,) = _audit_rows(since)
    assert row["event"] == "scheduled_jobs.job_definitions.create" and row["owner"] == "admin"
    assert row["extra"]["identifier"] == "nightly-orders-the-erp" and row["extra"]["path"] == str(path)
    again = _post(server, admin, "/jobs/new", fields)  # the same identifier again
    assert again.status_code == 422 and "is also defined in" in again.text
    assert len(_audit_rows(since)) == 1


def test_without_ui_editing_the_form_gives_the_yaml_and_writes_nothing(
    server: Server, tokens: dict[str, str], project: Path
) -> None:
    admin = tokens["admin"]
    before = files(project / "job_definitions")
    page = _page(server, admin, "/jobs/new")
    assert "Definitions come from the repository" in page.text and 'id="save"' not in page.text
    jobs = _page(server, admin, "/jobs").text
    assert "/disable" not in jobs  # no toggles: nothing may be saved
    fields = [("csrf_token", _token_of(page.text)), *form().items(), ("do", "save")]
    answer = _post(server, admin, "/jobs/new", fields)
    assert answer.status_code == 200 and 'id="yaml"' in answer.text and "download=" in answer.text
    shown = re.search(r'<pre id="yaml">(.*?)</pre>', answer.text, re.S)
    assert shown and "name: Nightly orders" in shown.group(1)
    toggled = _post(server, admin, "/jobs/prune-tasks/disable", [("csrf_token", _token_of(page.text))])
    assert toggled.status_code == 200 and "disabled: true" in toggled.text
    assert files(project / "job_definitions") == before


def test_problems_show_at_their_fields_on_the_page(server: Server, tokens: dict[str, str], editing: Path) -> None:
    admin = tokens["admin"]
    token = _token_of(_page(server, admin, "/jobs/new").text)
    before = files(editing)
    fields = [("csrf_token", token), *form(expression="61 * * * *", route="nowhere").items(), ("do", "save")]
    answer = _post(server, admin, "/jobs/new", fields)
    assert answer.status_code == 422
    expression = re.search(r'data-field="expression"><li>(.*?)</li>', answer.text)
    assert expression and "minute: 61 is out of range 0-59" in expression.group(1)
    assert re.search(r'data-field="route"><li>route: no route has identifier', answer.text)
    assert 'id="f-expression" name="expression" value="61 * * * *"' in answer.text  # the form keeps what was typed
    assert files(editing) == before


def test_saving_needs_the_right_to_edit_dags_and_a_csrf_token(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    before, since = files(editing), _last_audit()
    viewer_page = _page(server, tokens["viewer"], "/jobs/new")
    assert viewer_page.status_code == 200 and "Saving scheduled jobs needs the right to edit DAGs" in viewer_page.text
    fields = [*form().items(), ("do", "save")]
    viewer = _post(server, tokens["viewer"], "/jobs/new", [("csrf_token", _token_of(viewer_page.text)), *fields])
    assert viewer.status_code == 403 and "right to edit DAGs" in viewer.text
    foreign = {"Origin": "http://evil.example"}
    for token in ("", "1.deadbeef", _token_of(_page(server, tokens["user"], "/jobs/new").text)):
        forged = _post(server, tokens["admin"], "/jobs/new", [("csrf_token", token), *fields], **foreign)
        assert forged.status_code == 403 and "CSRF token" in forged.text
        toggled = _post(server, tokens["admin"], "/jobs/prune-tasks/disable", [("csrf_token", token)], **foreign)
        assert toggled.status_code == 403
    assert files(editing) == before and _last_audit() == since
    user = _page(server, tokens["user"], "/jobs/new")
    saved = _post(server, tokens["user"], "/jobs/new", [("csrf_token", _token_of(user.text)), *fields])
    assert saved.status_code == 201
    bearer = httpx.post(  # a bearer token needs no CSRF token: no browser sends one on its own
        f"{server.url}/scheduled-jobs/jobs/new",
        content=urlencode([*form(name="By script").items(), ("do", "save")]),
        headers={"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert bearer.status_code == 201 and (editing / "by-script.yaml").exists()


def test_hostile_bodies_are_refused_and_write_nothing(server: Server, tokens: dict[str, str], editing: Path) -> None:
    admin = tokens["admin"]
    token = _token_of(_page(server, admin, "/jobs/new").text)
    before, since = files(editing), _last_audit()
    huge = _post(server, admin, "/jobs/new", urlencode([("csrf_token", token), ("name", "x" * 300_000)]).encode())
    assert huge.status_code == 413 and "body: is more than" in huge.text
    latin1 = _post(server, admin, "/jobs/new", f"csrf_token={token}&name=caf%E9".encode())
    assert latin1.status_code == 422 and "body: is not UTF-8" in latin1.text
    raw = _post(server, admin, "/jobs/new", f"csrf_token={token}&name=caf\xe9".encode("latin-1"))
    assert raw.status_code == 422 and "body: is not UTF-8" in raw.text
    many = _post(server, admin, "/jobs/new", "&".join(f"f{n}=1" for n in range(500)).encode())
    assert many.status_code == 413 and "fields" in many.text
    nul = _post(server, admin, "/jobs/new", [("csrf_token", token), *form(name="Orders\x00").items(), ("do", "save")])
    assert nul.status_code == 422 and "name: holds a NUL character" in nul.text
    long = _post(server, admin, "/jobs/new", [("csrf_token", token), *form(name="n" * 5000).items(), ("do", "save")])
    assert long.status_code == 422 and "name: is at most 200 characters, got 5000" in long.text
    tricks = _post(
        server, admin, "/jobs/new", [("csrf_token", token), *form(identifier="../../escape").items(), ("do", "save")]
    )
    assert tricks.status_code == 422 and "identifier: must be lowercase letters" in tricks.text
    missing = _page(server, admin, "/jobs/..%2F..%2Fetc/edit")
    assert missing.status_code == 404
    assert files(editing) == before and _last_audit() == since
    assert not (editing.parent / "escape.yaml").exists() and not Path(tempfile.gettempdir(), "escape.yaml").exists()


def test_an_edit_page_saves_only_over_the_version_it_loaded(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    admin = tokens["admin"]
    path = editing / "orders-to-erp-export.yaml"
    path.write_text(COMMENTED)
    page = _page(server, admin, "/jobs/orders-to-erp-export/edit")
    assert page.status_code == 200 and 'value="Orders to ERP export"' in page.text
    version = re.search(r'name="version" value="([0-9a-f]{64})"', page.text)
    assert version
    values = authoring.form_values(yaml.safe_load(COMMENTED), "orders-to-erp-export")
    fields = [("csrf_token", _token_of(page.text)), ("version", version.group(1)), *values.items(), ("do", "save")]
    theirs = COMMENTED.replace("priority: 5", "priority: 6")
    path.write_text(theirs)  # a colleague's commit lands while the form is open
    since = _last_audit()
    conflict = _post(server, admin, "/jobs/orders-to-erp-export/edit", [*fields[:-1], ("priority", "8"), fields[-1]])
    assert conflict.status_code == 409 and 'id="conflict"' in conflict.text
    assert "priority: 6" in re.search(r'<pre id="theirs">(.*?)</pre>', conflict.text, re.S).group(1)  # type: ignore[union-attr]
    assert path.read_text() == theirs and _last_audit() == since
    fresh = _page(server, admin, "/jobs/orders-to-erp-export/edit")
    new_version = re.search(r'name="version" value="([0-9a-f]{64})"', fresh.text).group(1)  # type: ignore[union-attr]
    fields = [("csrf_token", _token_of(fresh.text)), ("version", new_version)]
    fields += [*{**values, "priority": "8"}.items(), ("do", "save")]
    saved = _post(server, admin, "/jobs/orders-to-erp-export/edit", fields)
    assert saved.status_code == 200, saved.text
    assert path.read_text() == theirs.replace("priority: 6", "priority: 8")  # comments and all
    (row,) = _audit_rows(since)
    assert row["event"] == "scheduled_jobs.job_definitions.update" and row["extra"]["changed"] == ["priority"]


def _dag_paused(dag_id: str) -> bool | None:
    """Whether Airflow's DAG is paused, from this session's metadata database; None when it has no such DAG."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.get(DagModel, dag_id)
        return None if found is None else bool(found.is_paused)


def test_disable_from_the_jobs_page_writes_the_key_and_audits(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    admin = tokens["admin"]
    path = editing / "orders-to-erp-export.yaml"
    path.write_text(COMMENTED)
    token = _token_of(_page(server, admin, "/jobs").text)
    since = _last_audit()
    dag_before = _dag_paused("orders-to-erp-export")
    answer = _post(server, admin, "/jobs/orders-to-erp-export/disable", [("csrf_token", token)])
    assert answer.status_code == 200 and 'id="dag-pause"' in answer.text
    if dag_before is None:  # this API server's Airflow never parsed it (no test before this one did)
        assert "Airflow has no DAG" in answer.text
    else:  # an earlier test's scheduler or DAG processor wrote it to this session's metadata database
        assert "Its DAG is paused in Airflow." in answer.text and _dag_paused("orders-to-erp-export") is True
    assert [line for line in path.read_text().splitlines() if line not in COMMENTED.splitlines()] == ["disabled: true"]
    jobs = _page(server, admin, "/jobs").text
    assert 'action="jobs/orders-to-erp-export/enable"' in jobs
    answer = _post(server, admin, "/jobs/orders-to-erp-export/enable", [("csrf_token", token)])
    assert answer.status_code == 200
    assert _dag_paused("orders-to-erp-export") is (None if dag_before is None else False)
    events = [(row["event"], row["extra"]["changed"]) for row in _audit_rows(since)]
    assert events == [
        ("scheduled_jobs.job_definitions.disable", ["disabled"]),
        ("scheduled_jobs.job_definitions.enable", ["disabled"]),
    ]
    unknown = _post(server, admin, "/jobs/no-such-job/disable", [("csrf_token", token)])
    assert unknown.status_code == 404


# -- what browsers send, files ruamel reads differently, comments, layout ----------------------------


def _edit_fields(server: Server, token: str, identifier: str, values: dict[str, str]) -> list[tuple[str, str]]:
    """What the edit page's form submits: its CSRF token, the version it loaded, and ``values``."""
    page = _page(server, token, f"/jobs/{identifier}/edit")
    assert page.status_code == 200, page.text
    version = re.search(r'name="version" value="([0-9a-f]{64})"', page.text)
    assert version
    return [("csrf_token", _token_of(page.text)), ("version", version.group(1)), *values.items()]


JOB = "orders-to-erp-export"


def test_a_description_with_crlf_line_breaks_is_saved_with_line_breaks(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    """HTML form submission sends a textarea's line breaks as CRLF; they are line breaks, not control characters."""
    admin = tokens["admin"]
    token = _token_of(_page(server, admin, "/jobs/new").text)
    fields = [("csrf_token", token), *form(name="Two lines", description="first line\r\nsecond line\rthird").items()]
    saved = _post(server, admin, "/jobs/new", [*fields, ("do", "save")])
    assert saved.status_code == 201, re.findall(r'data-field="description"><li>(.*?)</li>', saved.text)
    written = yaml.safe_load((editing / "two-lines.yaml").read_text())
    assert written["description"] == "first line\nsecond line\nthird"


def test_chromium_submits_a_two_line_description_and_the_job_is_saved(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    from playwright.sync_api import sync_playwright
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 768})
            context.add_cookies([{"name": "_token", "value": tokens["admin"], "url": server.url}])
            page = context.new_page()
            page.set_default_timeout(20_000)
            posted: list[str] = []
            page.on("request", lambda r: posted.append(r.post_data or "") if r.method == "POST" else None)
            page.goto(server.url + "/scheduled-jobs/jobs/new")
            page.fill("#f-name", "Browser two lines")
            page.select_option("#f-job", "outgoing")
            page.select_option("#f-route", "orders-to-erp")
            page.fill("#f-description", "first line\nsecond line")
            page.fill("#f-expression", "*/5 * * * *")
            page.click("#save")
            page.wait_for_load_state()
            assert posted and "first+line%0D%0Asecond+line" in posted[-1]  # what every browser sends
            problems = page.locator(".field-problems").all_inner_texts()
            assert page.locator("#saved").count() == 1, problems
        finally:
            browser.close()
    written = yaml.safe_load((editing / "browser-two-lines.yaml").read_text())
    assert written["description"] == "first line\nsecond line"


@pytest.mark.parametrize("route", ["edit", "disable"])
def test_a_file_ruamel_cannot_read_gives_a_page_naming_it_and_writes_nothing(
    server: Server, tokens: dict[str, str], editing: Path, route: str
) -> None:
    """``priority:<TAB>5``: the project's reader accepts it (the job is valid), ruamel's scanner does not."""
    admin = tokens["admin"]
    path = editing / f"{JOB}.yaml"
    values = authoring.form_values(yaml.safe_load(path.read_text()), JOB)
    path.write_text(path.read_text().replace("priority: 5", "priority:\t5"))
    assert JOB in load_catalog(editing).jobs
    before, since = files(editing), _last_audit()
    if route == "edit":
        fields = [*_edit_fields(server, admin, JOB, {**values, "priority": "6"}), ("do", "save")]
        answer = _post(server, admin, f"/jobs/{JOB}/edit", fields)
    else:
        answer = _post(
            server, admin, f"/jobs/{JOB}/disable", [("csrf_token", _token_of(_page(server, admin, "/jobs").text))]
        )
    assert answer.status_code == 409, answer.text
    assert f"{path}: (file): cannot be changed from the UI" in answer.text
    assert "at line" in answer.text and "change the file in the repository" in answer.text
    assert files(editing) == before and _last_audit() == since


COMMENTED_SCHEDULE = """\
name: Orders to ERP export
job: outgoing
route: orders-to-erp
tasks_to_export: 100  # agreed with the ERP team
# The schedule: every minute, agreed with the ERP team (ticket 42).
expression: "* * * * *"
timezone: Europe/Amsterdam
"""


def test_removing_a_key_keeps_the_comment_above_the_next_key(project: Path) -> None:
    """ruamel attaches the comment lines above ``expression`` to ``tasks_to_export``, the key removed."""
    path = project / "job_definitions" / f"{JOB}.yaml"
    path.write_text(COMMENTED_SCHEDULE)
    data, version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), JOB)
    values["tasks_to_export"] = ""  # "empty: all"
    draft, _ = authoring.edit_draft(values, path, JOB, data)
    assert draft.valid, draft.problems
    authoring.replace(path, draft.text, version)
    assert path.read_text() == COMMENTED_SCHEDULE.replace("tasks_to_export: 100  # agreed with the ERP team\n", "")


def test_disable_puts_the_key_above_the_comment_of_the_next_key(project: Path) -> None:
    path = project / "job_definitions" / f"{JOB}.yaml"
    original = (
        "name: Orders to ERP export\n# The kind: an export of the route below.\njob: outgoing\n"
        "route: orders-to-erp\nexpression: '* * * * *'\n"
    )
    path.write_text(original)
    data, version = authoring.read_definition(path)
    authoring.replace(path, authoring.toggled_text(data, path, True), version)
    assert path.read_text() == original.replace("\n# The kind", "\ndisabled: true\n# The kind")


BLOCK = """\
name: Orders to ERP export
description: |
  Push new orders to the ERP.
  100 at a time.
job: outgoing
route: orders-to-erp
expression: "* * * * *"
priority: 5
"""


def test_an_edit_leaves_an_unchanged_block_description_as_it_was(project: Path) -> None:
    """The form drops the description's final line break; an unchanged one is neither rewritten nor audited."""
    path = project / "job_definitions" / f"{JOB}.yaml"
    path.write_text(BLOCK)
    data, _version = authoring.read_definition(path)
    before = authoring.parse_existing(data, path)
    values = authoring.form_values(before, JOB)
    values["description"] = values["description"].rstrip("\n").replace("\n", "\r\n")  # as a browser sends it
    values["priority"] = "6"
    draft, _ = authoring.edit_draft(values, path, JOB, data)
    assert draft.valid, draft.problems
    assert draft.text == BLOCK.replace("priority: 5", "priority: 6"), draft.text
    after = authoring.parse_existing(draft.text.encode(), path)
    assert sorted(k for k in {*before, *after} if before.get(k) != after.get(k)) == ["priority"]


def test_an_edit_of_a_crlf_file_keeps_its_line_endings(project: Path) -> None:
    """A Windows-made file: one changed key must not rewrite every line (the whole file in ``git diff``)."""
    path = project / "job_definitions" / f"{JOB}.yaml"
    original = COMMENTED.replace("\n", "\r\n").encode()
    path.write_bytes(original)
    data, version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), JOB)
    values["priority"] = "6"
    draft, _ = authoring.edit_draft(values, path, JOB, data)
    authoring.replace(path, draft.text, version)
    changed = [line for line in path.read_bytes().split(b"\n") if line not in original.split(b"\n")]
    assert changed == [b"priority: 6  # above the imports\r"], changed


MARKED = (
    "\ufeff%YAML 1.1\r\n# Kept above the marker.\r\n---\r\nname: Orders to ERP export\r\njob: outgoing\r\n"
    "route: orders-to-erp\r\nexpression: '* * * * *'\r\npriority: 5\r\n...\r\n"
)


@pytest.mark.parametrize("change", ["edit", "disable"])
def test_a_files_bom_directive_and_document_markers_stay(project: Path, change: str) -> None:
    path = project / "job_definitions" / f"{JOB}.yaml"
    path.write_bytes(MARKED.encode())
    data, version = authoring.read_definition(path)
    if change == "edit":
        values = authoring.form_values(authoring.parse_existing(data, path), JOB)
        draft, _ = authoring.edit_draft({**values, "priority": "6"}, path, JOB, data)
        assert draft.valid, draft.problems
        authoring.replace(path, draft.text, version)
        assert path.read_bytes() == MARKED.replace("priority: 5", "priority: 6").encode()
    else:
        authoring.replace(path, authoring.toggled_text(data, path, True), version)
        assert path.read_bytes() == MARKED.replace("job:", "disabled: true\r\njob:").encode()
    assert load_catalog(project / "job_definitions").jobs[JOB]


@pytest.mark.parametrize("description", ["\tindented first line\nsecond line", "first\n\tsecond\n  third"])
def test_a_description_line_starting_with_a_tab_or_space_is_saved_as_typed(project: Path, description: str) -> None:
    """A literal block cannot start a line with a tab: such a text is written double-quoted, and reads back."""
    draft, _ = authoring.new_draft(form(identifier="tabbed", description=description))
    assert draft.valid, draft.problems
    assert yaml.safe_load(draft.text)["description"] == description


def test_a_viewer_refused_a_save_is_told_about_saving_scheduled_jobs(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    page = _page(server, tokens["viewer"], "/jobs/new")
    answer = _post(server, tokens["viewer"], "/jobs/new", [("csrf_token", _token_of(page.text)), *form().items()])
    assert answer.status_code == 403
    assert "saving scheduled jobs needs the right to edit DAGs" in answer.text
    assert "retrying, skipping or deleting tasks" not in answer.text


def test_a_viewer_is_told_saving_needs_the_right_and_may_still_get_the_yaml(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    viewer = tokens["viewer"]
    before, since = files(editing), _last_audit()
    for path in ("/jobs/new", f"/jobs/{JOB}/edit"):
        page = _page(server, viewer, path)
        assert page.status_code == 200
        assert 'id="no-right"' in page.text and "Saving scheduled jobs needs the right to edit DAGs" in page.text
        assert 'id="save"' not in page.text and 'id="preview"' in page.text
    token = _token_of(_page(server, viewer, "/jobs/new").text)
    shown = _post(server, viewer, "/jobs/new", [("csrf_token", token), *form().items(), ("do", "preview")])
    assert shown.status_code == 200, shown.text
    yaml_text = re.search(r'<pre id="yaml">(.*?)</pre>', shown.text, re.S)
    assert yaml_text and "name: Nightly orders" in yaml_text.group(1) and "download=" in shown.text
    values = authoring.form_values(yaml.safe_load((editing / f"{JOB}.yaml").read_text()), JOB)
    edit = _post(server, viewer, f"/jobs/{JOB}/edit", [*_edit_fields(server, viewer, JOB, values), ("do", "preview")])
    assert edit.status_code == 200 and 'id="yaml"' in edit.text
    forged = _post(server, viewer, "/jobs/new", [("csrf_token", ""), *form().items(), ("do", "preview")])
    assert forged.status_code == 403 and "CSRF token" in forged.text  # a preview is a POST: CSRF all the same
    assert files(editing) == before and _last_audit() == since


def test_a_number_too_large_says_so(project: Path) -> None:
    draft, _ = authoring.new_draft(form(identifier="big", tasks_to_export="1" + "0" * 20))
    assert draft.problems["tasks_to_export"] == ["is too large: at most 12 digits, got 21"]


@pytest.mark.parametrize("zone", ["localtime", "Factory"])
def test_a_zone_that_names_no_place_is_not_offered_and_refused(zone: str) -> None:
    from scheduled_jobs.web.authoring import _timezones

    assert zone not in _timezones() and "Europe/Amsterdam" in _timezones()
    draft, _ = authoring.new_draft(form(identifier="zoned", timezone=zone))
    (reason,) = draft.problems["timezone"]
    assert reason.startswith(f"{zone!r} is ") and "name the zone" in reason


def test_a_read_only_file_is_not_replaced(server: Server, tokens: dict[str, str], editing: Path) -> None:
    """A rename in a writable folder would replace a mode 444 file all the same: refused, said above the form."""
    admin = tokens["admin"]
    path = editing / f"{JOB}.yaml"
    values = authoring.form_values(yaml.safe_load(path.read_text()), JOB)
    fields = [*_edit_fields(server, admin, JOB, {**values, "priority": "6"}), ("do", "save")]
    path.chmod(0o444)
    page = _page(server, admin, f"/jobs/{JOB}/edit")
    assert f"{path} is read-only (mode 0444)" in page.text and 'id="save"' not in page.text
    before, since = files(editing), _last_audit()
    answer = _post(server, admin, f"/jobs/{JOB}/edit", fields)
    assert answer.status_code == 409
    top = re.search(r'<ul class="problems" id="form-problems"><li>(.*?)</li>', answer.text)
    assert top and top.group(1) == f"{path}: (file): is read-only (mode 0444); nothing was saved, change its mode first"
    toggled = _post(
        server, admin, f"/jobs/{JOB}/disable", [("csrf_token", _token_of(_page(server, admin, "/jobs").text))]
    )
    assert toggled.status_code == 409 and "is read-only (mode 0444)" in toggled.text
    assert files(editing) == before and _last_audit() == since and path.stat().st_mode & 0o777 == 0o444


# -- the whole catalog with the change (issue 22 item 10) -------------------------------------------

SLOW_API = (
    "name: ERP API\npublisher:\n  type: http\n  connection: erp\n  timeout_seconds: 60\n"
    "  retry: {attempts: 5, max_retry_after_seconds: 30}\n"
)
SLOW_REASON = (
    "publisher.timeout_seconds: one request can take up to 450 s (timeout_seconds 60 x retry.attempts 5, "
    "plus waits), longer than the stuck-task threshold of 5 minutes of repair job"
)
REPAIR = "repair-stuck-tasks"


def _general(draft: authoring.Draft) -> list[str]:
    return draft.problems.get(authoring.GENERAL, [])


def test_a_save_that_makes_another_file_invalid_is_refused_naming_that_file_and_key(project: Path) -> None:
    """A short stuck threshold makes an existing HTTP outgoing configuration invalid: refused, by name."""
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(SLOW_API, encoding="utf-8")
    assert cli_main(["validate"]) == 0  # valid with the threshold of 30 minutes
    path = project / "job_definitions" / f"{REPAIR}.yaml"
    data, _version = authoring.read_definition(path)
    values = authoring.form_values(authoring.parse_existing(data, path), REPAIR)
    draft, _ = authoring.edit_draft({**values, "stuck_after_minutes": "5"}, path, REPAIR, data)
    assert not draft.valid
    (reason,) = _general(draft)
    assert reason.startswith(f"{outgoing}: {SLOW_REASON} {REPAIR!r}"), reason
    assert "this change makes that file invalid" in reason
    # A new repair job with a short threshold is refused alike (the smallest threshold holds).
    fresh, _ = authoring.new_draft(
        {"name": "Quick repair", "job": "repair_stuck_tasks", "stuck_after_minutes": "5", "expression": "@hourly"}
    )
    assert not fresh.valid
    (reason,) = _general(fresh)
    assert reason.startswith(f"{outgoing}: {SLOW_REASON} 'quick-repair'"), reason
    assert "scheduled-job-draft" not in reason  # the scratch copy is never named
    # One that keeps the configuration valid is saved, and the command users run agrees.
    ok, _ = authoring.edit_draft({**values, "stuck_after_minutes": "10"}, path, REPAIR, data)
    assert ok.valid, ok.problems
    authoring.replace(path, ok.text, _version)
    assert cli_main(["validate"]) == 0


def test_a_new_repair_job_in_an_empty_folder_is_checked_against_the_configurations(project: Path) -> None:
    """The only definition of the folder: the catalog's cross-file rules still apply to it."""
    for existing in (project / "job_definitions").iterdir():
        existing.unlink()
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(SLOW_API, encoding="utf-8")
    draft, _ = authoring.new_draft(
        {"name": "Quick repair", "job": "repair_stuck_tasks", "stuck_after_minutes": "5", "expression": "@hourly"}
    )
    assert not draft.valid
    assert [r for r in _general(draft) if r.startswith(f"{outgoing}: publisher.timeout_seconds:")], draft.problems


def test_a_file_already_invalid_does_not_block_a_save_and_is_told(project: Path) -> None:
    """A problem another file had before the change is not this save's: the save goes on, and the draft says
    that ``scheduled-jobs validate`` still fails, naming that file."""
    broken = project / "job_definitions" / "broken.yaml"
    broken.write_text("name: Broken\njob: outgoing\nroute: nope\nexpression: '@daily'\n", encoding="utf-8")
    assert cli_main(["validate"]) == 1
    draft, _ = authoring.new_draft(form(identifier="unrelated"))
    assert draft.valid, draft.problems
    assert [str(p) for p in draft.elsewhere] == [f"{broken}: route: {p.reason}" for p in draft.elsewhere]
    assert len(draft.elsewhere) == 1


def test_the_form_says_validate_still_fails_for_another_files_problem(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    """The page never looks valid while `scheduled-jobs validate` fails: a problem another file had before is
    shown beside the saved job, naming that file."""
    broken = editing / "broken.yaml"
    broken.write_text("name: Broken\njob: outgoing\nroute: nope\nexpression: '@daily'\n", encoding="utf-8")
    admin = tokens["admin"]
    path = editing / f"{REPAIR}.yaml"
    values = authoring.form_values(yaml.safe_load(path.read_text()), REPAIR)
    fields = [*_edit_fields(server, admin, REPAIR, {**values, "description": "still repairs"}), ("do", "preview")]
    answer = _post(server, admin, f"/jobs/{REPAIR}/edit", fields)
    assert answer.status_code == 200, answer.text
    shown = re.search(r'<div class="notice bad" id="elsewhere">(.*?)</div>', answer.text, re.S)
    assert shown and f"{broken}: route:" in shown.group(1), answer.text[:2000]
    assert cli_main(["validate"]) == 1


def test_a_duplicate_identifier_also_names_the_file_it_makes_invalid(project: Path) -> None:
    draft, _ = authoring.new_draft(form(identifier="orders-to-erp-export"))
    existing = project / "job_definitions" / "orders-to-erp-export.yaml"
    assert not draft.valid
    (reason,) = _general(draft)
    # The other file's problem names where the new file would be, never the scratch copy that was checked.
    assert reason.startswith(
        f"{existing}: identifier: scheduled job 'orders-to-erp-export' is also defined in {existing}"
    )


def test_the_form_refuses_a_save_that_makes_another_file_invalid(
    server: Server, tokens: dict[str, str], editing: Path
) -> None:
    admin = tokens["admin"]
    outgoing = editing.parent / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(SLOW_API, encoding="utf-8")
    path = editing / f"{REPAIR}.yaml"
    values = authoring.form_values(yaml.safe_load(path.read_text()), REPAIR)
    before, since = files(editing), _last_audit()
    for do in ("preview", "save"):
        fields = [*_edit_fields(server, admin, REPAIR, {**values, "stuck_after_minutes": "5"}), ("do", do)]
        answer = _post(server, admin, f"/jobs/{REPAIR}/edit", fields)
        assert answer.status_code == 422, answer.text
        top = re.search(r'<ul class="problems" id="form-problems"><li>(.*?)</li>', answer.text)
        assert top and top.group(1).startswith(f"{outgoing}: publisher.timeout_seconds: one request can take"), top
    assert files(editing) == before and _last_audit() == since
    assert cli_main(["validate"]) == 0
