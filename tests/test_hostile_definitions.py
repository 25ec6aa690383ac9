"""One hostile or careless YAML file never takes down the others, and a cron that never fires is an error.

Everything here runs the real parts: the loader, the ``scheduled-jobs`` command as users run it, and
Airflow's own DagBag over the project's two DAG files.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ROOT
from helpers.airflow_compat import DagBag
from helpers.hostile_yaml import BOMB_DEFINITION, BOMB_INCOMING

from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.cron import cron_errors

if TYPE_CHECKING:
    from scheduled_jobs.catalog import Catalog

CLI = str(Path(sys.executable).with_name("scheduled-jobs"))
PROBLEMS = "scheduled_jobs_problems.py"
EXAMPLES = [
    "orders-to-erp-export",
    "product-catalog-incoming",
    "prune-tasks",
    "repair-stuck-tasks",
    "shop-orders-incoming",
]
# The DAGs: one per example job, and the asset-scheduled export of the real-time route orders-to-erp.
DAGS = sorted([*EXAMPLES, "realtime_export.orders-to-erp"])
ALIASES = "(file): YAML anchors/aliases are not allowed"


def run(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=os.environ.copy(), cwd=cwd, timeout=timeout)


def catalog_of(project: Path) -> Catalog:
    """The project's definitions and configurations, loaded as the DAG files and the pages load them."""
    return load_catalog(project / "job_definitions", project / "configurations")


def timed_dagbag(monkeypatch: pytest.MonkeyPatch) -> tuple[DagBag, float]:
    # Airflow's own limit per DAG file, lowered so that today's failure shows in seconds, not minutes.
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "20")
    started = time.monotonic()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    return bag, time.monotonic() - started


def quick_dagbag_with_problems(monkeypatch: pytest.MonkeyPatch) -> tuple[DagBag, str]:
    """The DagBag, built within 15 s, whose one import error is the problems DAG file's; with that error."""
    bag, elapsed = timed_dagbag(monkeypatch)
    errors = {path.rsplit("/", 1)[-1]: text for path, text in bag.import_errors.items()}
    assert list(errors) == [PROBLEMS], errors
    assert elapsed < 15, f"the DagBag took {elapsed:.1f} s"
    return bag, errors[PROBLEMS]


# -- the billion laughs ---------------------------------------------------------------------------


def test_validate_refuses_a_yaml_bomb_at_once(project: Path) -> None:
    bomb = project / "job_definitions" / "bomb.yaml"
    bomb.write_text(BOMB_DEFINITION, encoding="utf-8")
    started = time.monotonic()
    result = run("validate", cwd=project)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"job_definitions/bomb.yaml: {ALIASES}: the anchor '&a' at line 1, column 4; write each value out in full"
    ]
    assert elapsed < 15, f"validate took {elapsed:.1f} s"


