"""Benchmark: building the DAGs of 1,000 job definitions.

Compares, on the same generated definitions and in the same run:
  factory      scheduled_jobs: YAML load + full validation + DAG build (what the dag-processor does)
  plain loop   the same YAML read with the same loader, the same DAGs built, no validation at all
  dag-factory  dag-factory 1.1.0 on equivalent YAML (one file per DAG), telemetry off
  worker       scheduled_jobs with the parsing context of one task (what a worker does)

Each variant runs in a fresh Python process (imports done before the clock starts); the median of
--repeat runs is reported. Usage: python bench/build_dags.py [--jobs 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KINDS = [
    ("outgoing", "route: orders-to-erp\ntasks_to_export: 100\n"),
    ("incoming", "incoming_configuration: shop-orders\n"),
    ("repair_stuck_tasks", "stuck_after_minutes: 30\n"),
]
ZONES = ["Europe/Amsterdam", "America/New_York", "UTC", "Asia/Tokyo"]
OPERATORS = {
    "outgoing": ("ExportRouteOperator", "export_route", {"route": "orders-to-erp", "tasks_to_export": 100}),
    "incoming": (
        "RunIncomingConfigurationOperator",
        "run_incoming_configuration",
        {"incoming_configuration": "shop-orders"},
    ),
    "repair_stuck_tasks": ("RepairStuckTasksOperator", "repair_stuck_tasks", {"stuck_after_minutes": 30}),
}


def job(index: int) -> dict[str, object]:
    kind, _ = KINDS[index % len(KINDS)]
    return {
        "identifier": f"job-{index:04d}",
        "name": f"Job {index:04d}",
        "kind": kind,
        "expression": f"{index % 60} {index // 60 % 24} * * {index % 7}",  # 1,000 distinct
        "timezone": ZONES[index % len(ZONES)],
        "priority": index % 20,
    }


def write_definitions(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        j = job(index)
        extra = dict(KINDS)[str(j["kind"])]
        (folder / f"{j['identifier']}.yaml").write_text(
            f"name: {j['name']}\ndescription: Benchmark job {index}\njob: {j['kind']}\n{extra}"
            f'expression: "{j["expression"]}"\ntimezone: {j["timezone"]}\npriority: {j["priority"]}\n'
        )


def write_dag_factory_yaml(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        j = job(index)
        operator, task_id, arguments = OPERATORS[str(j["kind"])]
        weight = {"priority_weight": j["priority"], "weight_rule": "absolute"}
        task = {"task_id": task_id, "operator": f"scheduled_jobs.operators.{operator}", **arguments, **weight}
        tasks = [task]
        if j["kind"] != "repair_stuck_tasks":  # the guard and release the factory adds (release as all_done)
            target = "route:orders-to-erp" if j["kind"] == "outgoing" else "incoming:shop-orders"
            guard_op = "scheduled_jobs.operators.guard.GuardSensor"
            release_op = "scheduled_jobs.operators.guard.ReleaseGuardOperator"
            last = [task_id]
            tasks = [
                {"task_id": "guard", "operator": guard_op, "configuration": target, **weight},
                {**task, "dependencies": ["guard"]},
            ]
            if j["kind"] == "incoming":  # the real-time route's export, as the factory adds it
                export_op = "scheduled_jobs.operators.ExportRouteOperator"
                tasks.append(
                    {
                        "task_id": "export_orders-to-erp",
                        "operator": export_op,
                        "route": "orders-to-erp",
                        "dependencies": [task_id],
                        **weight,
                    }
                )
                last.append("export_orders-to-erp")
            tasks.append(
                {
                    "task_id": "release_guard",
                    "operator": release_op,
                    "trigger_rule": "all_done",
                    "dependencies": last,
                    **weight,
                }
            )
        dag = {
            "description": j["name"],
            "catchup": False,
            "max_active_runs": 1,
            "is_paused_upon_creation": False,
            "tags": ["scheduled-job", j["kind"]],
            "schedule": {
                "__type__": "airflow.sdk.CronTriggerTimetable",
                "__args__": [j["expression"]],
                "timezone": j["timezone"],
            },
            "tasks": tasks,
        }
        (folder / f"{j['identifier']}.yml").write_text(json.dumps({j["identifier"]: dag}))  # JSON is YAML


FACTORY = """
from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.factory import build_dags
import scheduled_jobs.cron, croniter, cron_descriptor  # imported before the clock, as in a warm parser
START
dags = build_dags(load_catalog())
"""

WORKER = """
import os
from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.factory import build_dags
import croniter
os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = "job-0500"
START
dags = build_dags()
assert list(dags) == ["job-0500"], list(dags)
"""

PLAIN_LOOP = """
from pathlib import Path
import os, yaml
from airflow.sdk import DAG, CronTriggerTimetable
from scheduled_jobs.operators import ExportRouteOperator, RepairStuckTasksOperator, RunIncomingConfigurationOperator
from scheduled_jobs.operators.guard import GuardSensor, ReleaseGuardOperator
folder = Path(os.environ["AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER"])
START
dags = {}
for path in sorted(folder.glob("*.yaml")):
    d = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    dag_id = path.stem
    with DAG(dag_id=dag_id, description=d["name"], schedule=CronTriggerTimetable(d["expression"], timezone=d["timezone"]),
             catchup=False, max_active_runs=1, is_paused_upon_creation=False, tags=["scheduled-job", d["job"]]) as dag:
        weight = dict(priority_weight=d["priority"], weight_rule="absolute")
        common = dict(weight, definition_file=str(path))
        if d["job"] == "outgoing":
            work = ExportRouteOperator(task_id="export_route", route=d["route"], tasks_to_export=d["tasks_to_export"], **common)
            target = "route:" + d["route"]
        elif d["job"] == "incoming":
            work = RunIncomingConfigurationOperator(task_id="run_incoming_configuration", incoming_configuration=d["incoming_configuration"], **common)
            target = "incoming:" + d["incoming_configuration"]
            realtime = ExportRouteOperator(task_id="export_orders-to-erp", route="orders-to-erp", **common)  # a real-time route
            work >> realtime
        else:
            RepairStuckTasksOperator(task_id="repair_stuck_tasks", stuck_after_minutes=d["stuck_after_minutes"], **common)
            target = None
        if target:
            guard = GuardSensor(task_id="guard", configuration=target, **weight)
            release = ReleaseGuardOperator(task_id="release_guard", **weight)
            guard >> work
            [work, *([realtime] if d["job"] == "incoming" else [])] >> release.as_teardown(setups=guard)
    dags[dag_id] = dag
