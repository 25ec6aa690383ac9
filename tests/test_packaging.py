"""The package as an Airflow user installs it: entry points, provider info, DAG files, settings, store schema.

Runs on this checkout's lock and, through scripts/compat.sh, on the built wheel in fresh environments of the
oldest supported Airflow minors (conftest.INSTALLED). The Airflow commands run as subprocesses with a plugins
folder of their own that is empty: the plugin must come from the entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import INSTALLED, ROOT, airflow_bin
from helpers.databases import store_at_revision

import scheduled_jobs
from scheduled_jobs import dag_files, settings
from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.exceptions import StoreSchemaError
from scheduled_jobs.provider_info import OPTIONS, get_provider_info
from scheduled_jobs.store import engine as store_engine

if TYPE_CHECKING:
    import httpx

SCHEDULED_JOBS = str(Path(sys.executable).with_name("scheduled-jobs"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__SCHEDULED_JOBS__", "AIRFLOW_CONN_"))}
    (tmp_path / "empty-plugins").mkdir(exist_ok=True)
    env.update({"AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "empty-plugins"), **extra})
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)


PLUGINS_SNIPPET = """
import json
import airflow.plugins_manager as pm
if hasattr(pm, "_get_plugins"):  # Airflow 3.2+
    plugins, errors = pm._get_plugins()
else:  # Airflow 3.1: module globals
    pm.ensure_plugins_loaded()
    plugins, errors = pm.plugins, pm.import_errors
print(json.dumps({"names": [p.name for p in plugins], "errors": {str(k): str(v) for k, v in errors.items()}}))
"""


@pytest.mark.parametrize("plugins_folder", ["none", "checkout"])
def test_the_plugin_registers_once_from_its_entry_point(tmp_path: Path, plugins_folder: str) -> None:
    """No plugins/ folder needed; and with the checkout's plugins/ beside the entry point, still only once."""
    env = _env(tmp_path)
    if plugins_folder == "checkout":
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    result = _run([sys.executable, "-c", PLUGINS_SNIPPET], env)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["names"].count("scheduled_jobs") == 1, found
    assert found["errors"] == {}, found
    listed = _run([airflow_bin(), "plugins", "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    ours = [p for p in json.loads(listed.stdout) if p["name"] == "scheduled_jobs"]
    assert len(ours) == 1 and "EntryPoint" in str(ours[0]["source"]), ours


def test_airflow_lists_the_provider_and_its_settings(tmp_path: Path) -> None:
    env = _env(tmp_path)
    providers = _run([airflow_bin(), "providers", "list", "-o", "json"], env)
    assert providers.returncode == 0, providers.stderr[-3000:]
    ours = [p for p in json.loads(providers.stdout) if p["package_name"] == "airflow-scheduled-jobs"]
    assert [p["version"] for p in ours] == [scheduled_jobs.__version__]
    config = _run([airflow_bin(), "config", "list", "--section", "scheduled_jobs"], env)
    assert config.returncode == 0, config.stderr[-3000:]
    for key in OPTIONS:
        assert f"{key} =" in config.stdout, key
    value = _run([airflow_bin(), "config", "get-value", "scheduled_jobs", "guard_design"], env)
    assert value.stdout.strip() == "inline"


def test_the_provider_defaults_are_the_ones_the_code_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("AIRFLOW__SCHEDULED_JOBS__")]:
        monkeypatch.delenv(key)
    applied = {
        "store_conn_id": settings.store_conn_id(),
        "store_auto_migrate": str(settings.store_auto_migrate()),
        "prevent_duplicates": str(settings.prevent_duplicates()),
        "guard_design": settings.guard_design(),
        "guard_lease_minutes": str(settings.guard_lease_minutes()),
        "guard_poll_seconds": str(settings.guard_poll_seconds()),
        "stuck_after_minutes": str(settings.stuck_after_minutes()),
        "max_attempts": str(settings.max_attempts()),
        "ui_editing": str(settings.ui_editing()),
        "yaml_max_bytes": str(settings.yaml_max_bytes()),
        "yaml_max_nodes": str(settings.yaml_max_nodes()),
        "webhook_max_bytes": str(settings.webhook_max_bytes()),
        "webhook_max_records": str(settings.webhook_max_records()),
    }
    declared = {key: option["default"] for key, option in OPTIONS.items() if option["default"] is not None}
    assert declared == applied
    info = get_provider_info()
    assert info["package-name"] == "airflow-scheduled-jobs" and info["versions"] == [scheduled_jobs.__version__]


def test_the_installed_package_holds_its_templates_migrations_and_types() -> None:
    package = Path(scheduled_jobs.__file__).parent
    assert {p.name for p in (package / "web" / "templates").glob("*.html")} >= {"base.html", "jobs.html", "tasks.html"}
    assert {p.name for p in (package / "web" / "static").glob("*.js")} == {"pages.js", "job_form.js"}
    revisions = sorted(p.name[:4] for p in (package / "store" / "migrations" / "versions").glob("0*.py"))
    assert revisions[-1] == store_engine.HEAD_REVISION
    assert tuple(revisions) == store_engine.KNOWN_REVISIONS
    assert (package / "py.typed").is_file()
    from importlib.metadata import distribution

    dist = distribution("airflow-scheduled-jobs")
    assert dist.version == scheduled_jobs.__version__
    groups = {(e.group, e.value) for e in dist.entry_points}
    assert ("airflow.plugins", "scheduled_jobs.web.plugin:ScheduledJobsPlugin") in groups
    assert ("apache_airflow_provider", "scheduled_jobs.provider_info:get_provider_info") in groups
    requires = dist.requires or []
    assert any(r.replace(" ", "").startswith("apache-airflow<4,>=3.1.0") for r in requires), requires


def test_the_alembic_head_is_the_revision_the_code_checks_for() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(store_engine.__file__).parent / "migrations"))
    assert script.get_heads() == [store_engine.HEAD_REVISION]


