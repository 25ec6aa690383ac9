"""The ``scheduled-jobs`` command, run as users run it: the installed console script."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.cron import fire_times

CLI = str(Path(sys.executable).with_name("scheduled-jobs"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=os.environ.copy(), cwd=cwd, timeout=120)


def test_validate_exits_0_when_all_is_valid(project: Path) -> None:
    result = run("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == "5 job definitions valid"


def test_validate_prints_one_line_per_problem_and_exits_1(project: Path) -> None:
    folder = project / "job_definitions"
    (folder / "bad.yaml").write_text(
        "name: Bad\njob: outgoing\nroute: orders-to-erp\nexpression: '61 * * * *'\ntimezone: Mars/Olympus\n"
        "tasks_to_export: 0\n",
        encoding="utf-8",
    )
    result = run("validate", cwd=project)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "job_definitions/bad.yaml: expression: minute: 61 is out of range 0-59",
        "job_definitions/bad.yaml: tasks_to_export: must be greater than 0, got 0",
        "job_definitions/bad.yaml: timezone: 'Mars/Olympus' is not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC')",
    ]
    assert result.stderr.strip() == "3 problems found"


def test_validate_given_paths_checks_only_those(project: Path) -> None:
    folder = project / "job_definitions"
    (folder / "bad.yaml").write_text("name: Bad\n", encoding="utf-8")
    good = run("validate", str(folder / "shop-orders-incoming.yaml"))
    assert good.returncode == 0, good.stdout
    bad = run("validate", str(folder / "bad.yaml"), str(project / "missing.yaml"))
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f"{project / 'missing.yaml'}: (file): does not exist",
        f"{folder / 'bad.yaml'}: expression: is required",
        f"{folder / 'bad.yaml'}: job: is required",
    ]


def test_preview_by_identifier_describes_and_lists_iso_times(project: Path) -> None:
    result = run("preview", "orders-to-erp-export", "--count", "3", "--from", "2026-11-24T10:00:00+00:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Orders to ERP export (orders-to-erp-export)",
        "Expression: * * * * *  Every minute",
        "Timezone:   Europe/Amsterdam",
        "Next 3 fire times:",
        "  2026-11-24T11:01:00+01:00",
        "  2026-11-24T11:02:00+01:00",
        "  2026-11-24T11:03:00+01:00",
    ]


def test_preview_by_path_marks_dst(project: Path) -> None:
    path = project / "job_definitions" / "nightly.yaml"
    path.write_text(
        "name: Nightly export\njob: outgoing\nroute: orders-to-erp\nexpression: '30 2 * * *'\ntimezone: Europe/Amsterdam\n",
        encoding="utf-8",
    )
    result = run("preview", str(path), "--count", "2", "--from", "2026-03-28T12:00:00+00:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "  2026-03-29T03:30:00+02:00  DST: moved from 02:30, which does not exist on 2026-03-29 (clocks go forward)",
        "  2026-03-30T02:30:00+02:00",
    ]


def test_preview_of_an_unknown_job_is_a_clear_error(project: Path) -> None:
    result = run("preview", "nope")
    assert result.returncode == 1
    assert result.stderr.startswith("error: nope: no valid scheduled job has this identifier or path (known: ")


def _write_invalid_jobs(folder: Path) -> None:
    """Three invalid definitions: two mistakes in one file, a route that does not exist, YAML that does not parse."""
    (folder / "bad-one.yaml").write_text(
        "name: Bad one\njob: outgoing\nroute: orders-to-erp\nexpression: '61 * * * *'\ntimezone: Mars/Olympus\n",
        encoding="utf-8",
    )
    (folder / "other.yaml").write_text(
        "name: Bad two\nidentifier: b2\njob: outgoing\nroute: nope\nexpression: '* * * * *'\n", encoding="utf-8"
    )
    (folder / "broken.yaml").write_text("name: [Broken\n", encoding="utf-8")


BAD_ONE = [
    "job_definitions/bad-one.yaml: expression: minute: 61 is out of range 0-59",
    "job_definitions/bad-one.yaml: timezone: 'Mars/Olympus' is not an IANA time zone name "
    "(e.g. 'Europe/Amsterdam', 'UTC')",
]


@pytest.mark.parametrize(
    ("asked", "problems"),
    [
        ("bad-one", BAD_ONE),  # the identifier made from its name
        (
            "b2",  # its explicit identifier, in a file named otherwise
            [
                "job_definitions/other.yaml: route: no route has identifier 'nope' (known: orders-to-erp, products-to-webshop)"
            ],
        ),
        ("broken", ["job_definitions/broken.yaml: (file): is not valid YAML at line 2, column 1: "]),
    ],
)
def test_preview_of_an_invalid_job_prints_its_files_problems(project: Path, asked: str, problems: list[str]) -> None:
    _write_invalid_jobs(project / "job_definitions")
    result = run("preview", asked, cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(problems) + 1, result.stderr
    for line, expected in zip(lines, problems, strict=False):
        assert line.startswith(expected), (line, expected)
    count = len(problems)
    assert lines[-1] == f"error: {asked}: not a valid scheduled job: {count} problem{'s' if count != 1 else ''} above"
    assert "no valid scheduled job has this identifier" not in result.stderr


def test_preview_of_an_invalid_file_by_its_path_prints_all_its_problems(project: Path) -> None:
    _write_invalid_jobs(project / "job_definitions")
    relative = run("preview", "job_definitions/bad-one.yaml", cwd=project)
    assert relative.returncode == 1
    assert relative.stderr.splitlines() == [
        *BAD_ONE,
        "error: job_definitions/bad-one.yaml: not a valid scheduled job: 2 problems above",
    ]
    # A file outside the definitions folder is checked as it is, against the folder's jobs.
    outside = project / "elsewhere.yaml"
    outside.write_text("name: Outside\njob: incoming\nexpression: '* * * * *'\n", encoding="utf-8")
    result = run("preview", str(outside), cwd=project)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "elsewhere.yaml: incoming_configuration: is required with job: incoming",
        f"error: {outside}: not a valid scheduled job: 1 problem above",
    ]


def test_preview_of_a_definition_file_that_does_not_exist(project: Path) -> None:
    result = run("preview", "job_definitions/nope.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stderr == "error: job_definitions/nope.yaml: (file): does not exist\n"


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of scheduled-jobs, as argv prefixes: [], [validate], [tasks, list], ..."""
    import argparse

    from scheduled_jobs.cli import build_parser

    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        found.append(prefix)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return found


