"""The DAGs Airflow sees: one per valid definition, with its timetable, priority and import errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from airflow.timetables.base import TimeRestriction
from conftest import ROOT
from helpers.airflow_compat import DagBag, weight_rule_name

if TYPE_CHECKING:
    from pathlib import Path

ENTRY = "scheduled_jobs_dags.py"
PROBLEMS = "scheduled_jobs_problems.py"
REALTIME = "realtime_export.orders-to-erp"
_NO_LIMIT = TimeRestriction(earliest=None, latest=None, catchup=False)


def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_examples_make_one_dag_each_and_no_import_error(project: Path) -> None:
    bag = dagbag()
    assert bag.import_errors == {}
    definitions = sorted(p.stem for p in (project / "job_definitions").glob("*.yaml"))
    assert sorted(bag.dag_ids) == sorted([*definitions, REALTIME])  # and the example's one real-time route


def test_each_dag_carries_the_definition(project: Path) -> None:
    bag = dagbag()
    export = bag.get_dag("orders-to-erp-export")
    assert export.timetable.expression == "* * * * *"
    assert export.timetable.timezone_name == "Europe/Amsterdam"
    assert export.timetable.summary == "* * * * * (Europe/Amsterdam)"
    assert (export.dag_id, export.dag_display_name) == ("orders-to-erp-export", "Orders to ERP export")
    assert export.max_active_runs == 1
    assert export.catchup is False
    assert export.is_paused_upon_creation is False
    assert export.tags == {"scheduled-job", "outgoing"}
    assert "Push new orders to the ERP, 100 at a time." in export.doc_md
    # The duplicate rule inside the work task (guard_design inline, the default): one task instance per run.
    assert [t.task_id for t in export.tasks] == ["export_route"]
    task = export.get_task("export_route")
    assert (task.configuration, task.inline_guard) == ("route:orders-to-erp", "buffer_one")
    assert (task.task_id, task.priority_weight, weight_rule_name(task.weight_rule)) == ("export_route", 5, "absolute")
    assert (task.route, task.tasks_to_export) == ("orders-to-erp", 100)

    incoming = bag.get_dag("shop-orders-incoming")
    assert sorted((t.task_id, t.priority_weight) for t in incoming.tasks) == [
        ("export_orders-to-erp", 10),
        ("run_incoming_configuration", 10),
        ("watcher", 10),
    ]
    work = incoming.get_task("run_incoming_configuration")
    assert (work.configuration, work.inline_guard, work.upstream_task_ids) == (
        "incoming:shop-orders",
        "buffer_one",
        set(),
    )
    realtime = incoming.get_task("export_orders-to-erp")
    assert realtime.upstream_task_ids == {"run_incoming_configuration"}
    # Also after a failed incoming run (a rejected file); the watcher then fails the run.
    assert (realtime.route, realtime.tasks_to_export, realtime.trigger_rule) == ("orders-to-erp", None, "none_skipped")
    watcher = incoming.get_task("watcher")
    assert (watcher.trigger_rule, watcher.upstream_task_ids, watcher.downstream_task_ids) == (
        "one_failed",
        {"run_incoming_configuration", "export_orders-to-erp"},
        set(),
    )
    repair = bag.get_dag("repair-stuck-tasks")
    assert repair.timetable.timezone_name == "UTC"
    assert [t.task_id for t in repair.tasks] == ["repair_stuck_tasks"]  # no configuration, no guard
    assert repair.tasks[0].stuck_after_minutes == 30


def test_a_disabled_job_has_no_schedule_starts_paused_and_says_disabled(project: Path) -> None:
    dag = dagbag().get_dag("product-catalog-incoming")
    assert dag.timetable.summary == "Disabled"
    assert dag.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_NO_LIMIT) is None
    assert dag.is_paused_upon_creation is True
    assert "disabled" in dag.tags
    assert dag.get_task("run_incoming_configuration").disabled is True
    assert dagbag().get_dag("shop-orders-incoming").is_paused_upon_creation is False


def test_the_scheduler_reads_back_the_schedule_the_dag_list_shows(project: Path) -> None:
    """What the DAG processor stores and the scheduler and API server read: the plugin's timetables."""
    from helpers.airflow_compat import DagSerialization

    bag = dagbag()
    shown = {}
    for dag_id in ("orders-to-erp-export", "product-catalog-incoming", "repair-stuck-tasks"):
        stored = json.loads(json.dumps(DagSerialization.to_dict(bag.get_dag(dag_id))))
        read = DagSerialization.from_dict(stored)
        shown[dag_id] = (read.timetable.summary, read.timetable.description, read.dag_display_name)
    assert shown == {
        "orders-to-erp-export": ("* * * * * (Europe/Amsterdam)", "Every minute", "Orders to ERP export"),
        "product-catalog-incoming": (
            "Disabled",
            "Disabled in its definition file (disabled: true): no scheduled runs",
            "Product catalog incoming",
        ),
        "repair-stuck-tasks": ("*/15 * * * * (UTC)", "Every 15 minutes", "Repair stuck tasks"),
    }


