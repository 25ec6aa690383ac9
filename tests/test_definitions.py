"""Job definition validation: each mistake is one exact ``path: key: reason`` line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.identifiers import identifier_from_name

if TYPE_CHECKING:
    from pathlib import Path

VALID = """\
name: Orders to ERP nightly export
job: outgoing
route: orders-to-erp
tasks_to_export: 100
expression: "*/5 * * * *"
timezone: Europe/Amsterdam
priority: 10
"""


def problems_for(project: Path, text: str, name: str = "job.yaml") -> list[str]:
    path = project / "job_definitions" / name
    path.write_text(text, encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    return [str(p) for p in catalog.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            VALID.replace("expression:", "expresion:"),
            ["expresion: unknown key; did you mean 'expression'?", "expression: is required"],
        ),
        (VALID.replace("priority: 10", "priority: high"), ["priority: must be a whole number, got 'high'"]),
        (VALID.replace("priority: 10", "priority: 1.5"), ["priority: must be a whole number, got 1.5"]),
        (VALID + "disabled: maybe\n", ["disabled: must be true or false, got 'maybe'"]),
        (
            VALID.replace("job: outgoing", "job: outgoing_configuration"),
            [
                "job: must be one of 'incoming', 'outgoing', 'repair_stuck_tasks' or 'prune_tasks', "
                "got 'outgoing_configuration'"
            ],
        ),
        (
            VALID.replace("tasks_to_export: 100", "tasks_to_export: 0"),
            ["tasks_to_export: must be greater than 0, got 0"],
        ),
        (
            VALID.replace("tasks_to_export: 100", "tasks_to_export: -5"),
            ["tasks_to_export: must be greater than 0, got -5"],
        ),
        (
            VALID + "incoming_configuration: shop-orders\n",
            ["incoming_configuration: only allowed with job: incoming (this job is outgoing)"],
        ),
        (
            VALID + "max_attempts: 3\n",
            ["max_attempts: only allowed with job: repair_stuck_tasks (this job is outgoing)"],
        ),
        (
            # A key of another kind is checked as that kind would check it, too.
            VALID + "stuck_after_minutes: abc\n",
            [
                "stuck_after_minutes: only allowed with job: repair_stuck_tasks (this job is outgoing)",
                "stuck_after_minutes: must be a whole number, got 'abc'",
            ],
        ),
        (
            "name: R\njob: repair_stuck_tasks\nexpression: '@daily'\noverlap: skip\n",
            ["overlap: only allowed with job: incoming or outgoing (this job is repair_stuck_tasks)"],
        ),
        (VALID + "overlap: never\n", ["overlap: must be one of 'buffer_one', 'skip' or 'allow', got 'never'"]),
        (VALID.replace("route: orders-to-erp\n", ""), ["route: is required with job: outgoing"]),
        (
            VALID.replace("route: orders-to-erp", "route: orders-to-crm"),
            ["route: no route has identifier 'orders-to-crm' (known: orders-to-erp, products-to-webshop)"],
        ),
        (
            "name: In\njob: incoming\nincoming_configuration: shop-order\nexpression: '@daily'\n",
            [
                "incoming_configuration: no incoming configuration has identifier 'shop-order' "
                "(known: product-catalog, shop-orders)"
            ],
        ),
        (VALID.replace("*/5 * * * *", "61 * * * *"), ["expression: minute: 61 is out of range 0-59"]),
        (VALID.replace("*/5 * * * *", "0 24 * * *"), ["expression: hour: 24 is out of range 0-23"]),
        (VALID.replace("*/5 * * * *", "0 0 0 * *"), ["expression: day of month: 0 is out of range 1-31"]),
        (VALID.replace("*/5 * * * *", "0 0 * 13 *"), ["expression: month: 13 is out of range 1-12"]),
        (VALID.replace("*/5 * * * *", "0 0 * * 8"), ["expression: day of week: 8 is out of range 0-7"]),
        (
            VALID.replace("*/5 * * * *", "0 0 * * funday"),
            ["expression: day of week: 'funday' is not a number 0-7 or a name SUN-SAT"],
        ),
        (
            VALID.replace("*/5 * * * *", "*/5 * * *"),
            [
                "expression: '*/5 * * *' has 4 fields; a cron expression has 5 "
                "(minute, hour, day of month, month, day of week)"
            ],
        ),
        (
            VALID.replace("*/5 * * * *", "@fortnightly"),
            [
                "expression: unknown preset '@fortnightly'; use one of @hourly, @daily, @weekly, @monthly, @quarterly, @yearly"
            ],
        ),
        (
            VALID.replace("Europe/Amsterdam", "Europe/Amsterdm"),
            [
                "timezone: 'Europe/Amsterdm' is not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC'); "
                "did you mean 'Europe/Amsterdam' or 'Europe/Athens' or 'Europe/Astrakhan'?"
            ],
        ),
        (
            VALID.replace("Europe/Amsterdam", "CEST"),
            [
                "timezone: 'CEST' is not an IANA time zone name (e.g. 'Europe/Amsterdam', 'UTC'); did you mean 'EST' or 'CET'?"
            ],
        ),
        (
            VALID.replace('"*/5 * * * *"', "*/5 * * * *"),
            [
                "(file): is not valid YAML at line 5, column 14: did not find expected alphabetic or numeric character "
                "(quote values that start with '*', e.g. expression: \"*/5 * * * *\")"
            ],
        ),
        ("- name: a list\n", ["(file): must be a mapping of keys to values, found a list"]),
        ("", ["(file): must be a mapping of keys to values, found an empty file"]),
        (
            VALID.replace("Orders to ERP nightly export", "'!!!'"),
            ["name: cannot generate an identifier from '!!!'; set identifier: explicitly"],
        ),
        (
            VALID + "identifier: Orders_To_ERP\n",
            ["identifier: String should match pattern '^[a-z0-9]+(?:-[a-z0-9]+)*$'"],
        ),
    ],
)
def test_each_mistake_names_file_key_and_reason(project: Path, text: str, expected: list[str]) -> None:
    path = project / "job_definitions" / "job.yaml"
    assert problems_for(project, text) == [f"{path}: {line}" for line in expected]


def test_a_valid_definition_has_no_problem(project: Path) -> None:
    assert problems_for(project, VALID) == []


def test_identifier_is_generated_from_name_with_accents_folded() -> None:
    assert identifier_from_name("Orders to ERP export") == "orders-to-erp-export"
    assert identifier_from_name("  Commandes créées → Façade  ") == "commandes-creees-facade"
    assert identifier_from_name("Bestellungen (Größe) #2") == "bestellungen-grosse-2"
    assert identifier_from_name("注文") == ""


def test_two_files_with_one_identifier_name_each_other(project: Path) -> None:
    folder = project / "job_definitions"
    (folder / "a.yaml").write_text(VALID, encoding="utf-8")
    (folder / "b.yaml").write_text(VALID.replace("priority: 10", "priority: 3"), encoding="utf-8")
    catalog = load_catalog(folder, project / "configurations")
    assert [str(p) for p in catalog.problems] == [
        f"{folder / 'a.yaml'}: identifier: scheduled job 'orders-to-erp-nightly-export' is also defined in {folder / 'b.yaml'}",
        f"{folder / 'b.yaml'}: identifier: scheduled job 'orders-to-erp-nightly-export' is also defined in {folder / 'a.yaml'}",
    ]
    assert "orders-to-erp-nightly-export" not in catalog.jobs


def test_one_bad_file_leaves_the_others_valid(project: Path) -> None:
    folder = project / "job_definitions"
    (folder / "broken.yaml").write_text("name: Broken\njob: nope\nexpression: '* * * * *'\n", encoding="utf-8")
    catalog = load_catalog(folder, project / "configurations")
    assert sorted(catalog.jobs) == [
        "orders-to-erp-export",
        "product-catalog-incoming",
        "prune-tasks",
        "repair-stuck-tasks",
        "shop-orders-incoming",
    ]
    assert [p.path for p in catalog.problems] == [str(folder / "broken.yaml")]


def test_timezone_defaults_to_airflow_default_timezone(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Asia/Tokyo")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert catalog.jobs["repair-stuck-tasks"].timezone == "Asia/Tokyo"
    assert catalog.jobs["shop-orders-incoming"].timezone == "Europe/Amsterdam"


def test_a_reference_to_an_invalid_configuration_says_so(project: Path) -> None:
    route = project / "configurations" / "routes" / "orders-to-erp.yaml"
    route.write_text(route.read_text() + "colour: blue\n", encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert [str(p) for p in catalog.problems] == [
        f"{route}: colour: unknown key; valid keys: concurrency, description, identifier, incoming_configuration, name, "
        "outgoing_configuration, priority, realtime, retry_failed_tasks",
        f"{project / 'job_definitions' / 'orders-to-erp-export.yaml'}: route: route 'orders-to-erp' in {route} is "
        "invalid (see its own error)",
    ]


def test_configuration_mistakes_name_the_nested_key(project: Path) -> None:
    incoming = project / "configurations" / "incoming" / "shop-orders.yaml"
    incoming.write_text(
        "name: Shop orders\nentity_key: id\nsubscriber:\n  type: file\n  base_folder: inbox\n  patern: '*.json'\n",
        encoding="utf-8",
    )
    outgoing = project / "configurations" / "outgoing" / "erp-orders-file.yaml"
    outgoing.write_text("name: ERP\npublisher:\n  type: ftp\n  host: x\n", encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    lines = [str(p) for p in catalog.problems]
    assert f"{incoming}: subscriber.patern: unknown key; did you mean 'pattern'?" in lines
    assert f"{outgoing}: publisher.type: type must be one of 'file', 'http', 'sql', got 'ftp'" in lines


def test_an_inline_credential_is_rejected_with_a_pointer_to_connections(project: Path) -> None:
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(
        "name: ERP API\npublisher:\n  type: http\n  connection: erp\n  password: hunter2\n"
        "  headers:\n    Authorization: Bearer abc\n    Accept: application/json\n",
        encoding="utf-8",
    )
    job = project / "job_definitions" / "token.yaml"
    job.write_text("name: T\njob: repair_stuck_tasks\nexpression: '@daily'\napi_token: abc\n", encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    hint = (
        "looks like a credential written inline; keep it in an Airflow connection (airflow connections add ...) "
        "and name that connection with connection:"
    )
    assert [str(p) for p in catalog.problems] == [
        f"{outgoing}: publisher.headers.Authorization: {hint}",
        f"{outgoing}: publisher.password: {hint}",
        f"{job}: api_token: {hint}",
    ]


def test_a_publisher_that_could_outlast_the_stuck_threshold_is_rejected(project: Path) -> None:
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(
        "name: ERP API\npublisher:\n  type: http\n  connection: erp\n  timeout_seconds: 60\n"
        "  retry: {attempts: 5, max_retry_after_seconds: 30}\n",
        encoding="utf-8",
    )
    repair = project / "job_definitions" / "repair-stuck-tasks.yaml"
    repair.write_text(repair.read_text().replace("stuck_after_minutes: 30", "stuck_after_minutes: 5"), encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert [str(p) for p in catalog.problems] == [
        f"{outgoing}: publisher.timeout_seconds: one request can take up to 450 s (timeout_seconds 60 x retry.attempts 5, "
        "plus waits), longer than the stuck-task threshold of 5 minutes of repair job 'repair-stuck-tasks'; "
        "lower timeout_seconds or retry.attempts, or raise stuck_after_minutes"
    ]
    repair.write_text(repair.read_text().replace("stuck_after_minutes: 5", "stuck_after_minutes: 10"), encoding="utf-8")
    assert load_catalog(project / "job_definitions", project / "configurations").problems == []


def test_a_publisher_that_could_outlast_the_default_stuck_threshold_is_rejected_without_a_repair_job(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no repair job the default ``[scheduled_jobs] stuck_after_minutes`` is the threshold: a repair
    job added later without the key uses it, and the Processes page counts stuck tasks by it."""
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(
        "name: ERP API\npublisher:\n  type: http\n  connection: erp\n  timeout_seconds: 120\n"
        "  retry: {attempts: 3, max_retry_after_seconds: 10}\n",
        encoding="utf-8",
    )
    (project / "job_definitions" / "repair-stuck-tasks.yaml").unlink()
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__STUCK_AFTER_MINUTES", "6")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    assert [str(p) for p in catalog.problems] == [
        f"{outgoing}: publisher.timeout_seconds: one request can take up to 410 s (timeout_seconds 120 x "
        "retry.attempts 3, plus waits), longer than the stuck-task threshold of 6 minutes of the "
        "[scheduled_jobs] stuck_after_minutes setting; lower timeout_seconds or retry.attempts, or raise "
        "stuck_after_minutes"
    ]
    monkeypatch.setenv("AIRFLOW__SCHEDULED_JOBS__STUCK_AFTER_MINUTES", "8")
    assert load_catalog(project / "job_definitions", project / "configurations").problems == []


