"""The catalog's cache and the job kinds' registry: one pipeline, cached by the files' stat."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pytest

from scheduled_jobs.catalog import current_catalog, current_configurations, load_catalog
from scheduled_jobs.models.jobs import KINDS, LABELS, IncomingJob, OutgoingJob, PruneJob, RepairJob
from scheduled_jobs.operators.base import ScheduledJobOperator

if TYPE_CHECKING:
    from pathlib import Path


def test_the_cached_catalog_is_parsed_again_only_when_a_file_changes(project: Path) -> None:
    first = current_catalog()
    assert current_catalog() is first
    assert current_configurations() is first.configurations
    job = project / "job_definitions" / "repair-stuck-tasks.yaml"
    job.write_text(job.read_text() + "priority: 7\n", encoding="utf-8")
    second = current_catalog()
    assert second is not first
    assert second.jobs["repair-stuck-tasks"].definition.priority == 7
    assert second.configurations is first.configurations, "no configuration changed"


def test_a_changed_configuration_reaches_the_webhooks_and_the_jobs(project: Path) -> None:
    first = current_catalog()
    (project / "configurations" / "incoming" / "shop-orders.yaml").unlink()
    configurations = current_configurations()
    assert "shop-orders" not in configurations.incoming.valid
    second = current_catalog()
    assert second.configurations is configurations
    assert "shop-orders-incoming" in first.jobs
    assert "shop-orders-incoming" not in second.jobs


def test_each_kind_has_its_tag_label_and_an_operator() -> None:
    assert [kind.tag() for kind in KINDS] == ["incoming", "outgoing", "repair_stuck_tasks", "prune_tasks"]
    assert LABELS == {
        "incoming": "Incoming configuration",
        "outgoing": "Outgoing (route export)",
        "repair_stuck_tasks": "Repair stuck tasks",
        "prune_tasks": "Prune old tasks",
    }
    jobs = [
        IncomingJob(name="I", job="incoming", expression="@daily", incoming_configuration="shop-orders"),
        OutgoingJob(name="O", job="outgoing", expression="@daily", route="orders-to-erp", tasks_to_export=5),
        RepairJob(name="R", job="repair_stuck_tasks", expression="@daily"),
        PruneJob(name="P", job="prune_tasks", expression="@daily", retention_days=30),
    ]
    for job in jobs:
        work = job.work()
        module, _, name = work.operator.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), ScheduledJobOperator)
    assert [job.guard() for job in jobs][2:] == [None, None]
    assert [job.target for job in jobs] == ["shop-orders", "orders-to-erp", None, None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "name: O\njob: outgoing\nexpression: '61 * * * *'\npriority: high\nmax_attempts: 3\n",
            [
                "expression: minute: 61 is out of range 0-59",
                "max_attempts: only allowed with job: repair_stuck_tasks (this job is outgoing)",
                "priority: must be a whole number, got 'high'",
                "route: is required with job: outgoing",
            ],
            id="every-mistake-of-a-known-kind-at-once",
        ),
        pytest.param(
            "name: X\nexpression: '61 * * * *'\nroute: ''\nrout: x\n",
            [
                "expression: minute: 61 is out of range 0-59",
                "job: is required",
                "rout: unknown key; did you mean 'route'?",
                "route: must not be empty",
            ],
            id="every-mistake-without-a-kind",
        ),
        pytest.param(
            "name: '!!!'\njob: repair_stuck_tasks\nexpression: '@daily'\nroute: r\n",
            [
                "name: cannot generate an identifier from '!!!'; set identifier: explicitly",
                "route: only allowed with job: outgoing (this job is repair_stuck_tasks)",
            ],
            id="a-check-and-the-identifier",
        ),
    ],
)
def test_all_problems_of_a_definition_come_at_once(project: Path, text: str, expected: list[str]) -> None:
    path = project / "job_definitions" / "job.yaml"
    path.write_text(text, encoding="utf-8")
    problems = load_catalog(project / "job_definitions", project / "configurations").problems
    assert [str(p) for p in problems] == [f"{path}: {line}" for line in expected]


def test_an_edit_that_keeps_size_and_mtime_is_seen(project: Path) -> None:
    """``cp -p``, ``tar x`` and ``rsync -t`` put the old mtime back; the ctime (and inode) still tell."""
    import os

    path = project / "configurations" / "outgoing" / "erp-orders-file.yaml"
    current_configurations()
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    name_line = next(line for line in text.splitlines() if line.startswith("name:"))
    path.write_text(text.replace(name_line, name_line.upper().replace("NAME:", "name:")), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    names = [loaded.model.name for loaded in current_configurations().outgoing.valid.values()]
    assert name_line.split(":", 1)[1].strip().upper() in names