def test_a_new_job_first_runs_at_its_next_fire_time(project: Path) -> None:
    """Airflow's own CronTriggerTimetable runs a new every-minute DAG at once for the minute just past."""
    from airflow.timetables.trigger import CronTriggerTimetable

    def first_run(timetable: Any) -> dt.datetime:
        info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_NO_LIMIT)
        return info.run_after

    before = dt.datetime.now(dt.UTC)
    job = dagbag().get_dag("orders-to-erp-export").timetable  # "* * * * *": a fire time under a minute ago
    assert before < first_run(job) <= before + dt.timedelta(minutes=1, seconds=1)
    assert first_run(CronTriggerTimetable("* * * * *", timezone="Europe/Amsterdam")) <= dt.datetime.now(dt.UTC)


def test_a_bad_file_is_an_import_error_and_the_good_dags_still_register(project: Path) -> None:
    bad = project / "job_definitions" / "broken.yaml"
    bad.write_text("name: Broken\njob: outgoing\nroute: orders-to-erp\nexpression: '61 * * * *'\n", encoding="utf-8")
    other = project / "job_definitions" / "typo.yaml"
    other.write_text("name: Typo\njob: repair_stuck_tasks\nexpression: '@daily'\nprority: 3\n", encoding="utf-8")
    bag = dagbag()
    assert len(bag.dag_ids) == 6  # the five jobs and the real-time route
    errors = {path.rsplit("/", 1)[-1]: text for path, text in bag.import_errors.items()}
    assert list(errors) == [PROBLEMS]
    assert f"{bad}: expression: minute: 61 is out of range 0-59" in errors[PROBLEMS]
    assert f"{other}: prority: unknown key; did you mean 'priority'?" in errors[PROBLEMS]
    assert "2 problems in scheduled job files:" in errors[PROBLEMS]


