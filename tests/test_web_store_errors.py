"""A task store the pages cannot use answers 503 with what to do, never a bare 500: the window between an
upgrade of the package and `scheduled-jobs db upgrade` (docs/install.md), and a store that is away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers.databases import store_at_revision

if TYPE_CHECKING:
    import httpx

PAGES = ["/jobs", "/tasks", "/tasks/list", "/tasks/1", "/processes", "/api/jobs", "/api/tasks", "/entity?route=r&key=k"]


@pytest.mark.parametrize("page", PAGES)
def test_an_older_store_schema_answers_503_with_the_command_to_run(
    project: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    monkeypatch.delenv("AIRFLOW__SCHEDULED_JOBS__STORE_AUTO_MIGRATE", raising=False)
    url = f"sqlite:///{project / 'older.db'}"
    store_at_revision(url, "0004")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCHEDULED_JOBS_STORE", json.dumps({"conn_type": "sqlite", "host": str(project / "older.db")})
    )
    answer = client.get(page)
    assert answer.status_code == 503, (answer.status_code, answer.text[:300])
    assert "scheduled-jobs db upgrade" in answer.text
    assert str(project) not in answer.text  # no server path


def test_a_store_that_cannot_be_opened_answers_503(
    project: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project / "not-a-database"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_SCHEDULED_JOBS_STORE", json.dumps({"conn_type": "sqlite", "host": str(folder)}))
    answer = client.get("/tasks/list")
    assert answer.status_code == 503, (answer.status_code, answer.text[:300])
    assert "task store" in answer.text and str(project) not in answer.text