"""

DAG_FACTORY = """
import os
import dagfactory
START
g = {}
dagfactory.load_yaml_dags(globals_dict=g, dags_folder=os.environ["DAG_FACTORY_FOLDER"])
dags = {k: v for k, v in g.items() if type(v).__name__ == "DAG"}
"""

TIMER = """
import logging, time, sys
logging.disable(logging.CRITICAL)
{before}
start = time.perf_counter()
{after}
elapsed = time.perf_counter() - start
print(elapsed, len(dags), sum(len(d.tasks) for d in dags.values()), file=sys.stderr)
"""


def measure(code: str, env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, DAGs built, tasks in them) of one run in a fresh process."""
    before, after = textwrap.dedent(code).split("START\n")
    script = TIMER.format(before=before, after=after)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    seconds, dags, tasks = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(dags), int(tasks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sj-bench-"))
    write_definitions(work / "job_definitions", args.jobs)
    write_dag_factory_yaml(work / "dag_factory", args.jobs)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(work / "job_definitions"),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(ROOT / "configurations"),
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        "DAG_FACTORY_FOLDER": str(work / "dag_factory"),
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    variants = {
        "plain loop": PLAIN_LOOP,
        "factory": FACTORY,
        "dag-factory 1.1.0": DAG_FACTORY,
        "worker (1 DAG)": WORKER,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    counts: dict[str, int] = {}
    task_counts: dict[str, int] = {}
    for _ in range(args.repeat):  # interleaved, so drift on the machine hits every variant alike
        for name, code in variants.items():
            seconds, dags, tasks = measure(code, env)
            results[name].append(seconds)
            counts[name] = dags
            task_counts[name] = tasks
    median = {name: statistics.median(times) for name, times in results.items()}
    print(
        f"{args.jobs} job definitions, median of {args.repeat} runs, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'variant':<20}{'median s':>10}{'min s':>10}{'DAGs':>7}{'tasks':>7}{'vs loop':>10}")
    for name in variants:
        print(
            f"{name:<20}{median[name]:>10.3f}{min(results[name]):>10.3f}{counts[name]:>7}{task_counts[name]:>7}"
            f"{median[name] / median['plain loop']:>9.2f}x"
        )
    print(f"factory / plain loop: {median['factory'] / median['plain loop']:.2f}x (target <= 1.30x)")
    print(f"dag-factory / factory: {median['dag-factory 1.1.0'] / median['factory']:.2f}x")
    print(
        f"worker parse is {median['factory'] / median['worker (1 DAG)']:.0f}x less work than building all (target >= 10x)"
    )


if __name__ == "__main__":
    main()