def test_a_bomb_next_to_the_examples_leaves_their_dags_and_names_itself(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = project / "job_definitions" / "bomb.yaml"
    bomb.write_text(BOMB_DEFINITION, encoding="utf-8")
    bag, problems = quick_dagbag_with_problems(monkeypatch)
    assert sorted(bag.dag_ids) == DAGS
    assert f"{bomb}: {ALIASES}" in problems


def test_a_bomb_in_configurations_leaves_the_jobs_that_do_not_use_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = project / "configurations" / "incoming" / "product-catalog.yaml"
    poisoned.write_text(BOMB_INCOMING, encoding="utf-8")
    bag, problems = quick_dagbag_with_problems(monkeypatch)
    assert sorted(bag.dag_ids) == [dag for dag in DAGS if dag != "product-catalog-incoming"]
    assert f"{poisoned}: {ALIASES}" in problems
    assert "incoming_configuration: incoming configuration 'product-catalog'" in problems


# -- every other way one file could hang or crash the load -------------------------------------------

VALID_TAIL = "name: Hostile\njob: repair_stuck_tasks\nexpression: '@daily'\n"


def tagged(key: str, value: str, shown: str, case_id: str) -> Any:
    """A case: ``key: value`` where value is a YAML tag (``!!int``) and text that is not of its type."""
    tag = value.split(maxsplit=1)[0]
    column = len(f"{key}: ") + 1
    return pytest.param(
        f"{VALID_TAIL}{key}: {value}\n",
        f"(file): is not valid YAML at line 4, column {column}: '{shown}' is not a valid {tag[2:]} (the tag {tag}); "
        "remove the tag or fix the value",
        id=case_id,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(
            "defaults: &defaults\n  priority: 3\n" + VALID_TAIL,
            f"{ALIASES}: the anchor '&defaults' at line 1, column 11; write each value out in full",
            id="anchor-without-alias",
        ),
        pytest.param(
            "base: &b {priority: 3}\n<<: *b\n" + VALID_TAIL,
            f"{ALIASES}: the anchor '&b' at line 1, column 7; write each value out in full",
            id="merge-key",
        ),
        pytest.param(
            VALID_TAIL + "description: *nothing\n",
            f"{ALIASES}: the alias '*nothing' at line 4, column 14; write each value out in full "
            "(and quote a value that starts with '*')",
            id="alias-to-nothing",
        ),
        pytest.param(
            VALID_TAIL + "description: " + "[" * 100 + "]" * 100 + "\n",
            "(file): is nested more than 50 levels deep at line 4, column 63; flatten it",
            id="deep-nesting",
        ),
        pytest.param(
            VALID_TAIL + "description:\n" + "".join("  " * n + "- \n" for n in range(60)),
            "(file): is nested more than 50 levels deep at line 54, column 99; flatten it",
            id="deep-block-nesting",
        ),
        pytest.param(
            VALID_TAIL + "description: " + "[" * 100_000 + "]" * 100_000 + "\n",
            "(file): is not valid YAML at line 4, column 1013: exceeded maximum nesting depth",
            id="deeper-than-libyaml-allows",
        ),
        pytest.param(
            VALID_TAIL + "priority: " + "9" * 5000 + "\n",
            "(file): is not valid YAML at line 4, column 11: a number with more than 4300 digits",
            id="huge-number",
        ),
        pytest.param(
            # YAML 1.1's base-60 float: 600 characters that PyYAML sums into an int too large for a float.
            VALID_TAIL + "priority: 1:" + ":".join(["59"] * 200) + ".5\n",
            "(file): is not valid YAML at line 4, column 11: a number too large for a float; "
            "quote it to keep it as text",
            id="base-60-float-overflow",
        ),
        tagged("priority", "!!int abc", "abc", "tagged-int"),
        tagged("priority", '!!int ""', "", "tagged-empty-int"),
        tagged("priority", "!!float _", "_", "tagged-float"),
        tagged("description", "!!bool maybe", "maybe", "tagged-bool"),
        tagged("description", "!!timestamp soon", "soon", "tagged-timestamp"),
        pytest.param(
            # Airflow refuses a DAG id of more than 250 characters: the job would vanish from the DagBag
            # with a traceback in the parse log, while validate called it valid.
            VALID_TAIL + "identifier: " + "i" * 300 + "\n",
            "identifier: is 300 characters long; an identifier is at most 200 characters "
            "(Airflow's DAG ids hold 250); choose a shorter one",
            id="long-identifier",
        ),
        pytest.param(
            VALID_TAIL.replace("name: Hostile", "name: " + "n" * 300),
            "name: the identifier made from it is 300 characters long; an identifier is at most 200 characters "
            "(Airflow's DAG ids hold 250); set a shorter identifier: explicitly",
            id="long-name",
        ),
        pytest.param(
            VALID_TAIL + "description: 2026-02-30\n",
            "(file): is not valid YAML at line 4, column 14: 2026-02-30 is not a date (day is out of range for month); "
            "quote it to keep it as text",
            id="impossible-date",
        ),
        pytest.param(
            VALID_TAIL + "timezone: " + "a" * 300 + "\n",
            "timezone: is 300 characters long, not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC')",
            id="long-timezone",  # today: OSError 'File name too long' from zoneinfo, and no catalog at all
        ),
        pytest.param(
            VALID_TAIL.replace("'@daily'", "'" + "0," * 1000 + "0 * * * *'"),
            "expression: is 2009 characters long; a cron expression is at most 1000 (5 fields, e.g. '*/15 * * * *')",
            id="long-expression",
        ),
    ],
)
def test_a_hostile_file_is_one_problem_naming_it_and_quick(project: Path, text: str, reason: str) -> None:
    path = project / "job_definitions" / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    catalog = catalog_of(project)
    assert time.monotonic() - started < 5
    assert [str(p) for p in catalog.problems] == [f"{path}: {reason}"]
    assert sorted(catalog.jobs) == EXAMPLES


