"""``scheduled-jobs tasks list|show|retry|skip|delete`` and ``validate``'s prune warning, on a real task store.

Most calls go through ``main(argv)`` in this process (Airflow's import is slow); the help, a store that
cannot be reached and the validate warning run as users run them: the installed console script.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from helpers.live_api import store_of

from scheduled_jobs.cli import main
from scheduled_jobs.store import task_history

if TYPE_CHECKING:
    from scheduled_jobs.store import TaskStore

CLI = str(Path(sys.executable).with_name("scheduled-jobs"))
ORDERS = "orders-to-erp"
PRODUCTS = "products-to-webshop"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd, timeout=120
    )


def cli(capsys: pytest.CaptureFixture[str], *argv: str, answer: str | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``scheduled-jobs argv``; argparse's refusals exit 2 as they do in a shell."""
    if answer is not None:
        sys.stdin = io.StringIO(answer)
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def set_status(
    store: TaskStore, ids: list[int], status: str, *, retryable: bool = False, error: str | None = None
) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE scheduled_jobs_task SET status = :s, retryable = :r, last_error = :e "
                f"WHERE id IN ({','.join(map(str, ids))})"
            ),
            {"s": status, "r": retryable, "e": error},
        )


def statuses(store: TaskStore) -> dict[int, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, status FROM scheduled_jobs_task")).all())


def listed(out: str) -> list[int]:
    """The task ids of a printed table, in its order."""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "ROUTE", "ENTITY", "KEY"], out
    return [int(line.split()[0]) for line in lines[1:] if line.split() and line.split()[0].isdigit()]


@pytest.fixture
def store(project: Path, monkeypatch: pytest.MonkeyPatch) -> TaskStore:
    """12 tasks: orders SO-1..SO-8 (1-2 finished, 3-4 failed and 4 retryable, 5 processing, 6 skipped, 7-8 new)
    and products P-1..P-4 (new)."""
    monkeypatch.setenv("USER", "alice")
    found = store_of(project)
    orders = found.add_entities([ORDERS], [(f"SO-{n}", {"id": f"SO-{n}"}) for n in range(1, 9)], return_ids=True)
    found.add_entities([PRODUCTS], [(f"P-{n}", {"sku": f"P-{n}"}) for n in range(1, 5)])
    ids = orders.task_ids
    set_status(found, ids[0:2], "finished")
    set_status(found, ids[2:3], "failed", error="HTTP 422: refused")
    set_status(found, ids[3:4], "failed", retryable=True, error="HTTP 503: down")
    set_status(found, ids[4:5], "processing")
    set_status(found, ids[5:6], "skipped")
    return found


tasks_table = sa.Table(
    "scheduled_jobs_task",
    sa.MetaData(),
    sa.Column("id", sa.Integer),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)


def order_ids(store: TaskStore) -> list[int]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT id FROM scheduled_jobs_task WHERE route = :r ORDER BY id"), {"r": ORDERS})
            .scalars()
            .all()
        )


# -- validate ---------------------------------------------------------------------------------------------


def test_validate_warns_when_no_prune_job_exists_and_keeps_its_exit_code(project: Path) -> None:
    (project / "job_definitions" / "prune-tasks.yaml").unlink()
    result = run("validate")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: no prune_tasks job: finished and skipped tasks are kept forever")
    assert lines[1:] == ["4 job definitions valid"]
    (project / "job_definitions" / "bad.yaml").write_text("name: Bad\n", encoding="utf-8")
    result = run("validate")
    assert result.returncode == 1
    assert any(line.startswith("warning: no prune_tasks job") for line in result.stderr.splitlines())


# -- list -------------------------------------------------------------------------------------------------