RST_MARKUP = re.compile(r"``|`[^`\n]+`_|:(?:class|func|meth|mod|attr|ref|doc|data|exc|obj|term):`|^\s*\.\. \w+::", re.M)


def test_every_help_is_plain_text_without_rst_markup(project: Path) -> None:
    paths = _command_paths()
    # scheduled-jobs; validate, preview, tasks, dag-files, db; tasks list, show, retry, skip, delete; db upgrade, check
    assert len(paths) == 13, paths
    for path in paths:
        result = run(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        assert result.stdout.startswith(f"usage: scheduled-jobs {' '.join(path)}".rstrip()), path
        markup = RST_MARKUP.findall(result.stdout)
        assert not markup, (path, markup, result.stdout)
        assert "`" not in result.stdout, (path, result.stdout)


def test_the_rst_check_finds_markup() -> None:
    for text in ("The ``scheduled-jobs`` command", "see :class:`Catalog`", ".. note:: x", "`Airflow`_ docs"):
        assert RST_MARKUP.search(text), text


def _timetable_times(dag: object, after: dt.datetime, count: int) -> list[dt.datetime]:
    """Fire times of the DAG's own timetable, as the scheduler computes them (serialized, then core)."""
    from airflow.timetables.base import TimeRestriction
    from helpers.airflow_compat import coerce_to_core_timetable

    timetable = coerce_to_core_timetable(dag.timetable)  # type: ignore[attr-defined]
    restriction = TimeRestriction(
        earliest=pendulum.instance(after + dt.timedelta(seconds=1)), latest=None, catchup=True
    )
    last = None
    times = []
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        last = info.data_interval
        times.append(info.run_after)
    return times


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Amsterdam", "2026-03-28T20:00:00+00:00"),
        ("Europe/Amsterdam", "2026-10-24T20:00:00+00:00"),
        ("America/New_York", "2026-03-08T02:00:00+00:00"),
        ("America/New_York", "2026-11-01T02:00:00+00:00"),
    ],
)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15 1,2,3 * * *"])
def test_preview_and_dag_timetable_agree_on_dst_days(project: Path, zone: str, start: str, expression: str) -> None:
    from scheduled_jobs.factory import build_dags

    (project / "job_definitions" / "dst.yaml").write_text(
        f"name: DST probe\njob: repair_stuck_tasks\nexpression: '{expression}'\ntimezone: {zone}\n", encoding="utf-8"
    )
    dag = build_dags(load_catalog())["dst-probe"]
    after = dt.datetime.fromisoformat(start)
    # Compared in UTC: Python never treats a repeated (fold=1) local time as equal across zones (PEP 495).
    preview = [f.at.astimezone(dt.UTC) for f in fire_times(expression, zone, 12, after)]
    assert preview == [t.astimezone(dt.UTC) for t in _timetable_times(dag, after, 12)]