def test_connector_settings_are_checked(project: Path) -> None:
    incoming = project / "configurations" / "incoming" / "api.yaml"
    incoming.write_text(
        "name: API\nentity_key: id\nsubscriber:\n  type: http\n  connection: shop\n"
        "  pagination: {type: pages}\n  max_pages: 0\n",
        encoding="utf-8",
    )
    outgoing = project / "configurations" / "outgoing" / "erp-api.yaml"
    outgoing.write_text(
        "name: ERP API\npublisher:\n  type: http\n  connection: erp\n  endpoint: /orders/{id-1}\n", encoding="utf-8"
    )
    lines = [str(p) for p in load_catalog(project / "job_definitions", project / "configurations").problems]
    assert lines == [
        f"{incoming}: subscriber.max_pages: must be greater than 0, got 0",
        f"{incoming}: subscriber.pagination.type: type must be one of 'page', 'offset', 'cursor', 'next_link', got 'pages'",
        f"{outgoing}: publisher.endpoint: {{id-1}} in '/orders/{{id-1}}' is not a field name (e.g. {{id}} or {{customer.id}})",
    ]


def test_a_scheduled_job_on_a_webhook_only_incoming_configuration_is_an_error(project: Path) -> None:
    incoming = project / "configurations" / "incoming" / "shop-orders.yaml"
    incoming.write_text("name: Shop orders\nentity_key: id\nwebhook:\n  connection: shop_webhook\n", encoding="utf-8")
    catalog = load_catalog(project / "job_definitions", project / "configurations")
    job = project / "job_definitions" / "shop-orders-incoming.yaml"
    assert [str(p) for p in catalog.problems] == [
        f"{job}: incoming_configuration: incoming configuration 'shop-orders' ({incoming}) has no subscriber: "
        "its records only arrive by webhook, so a scheduled job has nothing to read; add a subscriber to it "
        "or remove this job"
    ]
    assert "orders-to-erp-export" in catalog.jobs, "the route over it is still valid"