def test_scheduled_jobs_version() -> None:
    result = _run([SCHEDULED_JOBS, "--version"], dict(os.environ))
    assert result.stdout.strip() == f"airflow-scheduled-jobs {scheduled_jobs.__version__}"


def test_an_unsupported_airflow_is_refused_naming_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    for found in ("3.0.6", "2.11.0", "4.0.0"):
        monkeypatch.setattr(scheduled_jobs, "_installed", lambda _name, found=found: found)
        with pytest.raises(ImportError, match=rf"supports apache-airflow>=3\.1,<4 .* has apache-airflow {found}"):
            scheduled_jobs.require_supported_airflow()
    monkeypatch.setattr(scheduled_jobs, "_installed", lambda _name: "3.1.8")
    scheduled_jobs.require_supported_airflow()


FAKE_AIRFLOW = """
import importlib.metadata as metadata
real = metadata.version
metadata.version = lambda name: "3.0.6" if name == "apache-airflow" else real(name)
"""


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # Airflow's providers manager reads the provider info in every airflow command: it must not refuse
        ("from scheduled_jobs.provider_info import get_provider_info; print(get_provider_info()['versions'])", 0),
        ("import scheduled_jobs.factory", 1),
        ("import scheduled_jobs.web.plugin", 1),
        ("import sys; from scheduled_jobs.cli import main; sys.exit(main(['--version']))", 1),
    ],
)
def test_an_unsupported_airflow_stops_the_package_not_airflow(code: str, expected: int) -> None:
    done = _run([sys.executable, "-c", FAKE_AIRFLOW + code], dict(os.environ))
    assert done.returncode == expected, done.stdout + done.stderr[-2000:]
    if expected:
        assert "supports apache-airflow>=3.1,<4 (tested: 3.1, 3.2, 3.3); this environment has apache-airflow 3.0.6" in (
            done.stderr
        )
    if "cli" in code:
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: airflow-scheduled-jobs"), done.stderr


# -- the DAG files and a definitions folder never seen before ------------------------------------------------

ORDERS = """name: Nightly orders from the webshop
identifier: nightly-orders
job: incoming
incoming_configuration: shop-orders
expression: "15 2 * * *"
timezone: Europe/Amsterdam
priority: 7
"""


EXPORT = """name: Orders to the ERP, 25 at a time
job: outgoing
route: orders-to-erp
tasks_to_export: 25
expression: "*/10 * * * *"
"""