def test_list_shows_the_newest_first_and_filters_by_route_and_status(
    store: TaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = order_ids(store)
    code, out, _ = cli(capsys, "tasks", "list")
    assert code == 0
    assert len(listed(out)) == 12
    assert listed(out) == sorted(listed(out), reverse=True)
    assert out.splitlines()[-1] == "last page"
    _, out, _ = cli(capsys, "tasks", "list", "--route", ORDERS, "--status", "failed")
    assert listed(out) == [ids[3], ids[2]]
    _, out, _ = cli(capsys, "tasks", "list", "--status", "will_retry")
    assert listed(out) == [ids[3]]
    assert "failed (will retry)" in out
    assert "HTTP 503: down" in out
    _, out, _ = cli(capsys, "tasks", "list", "--route", PRODUCTS, "--status", "new")
    assert len(listed(out)) == 4
    code, out, _ = cli(capsys, "tasks", "list", "--route", "nowhere")
    assert (code, out) == (0, "no tasks match route=nowhere\n")


def test_list_filters_by_entity_key_and_by_time(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = order_ids(store)
    _, out, _ = cli(capsys, "tasks", "list", "--entity-key", "SO-3")
    assert listed(out) == [ids[2]]
    _, out, _ = cli(capsys, "tasks", "list", "--entity-key", "SO-", "--prefix")
    assert listed(out) == ids[::-1]
    with store.engine.begin() as conn:  # as the store writes times: bound datetimes
        conn.execute(
            sa.update(tasks_table).values(
                created_at=dt.datetime(2026, 1, 1, 10), updated_at=dt.datetime(2026, 1, 2, 10)
            )
        )
        conn.execute(
            sa.update(tasks_table).where(tasks_table.c.id == ids[0]).values(created_at=dt.datetime(2026, 3, 1, 10))
        )
    _, out, _ = cli(capsys, "tasks", "list", "--created-after", "2026-02-01")
    assert listed(out) == [ids[0]]
    # 11:00 in Amsterdam is 10:00 UTC: inclusive after, exclusive before.
    _, out, _ = cli(capsys, "tasks", "list", "--created-after", "2026-03-01T11:00:00+01:00")
    assert listed(out) == [ids[0]]
    _, out, _ = cli(capsys, "tasks", "list", "--created-before", "2026-03-01T11:00:00+01:00", "--route", ORDERS)
    assert listed(out) == ids[1:][::-1]
    _, out, _ = cli(capsys, "tasks", "list", "--updated-after", "2026-01-02T10:00:01")
    assert "no tasks match" in out
    _, out, _ = cli(capsys, "tasks", "list", "--updated-before", "2026-01-02T10:00:01", "--size", "1000")
    assert len(listed(out)) == 12


def test_list_pages_with_before(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []
    argv = ["tasks", "list", "--size", "5"]
    pages = 0
    while True:
        code, out, _ = cli(capsys, *argv)
        assert code == 0
        pages += 1
        page = listed(out)
        assert len(page) <= 5
        seen += page
        last = out.splitlines()[-1]
        if last == "last page":
            break
        assert last == f"next page: --before {page[-1]}"
        argv = ["tasks", "list", "--size", "5", "--before", str(page[-1])]
    assert pages == 3
    assert seen == sorted(statuses(store), reverse=True)


# -- show -------------------------------------------------------------------------------------------------


def test_show_prints_the_task_its_payload_and_its_history(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    failed = order_ids(store)[2]
    assert cli(capsys, "tasks", "retry", str(failed), "--as", "bob")[0] == 0
    code, out, _ = cli(capsys, "tasks", "show", str(failed))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Task {failed}"
    assert f"Route:         {ORDERS}" in lines
    assert "Entity key:    SO-3" in lines
    assert "Status:        new" in lines
    payload = lines.index("Payload:")
    assert lines[payload + 1 : payload + 4] == ["  {", '    "id": "SO-3"', "  }"]
    history = lines[lines.index("History (oldest first):") + 1 :]
    assert len(history) == 2
    assert history[0].split()[2] == "created"
    assert history[1].split()[2:5] == ["retried", "by", "user"]
    assert history[1].split()[5] == "bob"


def test_show_of_an_unknown_task_is_a_clear_error(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "tasks", "show", "999999") == (1, "", "error: no task with id 999999\n")


def test_remote_text_cannot_drive_the_terminal(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    task = order_ids(store)[2]
    set_status(store, [task], "failed", error="\x1b[2J\x1b]0;pwned\x07 refused\nsecond line\x9b31m")
    store.add_entities([ORDERS], [("SO-3", {"id": "SO-3", "note": "\x1b[31mred\u009b0m\nnext"})])
    newest = max(order_ids(store))
    for argv in (("tasks", "list"), ("tasks", "show", str(task)), ("tasks", "show", str(newest))):
        code, out, _ = cli(capsys, *argv)
        assert code == 0
        assert not any(ch in out for ch in "\x1b\x07\x9b"), argv
    _, out, _ = cli(capsys, "tasks", "show", str(task))
    assert any(line.startswith("Error:") and "refused second line" in line for line in out.splitlines())


# -- actions by id ----------------------------------------------------------------------------------------


def test_retry_by_id_changes_what_is_eligible_and_leaves_a_processing_task_alone(
    store: TaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = order_ids(store)
    code, out, _ = cli(capsys, "tasks", "retry", str(ids[2]), str(ids[4]), str(ids[5]))
    assert code == 0
    assert out.splitlines()[0] == (
        "retried 2 of 3 tasks; 1 not eligible (in a status retry does not take; left as they were)"
    )
    assert out.splitlines()[1] == f"retried: {ids[2]}, {ids[5]}"
    now = statuses(store)
    assert (now[ids[2]], now[ids[4]], now[ids[5]]) == ("new", "processing", "new")
    (_created, retried) = task_history(store.engine, ids[5]) or []
    assert (retried.kind, retried.actor.kind if retried.actor else None) == ("retried", "user")
    assert retried.actor is not None and retried.actor.user == "alice", "$USER by default"


def test_skip_needs_a_reason_and_records_it(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = order_ids(store)
    code, _, err = cli(capsys, "tasks", "skip", str(ids[6]))
    assert code == 2
    assert "the following arguments are required: --reason" in err
    code, out, _ = cli(capsys, "tasks", "skip", str(ids[6]), str(ids[0]), "--reason", "sent by hand", "--as", "carol")
    assert code == 0
    assert out.startswith("skipped 1 of 2 tasks; 1 not eligible")
    with store.engine.connect() as conn:
        error = conn.execute(
            sa.text("SELECT last_error FROM scheduled_jobs_task WHERE id = :i"), {"i": ids[6]}
        ).scalar()
    assert error == "skipped by carol: sent by hand"
    events = task_history(store.engine, ids[6]) or []
    assert (events[-1].kind, events[-1].detail) == ("skipped", {"reason": "sent by hand"})


def test_delete_by_id_deletes_the_task_and_its_history(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = order_ids(store)
    cli(capsys, "tasks", "retry", str(ids[5]))
    code, out, _ = cli(capsys, "tasks", "delete", str(ids[5]), str(ids[4]))
    assert code == 0
    assert out.startswith("deleted 1 of 2 tasks; 1 not eligible")
    assert ids[5] not in statuses(store) and ids[4] in statuses(store)
    with store.engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM scheduled_jobs_task_event WHERE task_id = :i"), {"i": ids[5]}
            ).scalar()
            == 0
        )
        assert (
            conn.execute(sa.text("SELECT count(*) FROM scheduled_jobs_entity WHERE entity_key = 'SO-6'")).scalar() == 1
        )


def test_an_unknown_id_changes_nothing(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = order_ids(store)
    before = statuses(store)
    code, out, err = cli(capsys, "tasks", "retry", str(ids[2]), "999999", "888888")
    assert (code, out) == (1, "")
    assert err == "error: no task with id 999999, 888888; nothing was changed\n"
    assert statuses(store) == before


# -- actions by filter ------------------------------------------------------------------------------------


def test_a_filter_action_shows_the_count_and_asks(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    ids = order_ids(store)
    before = statuses(store)
    code, out, _ = cli(
        capsys, "tasks", "retry", "--all-matching", "--route", ORDERS, "--status", "failed", answer="n\n"
    )
    assert code == 1
    assert out.splitlines() == [
        f"2 tasks match route={ORDERS}, status=failed",
        "Retry them? [y/N] not confirmed; nothing was changed",
    ]
    assert statuses(store) == before
    code, out, _ = cli(capsys, "tasks", "retry", "--all-matching", "--route", ORDERS, "--status", "failed", answer="")
    assert code == 1, "no answer (end of input) is no"
    assert statuses(store) == before
    code, out, _ = cli(
        capsys, "tasks", "retry", "--all-matching", "--route", ORDERS, "--status", "failed", answer="y\n"
    )
    assert code == 0
    assert out.splitlines()[-2] == "Retry them? [y/N] retried 2 of 2 tasks"
    assert set(out.splitlines()[-1].removeprefix("retried: ").split(", ")) == {str(ids[2]), str(ids[3])}
    assert statuses(store)[ids[2]] == statuses(store)[ids[3]] == "new"


def test_a_filter_action_with_yes_does_not_ask(store: TaskStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "tasks", "skip", "--all-matching", "--route", PRODUCTS, "--reason", "catalog frozen", "--yes", answer=""
    )
    assert code == 0
    assert out.splitlines()[:2] == [f"4 tasks match route={PRODUCTS}", "skipped 4 of 4 tasks"]
    assert "[y/N]" not in out
    code, out, _ = cli(capsys, "tasks", "delete", "--all-matching", "--entity-key", "P-", "--prefix", "--yes")
    assert code == 0
    assert out.splitlines()[:2] == ["4 tasks match entity-key prefix=P-", "deleted 4 of 4 tasks"]
    code, out, _ = cli(capsys, "tasks", "delete", "--all-matching", "--route", PRODUCTS, "--yes")
    assert (code, out) == (0, f"0 tasks match route={PRODUCTS}\nnothing to do\n")


# -- usage errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tasks", "retry"], "name the tasks: task ids, or --all-matching with filters"),
        (["tasks", "retry", "1", "--all-matching", "--route", ORDERS], "give task ids or --all-matching"),
        (["tasks", "delete", "--all-matching", "--yes"], "--all-matching needs at least one filter"),
        (["tasks", "retry", "1", "--route", ORDERS], "filters select tasks only with --all-matching"),
        (["tasks", "list", "--prefix"], "--prefix needs --entity-key"),
        (["tasks", "list", "--status", "broken"], "argument --status: invalid choice: 'broken'"),
        (["tasks", "list", "--created-after", "yesterday"], "not an ISO time: 'yesterday'"),
        (["tasks", "list", "--size", "0"], "must be 1-1000, got 0"),
        (["tasks", "list", "--size", "many"], "not a number: 'many'"),
        (["tasks", "list", "--before", "-3"], "not a task id"),
        (["tasks", "show", "abc"], "not a task id: 'abc'"),
        (["tasks", "show", "0"], "not a task id: 0"),
        (["tasks", "show", str(2**63)], "not a task id"),
        (["tasks", "list", "--route", "a\x1bb"], "must be 1-500 printable characters"),
        (["tasks", "skip", "1", "--reason", ""], "must be 1-500 printable characters"),
        (["tasks", "retry", "1", "--as", "x" * 101], "must be 1-100 printable characters"),
        (["tasks", "frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_a_usage_error(
    store: TaskStore, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = statuses(store)
    code, out, err = cli(capsys, *argv)
    assert code == 2, (out, err)
    assert message in err
    assert statuses(store) == before


# -- as users run it --------------------------------------------------------------------------------------


def test_help_is_plain_text_and_says_whose_rights_it_uses(project: Path) -> None:
    for argv in (("tasks", "--help"), ("tasks", "retry", "--help"), ("tasks", "list", "--help")):
        result = run(*argv)
        assert result.returncode == 0, result.stderr
        assert "``" not in result.stdout and ":class:" not in result.stdout
    tasks = run("tasks", "--help").stdout
    assert "rights of the task store's Airflow connection" in tasks
    for action in ("list", "show", "retry", "skip", "delete"):
        assert action in tasks
    assert "--all-matching" in run("tasks", "skip", "--help").stdout


def test_a_store_that_cannot_be_reached_is_one_line_without_the_password(project: Path) -> None:
    env = os.environ.copy()
    env["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"] = "postgresql://store:Sup3rS3cret@127.0.0.1:1/store"
    result = run("tasks", "list", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: the task store failed: OperationalError: "), result.stderr
    assert "Sup3rS3cret" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--entity-key", "k\udcff"], "--entity-key: must be 1-500 printable characters of UTF-8 text"),
        (["--route", "r\udcff"], "--route: must be 1-500 printable characters of UTF-8 text"),
        (["--created-after", "0001-01-01T00:00+05:00"], "--created-after: out of range"),
        (["--created-before", "9999-12-31T23:59:59-05:00"], "--created-before: out of range"),
        (["--before", " 5"], "--before: not a task id"),
        (["--before", "1_000"], "--before: not a task id"),
        (["--before", "\u0663"], "--before: not a task id"),
        (["--size", "1" * 5000], "--size: not a number"),
    ],
)
def test_hostile_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], store: TaskStore, argv: list[str], said: str
) -> None:
    """Bytes that are not UTF-8 (a shell passes them as lone surrogates), times whose UTC falls outside what a
    datetime holds, numbers int() would take but a person did not mean."""
    code, out, err = cli(capsys, "tasks", "list", *argv)
    assert code == 2
    assert said in err
    assert out == ""


def test_an_action_from_the_command_line_is_in_airflows_audit_log(
    capsys: pytest.CaptureFixture[str], store: TaskStore
) -> None:
    """A delete takes the task's history with it: the audit log is what is left of who did it."""
    from conftest import _HOME

    def ours() -> list[tuple[str, str, dict[str, object]]]:
        import json

        engine = sa.create_engine(f"sqlite:///{_HOME / 'airflow.db'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT event, owner, extra FROM log WHERE event LIKE 'scheduled_jobs.%' ORDER BY id")
                ).all()
        finally:
            engine.dispose()
        return [(r.event, r.owner, json.loads(r.extra)) for r in rows]

    before = len(ours())
    new = sum(1 for status in statuses(store).values() if status == "new")
    code, out, _ = cli(capsys, "tasks", "delete", "1", "--as", "alice")
    assert code == 0, out
    code, out, _ = cli(capsys, "tasks", "skip", "--all-matching", "--status", "new", "--reason", "never", "--yes")
    assert code == 0, out
    rows = ours()[before:]
    assert [(event, owner) for event, owner, _ in rows] == [
        ("scheduled_jobs.tasks.delete", "alice"),
        ("scheduled_jobs.tasks.skip", rows[1][1]),
    ]
    deleted, skipped = rows[0][2], rows[1][2]
    assert (deleted["ids"], deleted["changed"], deleted["via"]) == ([1], 1, "cli")
    assert skipped["filter"] == {"status": "new"}
    assert (skipped["matched"], skipped["changed"], skipped["reason"]) == (new, new, "never")
