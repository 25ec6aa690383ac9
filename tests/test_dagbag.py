"""The DAGs Airflow sees: one per valid definition, with its timetable, priority and import errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from airflow.dag_processing.dagbag import DagBag
from conftest import ROOT

if TYPE_CHECKING:
    from pathlib import Path

ENTRY = "scheduled_jobs_dags.py"
PROBLEMS = "scheduled_jobs_problems.py"
REALTIME = "realtime_export.orders-to-erp"


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
    assert export.timetable.timezone == "Europe/Amsterdam"
    assert export.max_active_runs == 1
    assert export.catchup is False
    assert export.is_paused_upon_creation is False
    assert export.tags == {"scheduled-job", "outgoing"}
    assert "Push new orders to the ERP, 100 at a time." in export.doc_md
    assert sorted(t.task_id for t in export.tasks) == ["export_route", "guard", "release_guard"]
    assert {t.priority_weight for t in export.tasks} == {5}
    task = export.get_task("export_route")
    guard = export.get_task("guard")
    assert (guard.configuration, guard.overlap, guard.downstream_task_ids) == (
        "route:orders-to-erp",
        "buffer_one",
        {"export_route", "release_guard"},
    )
    assert export.get_task("release_guard").is_teardown is True
    assert (task.task_id, task.priority_weight, task.weight_rule) == ("export_route", 5, "absolute")
    assert (task.route, task.tasks_to_export) == ("orders-to-erp", 100)

    incoming = bag.get_dag("shop-orders-incoming")
    assert sorted((t.task_id, t.priority_weight) for t in incoming.tasks) == [
        ("export_orders-to-erp", 10),
        ("guard", 10),
        ("release_guard", 10),
        ("run_incoming_configuration", 10),
    ]
    assert incoming.get_task("guard").configuration == "incoming:shop-orders"
    assert incoming.get_task("release_guard").upstream_task_ids == {
        "guard",
        "run_incoming_configuration",
        "export_orders-to-erp",
    }
    realtime = incoming.get_task("export_orders-to-erp")
    assert realtime.upstream_task_ids == {"run_incoming_configuration"}
    assert (realtime.route, realtime.tasks_to_export, realtime.trigger_rule) == ("orders-to-erp", None, "all_success")
    repair = bag.get_dag("repair-stuck-tasks")
    assert repair.timetable.timezone == "UTC"
    assert [t.task_id for t in repair.tasks] == ["repair_stuck_tasks"]  # no configuration, no guard
    assert repair.tasks[0].stuck_after_minutes == 30


def test_a_disabled_job_has_no_schedule(project: Path) -> None:
    dag = dagbag().get_dag("product-catalog-incoming")
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert "disabled" in dag.tags
    assert dag.get_task("run_incoming_configuration").disabled is True


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
        assert (task.priority_weight, task.weight_rule) == (priority, "absolute")
        assert task.retries >= 1
        assert "guard" not in dag.task_ids, "webhooks are exempt from duplicate prevention"
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
