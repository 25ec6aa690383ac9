"""The project that the tests and benchmarks running ``airflow standalone`` write: one route, orders to ERP.

``orders`` (incoming, key ``id``) → ``erp`` (outgoing, HTTP to the Airflow connection ``sink``, endpoint
``/orders/{id}``), joined by the route ``orders-to-erp``. Each caller adds the YAML lines that make its
case (a file subscriber, a timeout, a real-time route) and its job definitions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

ROUTE = "orders-to-erp"
FILE_SUBSCRIBER = "subscriber: {type: file, base_folder: inbox}\n"


def write_project(
    base: Path,
    *,
    incoming: str = "",
    publisher: str = "",
    route: str = "",
    jobs: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """``base/job_definitions`` and ``base/configurations``; returns both folders.

    ``incoming`` and ``route`` are YAML lines added to their files, ``publisher`` lines indented under
    ``publisher:``; ``jobs`` maps a definition's file name (without ``.yaml``) to its text.
    """
    definitions, configurations = base / "job_definitions", base / "configurations"
    for kind in ("incoming", "outgoing", "routes"):
        (configurations / kind).mkdir(parents=True)
    (configurations / "incoming" / "orders.yaml").write_text("name: Orders\nentity_key: id\n" + incoming)
    (configurations / "outgoing" / "erp.yaml").write_text(
        "name: ERP\npublisher:\n  type: http\n  connection: sink\n  endpoint: /orders/{id}\n" + publisher
    )
    (configurations / "routes" / f"{ROUTE}.yaml").write_text(
        "name: Orders to ERP\nincoming_configuration: orders\noutgoing_configuration: erp\n" + route
    )
    definitions.mkdir()
    for job, text in (jobs or {}).items():
        (definitions / f"{job}.yaml").write_text(text)
    return definitions, configurations


def yearly_exports(jobs: Iterable[str], tasks_to_export: int) -> dict[str, str]:
    """Outgoing jobs of the route that run when triggered: their cron fires once a year."""
    return {
        job: f"name: {job}\njob: outgoing\nroute: {ROUTE}\ntasks_to_export: {tasks_to_export}\nexpression: '0 0 1 1 *'\n"
        for job in jobs
    }