def _unseen_project(tmp_path: Path) -> dict[str, str]:
    import shutil

    definitions = tmp_path / "my-definitions"
    definitions.mkdir()
    (definitions / "nightly-orders.yaml").write_text(ORDERS)
    (definitions / "erp-push.yaml").write_text(EXPORT)
    shutil.copytree(ROOT / "configurations", tmp_path / "my-configurations")
    dags = tmp_path / "my-dags"
    result = _run([SCHEDULED_JOBS, "dag-files", str(dags)], dict(os.environ))
    assert result.returncode == 0, result.stderr
    return {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(tmp_path / "my-configurations"),
    }


BAG_SNIPPET = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()}}))
"""


def _bag(env: dict[str, str], code: str = "") -> dict[str, object]:
    result = _run([sys.executable, "-c", code + BAG_SNIPPET, env["AIRFLOW__CORE__DAGS_FOLDER"]], env)
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_the_dag_files_build_an_unseen_definitions_folder_and_validate_passes(tmp_path: Path) -> None:
    env = _env(tmp_path, **_unseen_project(tmp_path))
    assert sorted(p.name for p in Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).iterdir()) == sorted(dag_files.SOURCES)
    found = _bag(env)
    assert found["errors"] == {}
    assert {"nightly-orders", "orders-to-the-erp-25-at-a-time"} <= set(found["dags"])  # type: ignore[call-overload]
    validate = _run([SCHEDULED_JOBS, "validate"], env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "2 job definitions valid" in validate.stderr


def test_the_checkouts_dags_folder_holds_the_files_dag_files_writes() -> None:
    for name, source in dag_files.SOURCES.items():
        assert (ROOT / "dags" / name).read_text() == source, name


def test_dag_files_leaves_a_changed_file_alone_and_never_writes_through_a_link(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / dag_files.DAGS_FILE).write_text("# mine\n")
    with pytest.raises(FileExistsError, match=dag_files.DAGS_FILE):
        dag_files.write(dags)
    assert (dags / dag_files.DAGS_FILE).read_text() == "# mine\n"
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("# not yours\n")
    (dags / dag_files.PROBLEMS_FILE).symlink_to(elsewhere)
    dag_files.write(dags, force=True)
    assert elsewhere.read_text() == "# not yours\n"
    assert not (dags / dag_files.PROBLEMS_FILE).is_symlink()
    assert dag_files.write(dags) == [f"{dags / name}: up to date" for name in dag_files.SOURCES]


# -- no silent default for the folders outside a checkout -------------------------------------------------

AS_INSTALLED = "import scheduled_jobs.settings as s; s.IN_CHECKOUT = False\n"
"""What an installed package sees (this checkout's default does not apply): in the lock's run too."""


def test_unset_folders_are_named_by_validate_and_the_import_error(tmp_path: Path) -> None:
    project = _unseen_project(tmp_path)
    env = _env(tmp_path, AIRFLOW__CORE__DAGS_FOLDER=project["AIRFLOW__CORE__DAGS_FOLDER"])
    code = AS_INSTALLED + "import sys\nfrom scheduled_jobs.cli import main\nsys.exit(main(['validate']))\n"
    validate = _run([sys.executable, "-c", code], env)
    assert validate.returncode == 1
    assert "[scheduled_jobs]: definitions_folder: is not set" in validate.stdout
    assert "[scheduled_jobs]: configurations_folder: is not set" in validate.stdout
    assert "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER" in validate.stdout
    found = _bag(env, AS_INSTALLED)
    assert found["dags"] == []
    errors = found["errors"]
    assert list(errors) == [dag_files.PROBLEMS_FILE]  # type: ignore[call-overload]
    assert "definitions_folder: is not set" in errors[dag_files.PROBLEMS_FILE]  # type: ignore[index]


def test_a_missing_folder_is_named_with_its_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER", str(tmp_path / "nowhere"))
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER", str(tmp_path / "nothing"))
    reasons = [p.reason for p in load_catalog().problems]
    assert "job definitions folder does not exist ([scheduled_jobs] definitions_folder)" in reasons
    assert "configurations folder does not exist ([scheduled_jobs] configurations_folder)" in reasons


# -- the store's schema as an operator's step ----------------------------------------------------------------


def _schema_checks(url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store_at_revision(url, "0004")
    store_engine._migrated.clear()
    monkeypatch.delenv("AIRFLOW__SCHEDULED_JOBS__STORE_AUTO_MIGRATE", raising=False)
    with pytest.raises(StoreSchemaError, match=r"revision 0004, older .* \(0005\): run `scheduled-jobs db upgrade`"):
        store_engine.create_store_engine(url)
    check = _run([SCHEDULED_JOBS, "db", "check"], env)
    assert check.returncode == 1 and "run `scheduled-jobs db upgrade`" in check.stderr, check.stderr
    upgrade = _run([SCHEDULED_JOBS, "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "upgraded from 0004 to schema revision 0005" in upgrade.stdout
    again = _run([SCHEDULED_JOBS, "db", "upgrade"], env)
    assert "already at schema revision 0005" in again.stdout
    assert _run([SCHEDULED_JOBS, "db", "check"], env).returncode == 0
    store_engine.create_store_engine(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE scheduled_jobs_alembic_version SET version_num = '0099'"))
    engine.dispose()
    store_engine._migrated.clear()
    with pytest.raises(StoreSchemaError, match=r"'0099', which this version .* does not know"):
        store_engine.create_store_engine(url)
    assert "password" not in _run([SCHEDULED_JOBS, "db", "check"], env).stderr
    rollback = _run([SCHEDULED_JOBS, "db", "upgrade"], env)  # an older version's migration job after a rollback
    assert rollback.returncode == 1, rollback.stdout + rollback.stderr
    assert "does not know" in rollback.stderr and "nothing was changed" in rollback.stderr, rollback.stderr
    # One line of its own (Airflow 3.1 also logs a line of its providers manager's on stderr), no traceback.
    ours = [line for line in rollback.stderr.splitlines() if "[info" not in line]
    assert "Traceback" not in rollback.stderr and len(ours) == 1 and ours[0].startswith("error: "), rollback.stderr


def test_an_older_sqlite_store_is_refused_until_db_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    connection = json.dumps({"conn_type": "sqlite", "host": str(path)})
    _schema_checks(f"sqlite:///{path}", _env(tmp_path, AIRFLOW_CONN_SCHEDULED_JOBS_STORE=connection), monkeypatch)


@pytest.mark.postgres
def test_an_older_postgresql_store_is_refused_until_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server_url: str
) -> None:
    from conftest import connection_json
    from helpers.databases import fresh_database

    with fresh_database(postgres_server_url, "sj_schema") as url:
        rendered = url.render_as_string(hide_password=False)
        env = _env(tmp_path, AIRFLOW_CONN_SCHEDULED_JOBS_STORE=connection_json(rendered))
        _schema_checks(rendered, env, monkeypatch)


def test_an_empty_store_is_created_on_first_use_with_one_query_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    store_engine.create_store_engine(url).dispose()
    assert store_engine.current_revision(sa.create_engine(url)) == store_engine.HEAD_REVISION
    store_engine._migrated.clear()
    engine = store_engine.create_store_engine(url, check_schema=False)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store_engine.migrate(engine)
    assert [s for s in statements if not s.startswith(("PRAGMA", "BEGIN"))] == [
        "SELECT version_num FROM scheduled_jobs_alembic_version"
    ]


# -- the pages render from the installed package -------------------------------------------------------------


def test_the_pages_render(project: Path, client: httpx.Client) -> None:
    for page in ("jobs", "tasks", "processes", "cron"):
        answer = client.get(f"/{page}")
        assert answer.status_code == 200, (page, answer.text[:500])
        assert "<html" in answer.text.lower(), page
    assert "Orders" in client.get("/jobs").text


def test_the_compatibility_run_tests_the_wheel_not_the_checkout() -> None:
    if INSTALLED:
        assert not Path(scheduled_jobs.__file__).resolve().is_relative_to(ROOT / "plugins")
    else:
        assert settings.IN_CHECKOUT


# -- every [scheduled_jobs] setting checked when read (issue 22, item 2) ----------------------------------------

BAD_SETTINGS = [
    ("guard_design", "inlien", "got 'inlien', expected one of: inline, teardown"),
    ("max_attempts", "-1", "got '-1', expected a whole number from 1 to 1000"),
    ("prevent_duplicates", "maybe", "got 'maybe', expected true or false"),
    ("webhook_max_bytes", "1e999", "got '1e999', expected a whole number from 1 to 1073741824"),
    ("stuck_after_minutes", "thirty", "got 'thirty', expected a whole number from 1 to 525600"),
    ("guard_lease_minutes", "9" * 40, "expected a whole number from 1 to 525600"),
    ("guard_poll_seconds", "nan", "got 'nan', expected a number of seconds from 0.1 to 3600"),
    ("guard_poll_seconds", "-5", "got '-5', expected a number of seconds from 0.1 to 3600"),
    ("ui_editing", "yes please", "got 'yes please', expected true or false"),
    ("store_auto_migrate", "2", "got '2', expected true or false"),
    ("yaml_max_bytes", "0", "got '0', expected a whole number from 1 to 1073741824"),
    ("yaml_max_nodes", "\uff11\uff12", "got '\uff11\uff12', expected a whole number from 1 to 100000000"),
    ("webhook_max_records", "10_000", "got '10_000', expected a whole number from 1 to 10000000"),
    ("store_conn_id", "my store\n", "got 'my store\\n', expected an Airflow connection id"),
]


@pytest.mark.parametrize(("key", "value", "reason"), BAD_SETTINGS, ids=[f"{k}={v[:12]}" for k, v, _ in BAD_SETTINGS])
def test_a_bad_setting_is_a_problem_naming_the_setting_the_value_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, reason: str
) -> None:
    from scheduled_jobs.exceptions import Problem, SettingError

    monkeypatch.setenv(f"AIRFLOW__SCHEDULED_JOBS__{key.upper()}", value)
    with pytest.raises(SettingError) as raised:
        getattr(settings, key)()
    problem = raised.value.problem
    assert (problem.path, problem.key) == ("[scheduled_jobs]", key)
    assert reason in problem.reason, problem.reason
    assert f"AIRFLOW__SCHEDULED_JOBS__{key.upper()}" in problem.reason
    assert "\n" not in str(problem) and len(str(problem)) < 400
    assert settings.problems() == [Problem("[scheduled_jobs]", key, problem.reason)]


def test_a_huge_or_hostile_setting_value_is_shown_cut_and_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN", "\u202einline\x1b[31m" + "x" * 10_000)
    (problem,) = settings.problems()
    text = str(problem)
    assert len(text) < 400 and "\x1b" not in text and "\u202e" not in text
    assert "\\u202einline\\x1b[31m" in text and "characters)" in text


def test_every_setting_the_provider_declares_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(settings.CHECKED) | {"definitions_folder", "configurations_folder"} == set(OPTIONS)
    for key in [k for k in os.environ if k.startswith("AIRFLOW__SCHEDULED_JOBS__")]:
        monkeypatch.delenv(key)
    assert settings.problems() == []


def test_a_bad_setting_in_the_folders_catalog_does_not_raise_but_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _unseen_project(tmp_path)
    for key, value in project.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__YAML_MAX_BYTES", "1MB")
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__STUCK_AFTER_MINUTES", "0")
    problems = [str(p) for p in load_catalog().problems]
    assert any(p.startswith("[scheduled_jobs]: yaml_max_bytes: got '1MB'") for p in problems), problems
    assert any(p.startswith("[scheduled_jobs]: stuck_after_minutes: got '0'") for p in problems), problems


def test_a_typo_in_guard_design_is_the_import_error_and_fails_validate(tmp_path: Path) -> None:
    env = _env(tmp_path, **_unseen_project(tmp_path), AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN="inlien")
    found = _bag(env)
    errors = found["errors"]
    assert list(errors) == [dag_files.PROBLEMS_FILE], errors  # type: ignore[call-overload]
    expected = "[scheduled_jobs]: guard_design: got 'inlien', expected one of: inline, teardown"
    assert expected in errors[dag_files.PROBLEMS_FILE]  # type: ignore[index]
    # Not an empty DAG in their place (a half-built DAG auto-registered by its `with` block): runs of it would
    # succeed doing nothing.
    assert not {"nightly-orders", "orders-to-the-erp-25-at-a-time"} & set(found["dags"]), found["dags"]  # type: ignore[call-overload]
    validate = _run([SCHEDULED_JOBS, "validate"], env)
    assert validate.returncode == 1, validate.stdout + validate.stderr
    lines = [line for line in validate.stdout.splitlines() if line.startswith("[scheduled_jobs]")]
    assert len(lines) == 1 and lines[0].startswith(expected), validate.stdout
    one_file = _run([SCHEDULED_JOBS, "validate", env["AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER"]], env)
    assert one_file.returncode == 1 and expected in one_file.stdout, one_file.stdout + one_file.stderr
