"""How late every-minute jobs start under a loaded scheduler: N scheduled jobs against N plain Airflow DAGs.

Method: for each N (``--jobs``) and each guard design (``--design``), a fresh ``airflow standalone``
(LocalExecutor, ``[core] parallelism`` 4 as in scripts/env.sh, no example DAGs, dag-factory telemetry off)
on a temporary home, with a fresh PostgreSQL database of its own for Airflow's metadata and another for
the task store (``--metadata sqlite`` for SQLite files instead), dropped afterwards. Its DAGs folder holds:

- the project's DAG files, building N outgoing jobs ``bench-job-NNN`` (``* * * * *``, UTC) from a
  temporary definitions folder, each exporting a route of its own (``bench-NNN``) whose queue is empty,
  so the work is trivial; the routes share one webhook-only incoming and one file outgoing configuration;
- one file of N plain DAGs ``plain-NNN``: ``airflow.sdk`` DAGs on ``CronTriggerTimetable("* * * * *",
  timezone="UTC")``, one ``@task`` that returns at once, ``max_active_runs=1`` and the task weight of a
  job without ``priority:`` (0, absolute) like the jobs, so that neither set goes first for a free slot
  (a worker's parse builds only its own DAG, as the factory does).

Both sets are unpaused from the start. Once Airflow has registered all 2N DAGs, the next full minute
is a warm-up; the window is the ``--minutes`` cron ticks after it. From Airflow's metadata database,
per set, over the ticks in the window (a DAG run's tick is its ``run_after``, which
``CronTriggerTimetable`` sets to the fire time, as it does ``logical_date`` and ``data_interval_end``):

- lateness: the start of the *work* task (``export_route`` for a job, never its guard; ``work`` for a
  plain DAG) minus the tick, p50 and p95; a tick with no run, or whose work had not started by the end
  of the window, is *missing*;
- run duration: the DAG run's end minus its start, p50 and p95 (runs ended within a minute after the window);
- "keeps up" when every tick of the window had its work started within 60 s of the tick.

CPU over the window, from /proc: the scheduler process alone, the scheduler with its descendants
(LocalExecutor's worker processes and the task processes they fork: the cost of running task instances),
all of ``airflow standalone``, and the whole machine's busy share. These are per run, shared by both sets.

Usage::

    .venv/bin/python bench/schedule_lateness.py [--jobs 25,50,100] [--minutes 5] [--design teardown,inline]
        [--sets ours,plain] [--metadata postgres|sqlite] [--json out.json] [--env KEY=VALUE ...]

Each (N, design) is one standalone of about 4 + --minutes minutes; for each N the designs alternate
in order, so that the two designs of one N run close in time. Both sets share the scheduler and its 4
slots, so each set's figures include the other's load; and with equal task weights the scheduler's order
between them is undefined (``-priority_weight, logical_date, map_index``), so once the slots are the
limit one set may take them all first. ``--sets ours`` or ``--sets plain`` runs one set alone (N DAGs
instead of 2N), to find the N at which each alone stops keeping up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from helpers.databases import fresh_database  # noqa: E402
from helpers.standalone import BIN, Standalone  # noqa: E402

PARALLELISM = "4"  # scripts/env.sh's AIRFLOW__CORE__PARALLELISM
POSTGRES_URL = os.environ.get("SCHEDULED_JOBS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
OURS, PLAIN = "ours", "plain"
WORK_TASK = {OURS: "export_route", PLAIN: "work"}
DAG_PREFIX = {OURS: "bench-job-", PLAIN: "plain-"}
KEEP_UP_SECONDS = 60.0
SET_NAMES = {OURS: "{count} every-minute jobs", PLAIN: "{count} plain DAGs"}
DURATION_GRACE = 60.0  # seconds after the window for the window's last runs to end
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

PLAIN_DAGS = '''"""N plain one-task DAGs on the same cron as the jobs (written by bench/schedule_lateness.py)."""

from airflow.sdk import DAG, CronTriggerTimetable, get_parsing_context, task

COUNT = {count}
wanted = get_parsing_context().dag_id  # a worker's parse builds only its own DAG, as the factory does


# The weight of a job's task without ``priority:`` (0, absolute): neither set goes first for a free slot.
@task(task_id="work", priority_weight=0, weight_rule="absolute")
def work() -> None:
    return None


for number in range(COUNT):
    dag_id = f"plain-{{number:03d}}"
    if wanted not in (None, dag_id):
        continue
    with DAG(
        dag_id=dag_id,
        schedule=CronTriggerTimetable("* * * * *", timezone="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["bench-plain"],
    ) as dag:
        work()
    globals()[dag_id] = dag
'''


# -- the temporary project ------------------------------------------------------------------------------


def write_project(base: Path, count: int, sets: list[str]) -> tuple[Path, Path, Path]:
    """The definitions, configurations and DAGs folders of one run: ``count`` DAGs of each of ``sets``."""
    definitions, configurations, dags = base / "job_definitions", base / "configurations", base / "dags"
    for folder in (
        definitions,
        configurations / "incoming",
        configurations / "outgoing",
        configurations / "routes",
        dags,
    ):
        folder.mkdir(parents=True)
    (configurations / "incoming" / "bench.yaml").write_text("name: Bench\nentity_key: id\n")  # webhooks only
    (configurations / "outgoing" / "bench.yaml").write_text(
        "name: Bench\npublisher:\n  type: file\n  destination_folder: outbox/bench\n"  # identifier: bench
    )
    for number in range(count if OURS in sets else 0):
        route = f"bench-{number:03d}"
        (configurations / "routes" / f"{route}.yaml").write_text(
            f"name: Bench {number:03d}\nincoming_configuration: bench\noutgoing_configuration: bench\n"
        )
        (definitions / f"bench-job-{number:03d}.yaml").write_text(
            f"name: Bench job {number:03d}\njob: outgoing\nroute: {route}\nexpression: '* * * * *'\ntimezone: UTC\n"
        )
    for dag_file in (ROOT / "dags").glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    if PLAIN in sets:
        (dags / "plain_dags.py").write_text(PLAIN_DAGS.format(count=count))
    env = {
        **os.environ,
        "AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER": str(definitions),
        "AIRFLOW__SCHEDULED_JOBS__CONFIGURATIONS_FOLDER": str(configurations),
    }
    checked = subprocess.run([str(BIN / "scheduled-jobs"), "validate"], env=env, capture_output=True, text=True)
    if checked.returncode != 0:
        raise RuntimeError(f"the bench's definitions are invalid:\n{checked.stdout}{checked.stderr}")
    return definitions, configurations, dags


# -- CPU from /proc -------------------------------------------------------------------------------------


def proc_times(pid: int) -> tuple[float, float]:
    """(own, own + reaped children) CPU seconds of a process: utime+stime, and cutime+cstime added."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (utime + stime + cutime + cstime) / CLOCK_TICKS