def test_a_file_over_the_size_limit_is_refused_unread(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__YAML_MAX_BYTES", "1000")
    path = project / "job_definitions" / "big.yaml"
    path.write_text(VALID_TAIL + "description: " + "x" * 2000 + "\n", encoding="utf-8")
    catalog = catalog_of(project)
    assert [str(p) for p in catalog.problems] == [
        f"{path}: (file): is {path.stat().st_size} bytes, over the limit of 1000 bytes "
        "([scheduled_jobs] yaml_max_bytes); split it or shorten it"
    ]
    assert sorted(catalog.jobs) == EXAMPLES


def test_the_default_size_limit_is_one_mebibyte(project: Path) -> None:
    path = project / "configurations" / "outgoing" / "big.yaml"
    path.write_text("name: Big\n# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    (problem,) = catalog_of(project).problems
    assert problem.reason.endswith(
        "over the limit of 1048576 bytes ([scheduled_jobs] yaml_max_bytes); split it or shorten it"
    )


def test_a_fifo_named_like_a_definition_does_not_hang_validate(project: Path) -> None:
    fifo = project / "job_definitions" / "pipe.yaml"
    os.mkfifo(fifo)
    result = run("validate", cwd=project, timeout=30)  # today: blocks on open() until the timeout
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "job_definitions/pipe.yaml: (file): is not a regular file; only plain YAML files are read"
    ]


def test_thousands_of_mistakes_in_one_file_are_capped(project: Path) -> None:
    path = project / "job_definitions" / "many.yaml"
    secrets = "".join(f"  - password: p{n}\n" for n in range(3000))
    path.write_text(VALID_TAIL + "extra:\n" + secrets, encoding="utf-8")
    problems = catalog_of(project).problems
    assert len(problems) == 21
    assert f"{path}: (file): 2980 more problems besides these 20 are not shown" in [str(p) for p in problems]
    assert all(p.path == str(path) for p in problems)


def test_thousands_of_validation_errors_are_counted_not_worded(project: Path) -> None:
    path = project / "configurations" / "incoming" / "many.yaml"
    lists = ", ".join(["[]"] * 3000)  # each fails all four types a filter value may have
    path.write_text(f"name: Many\nentity_key: id\nmapping:\n  filter:\n    status: [{lists}]\n", encoding="utf-8")
    started = time.monotonic()
    problems = catalog_of(project).problems
    assert time.monotonic() - started < 2
    assert len(problems) == 21
    assert f"{path}: (file): 11980 more problems besides these 20 are not shown" in [str(p) for p in problems]


def test_a_file_with_more_values_than_the_budget_is_refused_before_it_is_built(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project / "job_definitions" / "wide.yaml"
    path.write_text(VALID_TAIL + "description: [" + "1, " * 20_000 + "1]\n", encoding="utf-8")
    problems = catalog_of(project).problems
    assert [str(p) for p in problems] == [
        f"{path}: (file): holds more than 10000 values (at line 4, column 29988) ([scheduled_jobs] yaml_max_nodes); "
        "split it into smaller files"
    ]
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__YAML_MAX_NODES", "30000")
    problems = catalog_of(project).problems
    assert [(p.key, p.reason[:14]) for p in problems] == [("description", "must be a stri")]


# -- a cron that never fires ----------------------------------------------------------------------


MISSING_DAYS = "; choose days that every month named has, or 'L' for the last day"


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("0 0 30 2 *", "'0 0 30 2 *' never fires (February has no 30th)" + MISSING_DAYS),
        ("0 0 30,31 feb *", "'0 0 30,31 feb *' never fires (February has no 30th or 31st)" + MISSING_DAYS),
        (
            "0 0 31 4,6,9,11 *",
            "'0 0 31 4,6,9,11 *' never fires (April, June, September and November have no 31st)" + MISSING_DAYS,
        ),
        ("0 0 31 2,4 *", "'0 0 31 2,4 *' never fires (February and April have no 31st)" + MISSING_DAYS),
        (
            "0 0 * 2 1#5",
            "'0 0 * 2 1#5' has no fire time in the next 10 years (before 2036-01-01); "
            "check the day of month, month and day of week together",
        ),
    ],
)
def test_an_expression_without_a_fire_time_is_an_error(expression: str, error: str) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert cron_errors(expression, now=now) == [error]


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 30 2 1", "0 0 L 2 *", "0 0 * 2 1#4"])
def test_a_rare_but_real_fire_time_is_fine(expression: str) -> None:
    # 29 February comes every four years; with a weekday too, cron fires on either (Vixie cron's OR).
    assert cron_errors(expression, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == []


NEVER = "name: Never\njob: repair_stuck_tasks\nexpression: '0 0 30 2 *'\n"
NEVER_REASON = "expression: '0 0 30 2 *' never fires (February has no 30th)" + MISSING_DAYS


def test_validate_rejects_a_cron_that_never_fires(project: Path) -> None:
    (project / "job_definitions" / "never.yaml").write_text(NEVER, encoding="utf-8")
    result = run("validate", cwd=project)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"job_definitions/never.yaml: {NEVER_REASON}"]


def test_a_cron_that_never_fires_is_a_problem_not_a_dag(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = project / "job_definitions" / "never.yaml"
    path.write_text(NEVER, encoding="utf-8")
    bag, _ = timed_dagbag(monkeypatch)
    assert sorted(bag.dag_ids) == DAGS
    (error,) = bag.import_errors.values()
    assert f"{path}: {NEVER_REASON}" in error


def test_preview_of_a_cron_that_never_fires_is_a_clear_error(project: Path) -> None:
    (project / "job_definitions" / "never.yaml").write_text(NEVER, encoding="utf-8")
    result = run("preview", "job_definitions/never.yaml", cwd=project)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        f"job_definitions/never.yaml: {NEVER_REASON}",
        "error: job_definitions/never.yaml: not a valid scheduled job: 1 problem above",
    ]