def test_preview_through_a_symlink_to_a_definition_in_the_folder_is_that_valid_job(
    project: Path, tmp_path: Path
) -> None:
    """A symlink (or any other spelling) of a valid file of the folder is the same file, not a duplicate.

    On main: "identifier: scheduled job 'prune-tasks' is also defined in ..." twice, "not a valid
    scheduled job: 2 problems above", exit 1 (cli.py preview: ``extra = [path.absolute()]`` unresolved,
    so the folder's copy and the link are two files claiming one identifier)."""
    link = tmp_path / "prune-link.yaml"
    link.symlink_to(project / "job_definitions" / "prune-tasks.yaml")
    result = run("preview", str(link), "--count", "1", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Prune tasks (prune-tasks)\n"), result.stdout


def test_preview_of_a_path_with_dot_dot_into_the_folder_is_that_valid_job(project: Path) -> None:
    result = run("preview", "job_definitions/../job_definitions/prune-tasks.yaml", "--count", "1", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Prune tasks (prune-tasks)\n"), result.stdout


def test_validate_through_a_symlink_to_a_definition_in_the_folder_finds_no_duplicate(
    project: Path, tmp_path: Path
) -> None:
    link = tmp_path / "prune-link.yaml"
    link.symlink_to(project / "job_definitions" / "prune-tasks.yaml")
    result = run("validate", str(link), cwd=project)
    assert "is also defined in" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def test_preview_of_a_directory_named_yaml_does_not_say_it_does_not_exist(project: Path) -> None:
    """On main: "error: job_definitions/old.yaml: (file): does not exist", while it exists: as a folder."""
    (project / "job_definitions" / "old.yaml").mkdir()
    result = run("preview", "job_definitions/old.yaml", cwd=project)
    assert result.returncode == 1
    assert "does not exist" not in result.stderr, result.stderr
    assert "job_definitions/old.yaml" in result.stderr


def test_preview_of_an_identifier_claimed_by_a_valid_and_an_invalid_file_prints_the_invalid_files_problems(
    project: Path,
) -> None:
    """Both files claim the identifier; on main only the valid file's duplicate line is printed, not why
    the other file is invalid (find_job_file returns the first file only)."""
    (project / "job_definitions" / "zz-copy.yaml").write_text(
        'name: Copy\nidentifier: prune-tasks\njob: prune\nexpression: "61 * * * *"\n', encoding="utf-8"
    )
    result = run("preview", "prune-tasks", cwd=project)
    assert result.returncode == 1
    assert "job_definitions/zz-copy.yaml: expression: minute: 61 is out of range 0-59" in result.stderr, result.stderr