def tree_seconds(pid: int) -> float:
    """CPU seconds of a process tree: each live process's own time plus that of the children it reaped.

    Taken at two moments, the difference counts every process of the tree over the interval: one that
    ended in between moved its time into its parent's reaped-children time (LocalExecutor's workers
    reap the task processes they fork).
    """
    total = 0.0
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            total += proc_times(process.pid)[1]
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def scheduler_pid(root: int) -> int:
    """The ``airflow scheduler`` that ``airflow standalone`` started: the top one of its tree."""
    for process in psutil.Process(root).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "scheduler" in " ".join(process.cmdline()) and "scheduler" not in " ".join(process.parent().cmdline()):
                return int(process.pid)
    raise RuntimeError("no scheduler process under airflow standalone")


@dataclass
class CpuSample:
    at: float
    scheduler_own: float
    scheduler_tree: float
    standalone_tree: float
    machine_busy: int
    machine_total: int

    @classmethod
    def take(cls, standalone: int, scheduler: int) -> CpuSample:
        busy, total = machine_ticks()
        return cls(
            time.time(), proc_times(scheduler)[0], tree_seconds(scheduler), tree_seconds(standalone), busy, total
        )


def cpu_figures(start: CpuSample, end: CpuSample) -> dict[str, float]:
    minutes = (end.at - start.at) / 60
    return {
        "seconds": round(end.at - start.at, 1),
        "scheduler_s_per_min": round((end.scheduler_own - start.scheduler_own) / minutes, 2),
        "scheduler_tree_s_per_min": round((end.scheduler_tree - start.scheduler_tree) / minutes, 2),
        "standalone_s_per_min": round((end.standalone_tree - start.standalone_tree) / minutes, 2),
        "machine_busy_pct": round(
            100 * (end.machine_busy - start.machine_busy) / max(1, end.machine_total - start.machine_total), 1
        ),
    }