def test_a_worker_builds_only_the_dag_of_its_task(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduled_jobs.factory import build_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orders-to-erp-export")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "export_route")
    (project / "job_definitions" / "broken.yaml").write_text("name: [", encoding="utf-8")
    assert list(build_dags()) == ["orders-to-erp-export"]


def test_a_worker_finds_a_job_whose_file_name_differs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduled_jobs.factory import build_dags

    folder = project / "job_definitions"
    (folder / "orders-to-erp-export.yaml").rename(folder / "export-1.yaml")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orders-to-erp-export")
    assert list(build_dags()) == ["orders-to-erp-export"]


def test_each_realtime_route_gets_an_export_dag_on_its_asset_with_its_priority(project: Path) -> None:
    from airflow.sdk import Asset

    routes = project / "configurations" / "routes"
    orders = routes / "orders-to-erp.yaml"
    orders.write_text(orders.read_text() + "priority: 7\n", encoding="utf-8")
    products = routes / "products-to-webshop.yaml"
    products.write_text(products.read_text() + "realtime: true\npriority: -2\n", encoding="utf-8")
    (routes / "orders-archive.yaml").write_text(
        "name: Orders archive\nincoming_configuration: shop-orders\noutgoing_configuration: webshop-products-file\n",
        encoding="utf-8",
    )
    bag = dagbag()
    assert bag.import_errors == {}
    assert {d for d in bag.dag_ids if d.startswith("realtime_export.")} == {
        "realtime_export.orders-to-erp",
        "realtime_export.products-to-webshop",
    }, "one DAG per real-time route, none for a route that is not real-time"
    for route, priority in (("orders-to-erp", 7), ("products-to-webshop", -2)):
        dag = bag.get_dag(f"realtime_export.{route}")
        uri = f"x-scheduled-jobs://routes/{route}"
        assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
        assert dag.timetable.asset_condition == Asset(name=uri, uri=uri)
        assert (dag.max_active_runs, dag.catchup, dag.is_paused_upon_creation) == (1, False, False)
        (task,) = dag.tasks
        assert (task.task_id, task.route, task.tasks_to_export) == ("export_route", route, None)
        assert (task.priority_weight, weight_rule_name(task.weight_rule)) == (priority, "absolute")
        assert task.retries >= 1
        assert task.inline_guard is None, "webhooks are exempt from duplicate prevention"
    incoming = bag.get_dag("shop-orders-incoming")
    assert "export_orders-to-erp" in incoming.task_ids, "the incoming job still exports its real-time routes"


def test_a_worker_builds_only_the_realtime_dag_of_its_task(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduled_jobs.factory import build_dags

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", REALTIME)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "export_route")
    (project / "job_definitions" / "broken.yaml").write_text("name: [", encoding="utf-8")
    assert list(build_dags()) == [REALTIME]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orders-to-erp-export")
    assert list(build_dags()) == ["orders-to-erp-export"], "a job's worker does not build the real-time DAGs"


def test_the_dag_docs_show_the_definition_file_and_what_the_job_runs(project: Path) -> None:
    bag = dagbag()
    export = bag.get_dag("orders-to-erp-export").doc_md
    definition = (project / "job_definitions" / "orders-to-erp-export.yaml").read_text(encoding="utf-8")
    assert f"### Definition file\n\n```yaml\n{definition.rstrip()}\n```" in export
    assert (
        "- **Route Orders to ERP** (`orders-to-erp`): tasks of `shop-orders` → ERP orders file: "
        "files `order-{entity_key}.json` in `outbox/erp-orders`" in export
    )
    assert "  - Number of tasks to export per run: 100" in export
    incoming = bag.get_dag("shop-orders-incoming").doc_md
    assert (
        "- **Incoming configuration Shop orders** (`shop-orders`): files `*.json` in `inbox/shop-orders`, "
        "records at `orders` → tasks on `orders-to-erp`" in incoming
    )
    realtime = bag.get_dag(REALTIME)
    assert realtime.dag_display_name == "Real-time export: Orders to ERP"
    assert "- **Route Orders to ERP** (`orders-to-erp`)" in realtime.doc_md


def test_the_dag_docs_escape_what_a_file_says(project: Path) -> None:
    """Airflow renders doc_md as markdown: a name, a description or a YAML line stays text."""
    hostile = project / "job_definitions" / "hostile.yaml"
    hostile.write_text(
        "name: '# <img src=x onerror=alert(1)> [click](javascript:alert(1)) **bold**'\n"
        "description: |-\n  - a list?\n  ```\n  <script>alert(2)</script>\n"
        "job: repair_stuck_tasks\nexpression: '@daily'\n"
        "# ```` a comment that tries to close the fence\n# </code><script>alert(3)</script>\n",
        encoding="utf-8",
    )
    doc = dagbag().get_dag("img-src-x-onerror-alert-1-click-javascript-alert-1-bold").doc_md
    title, _, description = doc.split("\n")[:3]
    assert title == r"## \# \<img src=x onerror=alert(1)\> \[click\](javascript:alert(1)) \*\*bold\*\*"
    assert description == r"\- a list? \`\`\` \<script\>alert(2)\</script\>"
    # The file is fenced with more backticks than any run in it, so no line of it closes the block.
    assert "\n`````yaml\n" in doc and doc.endswith("\n# </code><script>alert(3)</script>\n`````")


def test_the_docs_name_an_http_source_and_a_sql_destination_with_their_limits(project: Path) -> None:
    from scheduled_jobs.factory import _destination, _source
    from scheduled_jobs.models.connectors.http import HttpSubscriberSettings
    from scheduled_jobs.models.connectors.sql import SqlPublisherSettings

    source = HttpSubscriberSettings.model_validate(
        {"connection": "shop_api", "endpoint": "/orders", "pagination": {"type": "page", "size": 50}, "max_pages": 20}
    )
    assert _source(source) == (
        "HTTP GET `/orders` on connection `shop_api`",
        ["page pagination, 50 a page", "at most 100,000 records and 20 pages per run", "4 tries per request"],
    )
    table = SqlPublisherSettings.model_validate({"connection": "erp_db", "table": "orders", "columns": {"id": "id"}})
    assert _destination(table) == ("SQL insert into `orders` on connection `erp_db`", [])


def test_the_docs_show_at_most_the_first_20000_characters_of_a_definition_file(project: Path) -> None:
    long = project / "job_definitions" / "long.yaml"
    long.write_text(
        "name: Long\njob: repair_stuck_tasks\nexpression: '@daily'\n# " + "x" * 30_000 + "\n", encoding="utf-8"
    )
    doc = dagbag().get_dag("long").doc_md
    shown = doc.split("```yaml\n", 1)[1]
    assert shown.endswith("\n# ... cut: the docs show the first 20000 characters\n```")
    assert len(shown) < 20_100


# -- limits of Airflow's dag table, and texts that must not become links or spoofed names -----------


def _write_job(project: Path, stem: str, text: str) -> None:
    (project / "job_definitions" / f"{stem}.yaml").write_text(text, encoding="utf-8")


# Every list a cron field takes: a valid Expression whose meaning (the Schedule column's tooltip) is
# 1,305 characters, and Airflow's dag.timetable_description is String(1000).
_ALL_LISTS = " ".join(",".join(map(str, r)) for r in (range(60), range(24), range(1, 32), range(1, 13), range(7)))


@pytest.mark.postgres
@pytest.mark.parametrize(
    "definition",
    [
        pytest.param(f"name: {'N' * 2001}\nexpression: '@daily'\n", id="name-2001-characters"),
        pytest.param(f"name: All lists\nexpression: '{_ALL_LISTS}'\n", id="expression-meaning-1305-characters"),
    ],
)
def test_one_job_does_not_keep_every_job_out_of_a_postgres_metadata_database(
    project: Path, postgres_server_url: str, definition: str
) -> None:
    """dag_display_name is String(2000) and timetable_description String(1000) in Airflow's ``dag`` table.

    Every job's DAG comes from one DAG file, and the DAG processor writes a file's DAGs in one
    transaction: on PostgreSQL one value too long (which the catalog accepts) raises
    StringDataRightTruncation, and no job of the file reaches the scheduler or the DAG list. SQLite
    does not enforce the lengths, so the SQLite tests never see it.
    """
    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.dagbundle import DagBundleModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from helpers.airflow_compat import DagSerialization, SerializedDAG
    from sqlalchemy.orm import Session

    _write_job(project, "hostile", f"identifier: hostile\njob: repair_stuck_tasks\n{definition}")
    bag = dagbag()
    assert "hostile" in bag.dag_ids
    # What the DAG processor hands to the database: the DAGs as they come back from serialization.
    dags = [
        LazyDeserializedDAG(data=json.loads(json.dumps(DagSerialization.to_dict(dag)))) for dag in bag.dags.values()
    ]
    import_all_models()  # type: ignore[no-untyped-call]  # Airflow's, untyped: the tables' models
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS rvn_meta CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA rvn_meta"))
    engine = sa.create_engine(postgres_server_url, connect_args={"options": "-csearch_path=rvn_meta"})
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(DagBundleModel(name="dags-folder"))
            session.commit()
            error = ""
            try:
                SerializedDAG.bulk_write_to_db("dags-folder", None, dags, session=session)
                session.commit()
            except sa.exc.DataError as exc:
                error = str(exc.orig).strip()
                session.rollback()
            stored = set(session.scalars(sa.text("SELECT dag_id FROM dag")))
        assert {"shop-orders-incoming", "orders-to-erp-export"} <= stored, error
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS rvn_meta CASCADE"))
        admin.dispose()


def test_the_docs_do_not_show_a_token_in_an_http_endpoint(project: Path) -> None:
    """doc_md is stored in the metadata database and shown to every DAG reader.

    The catalog refuses credential-looking keys, not a token in the endpoint's query; the HTTP errors
    already drop such values (redaction.clean_url), the docs' summary shows them as written.
    """
    (project / "configurations" / "incoming" / "shop-api.yaml").write_text(
        "name: Shop API\nentity_key: id\nsubscriber:\n  type: http\n  connection: shop_api\n"
        "  endpoint: /orders?access_token=S3CRETTOKEN\n",
        encoding="utf-8",
    )
    _write_job(
        project,
        "shop-api-incoming",
        "name: Shop API incoming\njob: incoming\nincoming_configuration: shop-api\nexpression: '*/5 * * * *'\n",
    )
    bag = dagbag()
    assert bag.import_errors == {}
    assert "S3CRETTOKEN" not in bag.get_dag("shop-api-incoming").doc_md


def test_a_url_in_a_description_is_not_made_a_link_to_another_host(project: Path) -> None:
    """factory.py says no text from a file can add a link to the page; GFM (Airflow's UI uses remark-gfm) autolinks."""
    from markdown_it import MarkdownIt

    _write_job(
        project,
        "phish",
        "name: Log in at www.evil.example\nidentifier: phish\n"
        "description: Session expired, log in again at https://evil.example/airflow/login\n"
        "job: repair_stuck_tasks\nexpression: '@daily'\n",
    )
    html = MarkdownIt("gfm-like").render(dagbag().get_dag("phish").doc_md)
    assert re.findall(r"<a href=\"[^\"]*\"", html) == []


def test_the_display_name_carries_no_line_break_or_bidirectional_override(project: Path) -> None:
    """A Name with U+202E shows reversed in the DAG list ("Trojan Source"); the docs flatten a newline, the name not."""
    _write_job(
        project,
        "spoof",
        'name: "Orders\\nexport \\u202etropxe\\u202c"\nidentifier: spoof\njob: repair_stuck_tasks\nexpression: "@daily"\n',
    )
    name = dagbag().get_dag("spoof").dag_display_name
    assert not re.search(r"[\n\r\u202a-\u202e\u2066-\u2069]", name), repr(name)
