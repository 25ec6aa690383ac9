"""The JSON API's response models: every column the store answers is in them, in the store's order, and the
JSON keeps the forms it has always had (isoformat times, no ``problem`` key when there is none).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from scheduled_jobs.cron import FireTime
from scheduled_jobs.cron_checker import check_cron
from scheduled_jobs.store import reports
from scheduled_jobs.store.schema import processes, skipped_runs, tasks
from scheduled_jobs.web import responses

WEB = Path(responses.__file__).parent


def test_the_task_models_hold_every_column_the_store_answers() -> None:
    # TaskDetail is TaskRow plus the payload: TaskRow's fields in its order, then the rest.
    detail = list(responses.TaskDetail.model_fields)
    assert detail[: len(responses.TaskRow.model_fields)] == list(responses.TaskRow.model_fields)
    assert sorted(detail) == sorted(c.name for c in tasks.columns if c.name != "claim_token")
    assert list(responses.TaskRow.model_fields) == [c.name for c in reports.ROW_COLUMNS]
    assert list(responses.SkippedRun.model_fields) == [c.name for c in skipped_runs.columns]
    assert list(responses.ProcessHolder.model_fields) == [*(c.name for c in processes.columns), "lease_expired"]


def test_aware_times_keep_isoformat_and_naive_ones_stay_naive() -> None:
    utc = dt.datetime(2026, 1, 1, 3, tzinfo=dt.UTC)
    run = responses.LastRun(run_id="r", state="success", at=utc)
    assert json.loads(run.model_dump_json())["at"] == "2026-01-01T03:00:00+00:00"
    check = check_cron("0 3 * * *", "UTC", 2)
    assert check.valid
    fires = json.loads(check.model_dump_json())["next_fire_times"]
    assert [f["at"][-6:] for f in fires] == ["+00:00", "+00:00"]
    amsterdam = FireTime(dt.datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Amsterdam")), "DST")
    row = check.model_copy(update={"next_fire_times": [amsterdam]})
    assert json.loads(row.model_dump_json())["next_fire_times"] == [{"at": "2026-03-29T03:30:00+02:00", "note": "DST"}]
    assert row.next_fire_times[0].at.tzname() == "CEST", "the pages format the zone's own name"


def test_the_cron_check_keys_in_their_order() -> None:
    body = json.loads(check_cron("61 * * * *", "UTC").model_dump_json())
    assert list(body) == ["expression", "timezone", "valid", "errors", "description", "next_fire_times"]
    assert (body["valid"], body["description"], body["next_fire_times"]) == (False, None, [])


def test_a_realtime_export_says_problem_only_when_there_is_one() -> None:
    handed = responses.RealtimeExport(route="r", dag_id="d", asset="a")
    assert json.loads(handed.model_dump_json()) == {"route": "r", "dag_id": "d", "asset": "a", "asset_event_id": None}
    handed.problem = "paused"
    assert json.loads(handed.model_dump_json())["problem"] == "paused"