# -- what Airflow's database says -----------------------------------------------------------------------


def moment(value: Any) -> dt.datetime | None:
    """A timestamp from Airflow's database as an aware UTC datetime (SQLite gives text, PostgreSQL datetimes)."""
    if value is None:
        return None
    found = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return found.replace(tzinfo=dt.UTC) if found.tzinfo is None else found.astimezone(dt.UTC)


def registered(engine: sa.Engine, count: int) -> bool:
    """Airflow knows ``count`` DAGs of the bench, unpaused."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM dag WHERE NOT is_paused AND NOT is_stale "
                "AND (dag_id LIKE 'bench-job-%' OR dag_id LIKE 'plain-%')"
            )
        ).scalar()
    return found == count


def read_runs(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every scheduled run of both sets with its work task's start, end and state."""
    query = sa.text(
        "SELECT r.dag_id, r.run_id, r.run_after, r.logical_date, r.data_interval_end, r.start_date, r.end_date, "
        "r.state, t.start_date AS work_start, t.end_date AS work_end, t.state AS work_state "
        "FROM dag_run r LEFT JOIN task_instance t ON t.dag_id = r.dag_id AND t.run_id = r.run_id "
        "AND t.task_id IN ('export_route', 'work') "
        "WHERE r.run_type = 'scheduled' AND (r.dag_id LIKE 'bench-job-%' OR r.dag_id LIKE 'plain-%')"
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    runs = []
    for row in rows:
        run = dict(row)
        for key in (
            "run_after",
            "logical_date",
            "data_interval_end",
            "start_date",
            "end_date",
            "work_start",
            "work_end",
        ):
            run[key] = moment(run[key])
        run["set"] = OURS if run["dag_id"].startswith(DAG_PREFIX[OURS]) else PLAIN
        run["state"], run["work_state"] = str(run["state"]), str(run["work_state"])
        runs.append(run)
    return runs


def percentile(values: list[float], share: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class SetFigures:
    expected: int
    runs: int = 0
    missing: int = 0
    work_not_success: int = 0
    late_p50: float | None = None
    late_p95: float | None = None
    late_max: float | None = None
    duration_p50: float | None = None
    duration_p95: float | None = None
    keeps_up: bool = False
    lateness: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)


def measure(
    runs: list[dict[str, Any]], count: int, sets: list[str], ticks: list[dt.datetime], end: dt.datetime
) -> dict[str, SetFigures]:
    wanted = set(ticks)
    figures = {}
    for name in sets:
        found = {(r["dag_id"], r["run_after"]): r for r in runs if r["set"] == name and r["run_after"] in wanted}
        result = SetFigures(expected=count * len(ticks), runs=len(found))
        for number in range(count):
            for tick in ticks:
                run = found.get((f"{DAG_PREFIX[name]}{number:03d}", tick))
                if run is None or run["work_start"] is None or run["work_start"] > end:
                    result.missing += 1
                    continue
                result.lateness.append((run["work_start"] - tick).total_seconds())
                if run["work_state"] not in ("success", "TaskInstanceState.SUCCESS"):
                    result.work_not_success += 1
                if run["start_date"] is not None and run["end_date"] is not None:
                    result.durations.append((run["end_date"] - run["start_date"]).total_seconds())
        result.late_p50, result.late_p95 = percentile(result.lateness, 0.5), percentile(result.lateness, 0.95)
        result.late_max = max(result.lateness, default=None)
        result.duration_p50, result.duration_p95 = percentile(result.durations, 0.5), percentile(result.durations, 0.95)
        result.keeps_up = result.missing == 0 and (result.late_max or 0.0) <= KEEP_UP_SECONDS
        figures[name] = result
    return figures


def tick_columns(runs: list[dict[str, Any]]) -> dict[str, int]:
    """How many runs have logical_date and data_interval_end equal to run_after (the tick)."""
    return {
        "runs": len(runs),
        "logical_date == run_after": sum(r["logical_date"] == r["run_after"] for r in runs),
        "data_interval_end == run_after": sum(r["data_interval_end"] == r["run_after"] for r in runs),
        "run_after on a whole minute": sum(
            r["run_after"] is not None and r["run_after"].second == r["run_after"].microsecond == 0 for r in runs
        ),
    }


# -- one run --------------------------------------------------------------------------------------------


def next_minute(at: dt.datetime) -> dt.datetime:
    return at.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def sleep_until(at: dt.datetime) -> None:
    while (left := (at - dt.datetime.now(dt.UTC)).total_seconds()) > 0:
        time.sleep(min(left, 5))


def airflow_setting(env: dict[str, str], section: str, key: str) -> str:
    answer = subprocess.run(
        [str(BIN / "airflow"), "config", "get-value", section, key],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return answer.stdout.strip() or f"? ({answer.stderr.strip()[-200:]})"


def one_run(
    count: int, design: str, sets: list[str], minutes: int, metadata: str, extra: dict[str, str]
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"sj-bench-late-{count}-{design}-")))
        definitions, configurations, dags = write_project(tmp, count, sets)
        dag_count = count * len(sets)
        env = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PARALLELISM": PARALLELISM,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "AIRFLOW__SCHEDULED_JOBS__GUARD_DESIGN": design,
        }
        metadata_url = None
        if metadata == "postgres":
            meta = stack.enter_context(fresh_database(POSTGRES_URL, "sj_bench_lateness"))
            store = stack.enter_context(fresh_database(POSTGRES_URL, "sj_bench_lateness_store"))
            metadata_url = meta.render_as_string(hide_password=False)
            env["AIRFLOW_CONN_SCHEDULED_JOBS_STORE"] = json.dumps(
                {
                    "conn_type": "postgres",
                    "host": store.host,
                    "port": store.port,
                    "login": store.username,
                    "password": store.password or "",
                    "schema": store.database,
                }
            )
        airflow = Standalone(
            tmp / "home",
            definitions=definitions,
            configurations=configurations,
            metadata_url=metadata_url,
            env={**env, **extra},
        )
        print(f"\n== N={count}, design {design}: airflow standalone on port {airflow.port} ({metadata} metadata)")
        started = time.monotonic()
        airflow.start()
        stack.callback(airflow.stop)
        engine = airflow.metadata()
        stack.callback(engine.dispose)
        airflow.wait_for(lambda: registered(engine, dag_count), 600, f"the {dag_count} DAGs to be registered", every=2)
        ready = dt.datetime.now(dt.UTC)
        first = next_minute(ready) + dt.timedelta(minutes=1)  # the next full minute is the warm-up
        ticks = [first + dt.timedelta(minutes=m) for m in range(minutes)]
        end = first + dt.timedelta(minutes=minutes)
        print(
            f"   registered {dag_count} DAGs after {time.monotonic() - started:.0f} s; "
            f"window {first:%H:%M} to {end:%H:%M} UTC ({minutes} tick{'s' if minutes > 1 else ''} per DAG)"
        )
        sleep_until(first)
        root = airflow.process.pid if airflow.process is not None else 0
        scheduler = scheduler_pid(root)
        scheduler_cmdline = " ".join(psutil.Process(scheduler).cmdline())
        cpu_start = CpuSample.take(root, scheduler)
        sleep_until(end)
        cpu_end = CpuSample.take(root, scheduler)
        sleep_until(end + dt.timedelta(seconds=DURATION_GRACE))
        runs = read_runs(engine)
        forced = psutil.Process(scheduler).environ().get("AIRFLOW__CORE__EXECUTOR")  # standalone may force one
        executor = forced or airflow_setting(airflow.env, "core", "executor")
        parallelism = airflow_setting(airflow.env, "core", "parallelism")
        in_window = [r for r in runs if r["run_after"] in set(ticks)]
        figures = measure(runs, count, sets, ticks, end)
    return {
        "jobs": count,
        "design": design,
        "sets_run": sets,
        "metadata": metadata,
        "executor": executor,
        "parallelism": parallelism,
        "window": [first.isoformat(), end.isoformat()],
        "ticks": [t.isoformat() for t in ticks],
        "cpu": cpu_figures(cpu_start, cpu_end),
        "scheduler_cmdline": scheduler_cmdline,
        "tick_columns": tick_columns(in_window),
        "sets": {name: asdict(result) for name, result in figures.items()},
        "runs": [
            {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
            for r in sorted(in_window, key=lambda r: (r["dag_id"], r["run_after"]))
        ],
        "wall_seconds": round(time.monotonic() - started, 1),
    }


# -- the report -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    return {
        "cores": os.cpu_count(),
        "model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "airflow": importlib.metadata.version("apache-airflow"),
    }


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(count: int, results: list[dict[str, Any]]) -> None:
    print(f"\nN = {count}: " + " and ".join(SET_NAMES[name].format(count=count) for name in results[0]["sets"]))
    header = (
        f"{'design':9} {'set':6} {'runs':>5} {'missing':>7} {'late p50':>8} {'late p95':>8} {'late max':>8} "
        f"{'dur p50':>7} {'dur p95':>7}  verdict"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for name, s in result["sets"].items():
            verdict = "keeps up" if s["keeps_up"] else "falls behind"
            if s["work_not_success"]:
                verdict += f" ({s['work_not_success']} work tasks not success)"
            print(
                f"{result['design']:9} {name:6} {s['runs']:>5} {s['missing']:>7} {seconds(s['late_p50']):>8} "
                f"{seconds(s['late_p95']):>8} {seconds(s['late_max']):>8} {seconds(s['duration_p50']):>7} "
                f"{seconds(s['duration_p95']):>7}  {verdict}"
            )
    for result in results:
        ours, plain = (result["sets"].get(name, {}).get("late_p95") for name in (OURS, PLAIN))
        ratio = f"{ours / plain:.2f}x" if ours is not None and plain else "-"
        cpu = result["cpu"]
        print(
            f"{result['design']}: ours p95 / plain p95 = {ratio}; CPU s/min: scheduler {cpu['scheduler_s_per_min']}, "
            f"scheduler + workers + tasks {cpu['scheduler_tree_s_per_min']}, all of standalone "
            f"{cpu['standalone_s_per_min']}; machine busy {cpu['machine_busy_pct']} % "
            f"(one standalone for {' and '.join(result['sets'])}; {result['wall_seconds']:.0f} s wall)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="25,50,100", help="comma-separated N values (default 25,50,100)")
    parser.add_argument("--minutes", type=int, default=5, help="cron ticks measured per DAG (default 5)")
    parser.add_argument("--design", default="teardown,inline", help="guard designs to run: teardown, inline or both")
    parser.add_argument(
        "--sets", default="ours,plain", help="ours, plain or both in one standalone (default both, as issue 15 asks)"
    )
    parser.add_argument("--metadata", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for airflow standalone")
    args = parser.parse_args()
    counts = [int(n) for n in args.jobs.split(",") if n.strip()]
    designs = [d.strip() for d in args.design.split(",") if d.strip()]
    if not set(designs) <= {"teardown", "inline"}:
        parser.error("--design: teardown, inline or both")
    sets = [name for name in (OURS, PLAIN) if name in {s.strip() for s in args.sets.split(",")}]
    if not sets:
        parser.error("--sets: ours, plain or both")
    if OURS not in sets:
        designs = designs[:1]  # the design changes only our DAGs
    extra = dict(item.split("=", 1) for item in args.env)
    about = machine()
    print(
        f"machine: {about['cores']} cores, {about['model']}, {about['memory_gib']} GiB; Python {about['python']}, "
        f"Airflow {about['airflow']}; parallelism {extra.get('AIRFLOW__CORE__PARALLELISM', PARALLELISM)}; metadata {args.metadata}; settings {extra or 'defaults'}"
    )
    everything: dict[str, Any] = {"machine": about, "minutes": args.minutes, "env": extra, "results": []}
    for index, count in enumerate(counts):
        order = designs if index % 2 == 0 else designs[::-1]  # alternate which design goes first
        results = [one_run(count, design, sets, args.minutes, args.metadata, extra) for design in order]
        everything["results"] += results
        print(f"   executor {results[0]['executor']}, parallelism {results[0]['parallelism']}")
        report(count, sorted(results, key=lambda r: designs.index(r["design"])))
        if args.json:
            args.json.write_text(json.dumps(everything, indent=1, default=str))
    if args.json:
        print(f"\nraw figures: {args.json}")


if __name__ == "__main__":
    main()
