"""The process ledger: at most one run executing and one waiting per configuration, decided by the database."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from conftest import ROOT

from scheduled_jobs.store.engine import create_store_engine
from scheduled_jobs.store.processes import Holder, ProcessLedger, Slot, keep_renewed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

HOUR = dt.timedelta(hours=1)
CONFIG = "route:orders-to-erp"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url: str = request.getfixturevalue("postgres_server_url")
    engine = create_store_engine(url)

    def clear() -> None:  # the session's database is shared: no hold may outlive its test
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM scheduled_jobs_process"))
            conn.execute(sa.text("DELETE FROM scheduled_jobs_skipped_run"))

    clear()
    yield url
    clear()
    engine.dispose()


@pytest.fixture
def ledger(store_url: str) -> ProcessLedger:
    return ProcessLedger(create_store_engine(store_url))


def run(dag_id: str, n: int = 1) -> Holder:
    return Holder(dag_id, f"scheduled__2026-11-24T12:0{n}:00")


def test_one_runs_one_waits_the_next_is_a_duplicate(ledger: ProcessLedger) -> None:
    assert ledger.enter(CONFIG, run("export-a"), HOUR).action == "run"
    waiting = ledger.enter(CONFIG, run("export-b"), HOUR)
    assert (waiting.action, waiting.holder) == ("wait", run("export-a"))
    third = ledger.enter(CONFIG, run("manual", 3), HOUR)
    assert (third.action, third.holder) == ("skip", run("export-b"))
    assert third.reason == (
        "route:orders-to-erp already has a run waiting (export-b / scheduled__2026-11-24T12:01:00); "
        "this run is a duplicate of it"
    )
    (skipped,) = ledger.skipped(CONFIG)
    assert (skipped["dag_id"], skipped["duplicate_of_dag_id"]) == ("manual", "export-b")


def test_the_waiting_run_takes_over_when_the_running_one_leaves(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("a"), HOUR)
    ledger.enter(CONFIG, run("b"), HOUR)
    assert ledger.promote(CONFIG, run("b"), HOUR) is False  # "a" still runs
    assert ledger.leave(run("a")) == 1
    # A newcomer cannot overtake the waiting run: the slot was handed over when "a" left.
    assert ledger.enter(CONFIG, run("c"), HOUR).action == "wait"
    assert ledger.promote(CONFIG, run("b"), HOUR) is True
    assert ledger.enter(CONFIG, run("d"), HOUR).action == "skip"


def test_overlap_skip_never_waits(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("a"), HOUR)
    decision = ledger.enter(CONFIG, run("b"), HOUR, wait_allowed=False)
    assert (decision.action, decision.holder) == ("skip", run("a"))
    assert decision.reason.endswith("overlap: skip drops this run")


def test_a_retried_guard_gets_the_same_answer(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("a"), HOUR)
    ledger.enter(CONFIG, run("b"), HOUR)
    assert ledger.enter(CONFIG, run("a"), HOUR).action == "run"
    assert ledger.enter(CONFIG, run("b"), HOUR).action == "wait"


def test_a_vanished_run_stops_blocking(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("killed"), dt.timedelta(seconds=-1))  # its lease has run out
    assert ledger.enter(CONFIG, run("next"), HOUR).action == "run"
    ledger.enter(CONFIG, run("failed-in-ui", 2), HOUR)  # waits behind "next"
    # Airflow says "next" is over (marked failed, cleared, or its worker died and it was failed):
    # the run waiting behind it moves up, and a newcomer waits behind that one.
    decision = ledger.enter(CONFIG, run("later", 3), HOUR, is_alive=lambda dag_id, run_id: dag_id != "next")
    assert (decision.action, decision.holder) == ("wait", run("failed-in-ui", 2))
    assert ledger.promote(CONFIG, run("failed-in-ui", 2), HOUR) is True


def running(dag_id: str, run_id: str) -> bool | None:
    return True


def unknown(dag_id: str, run_id: str) -> bool | None:
    return None


def test_a_run_airflow_says_is_running_keeps_its_hold_after_its_lease(ledger: ProcessLedger) -> None:
    # The seed's "at least 1 hour": the lease ran out long ago, but Airflow says the run still executes.
    ledger.enter(CONFIG, run("long"), -HOUR)
    assert ledger.clear_stale(CONFIG, running) == []
    decision = ledger.enter(CONFIG, run("next", 2), HOUR, is_alive=running)
    assert (decision.action, decision.holder) == ("wait", run("long"))
    assert ledger.promote(CONFIG, run("next", 2), HOUR, is_alive=running) is False
    assert ledger.enter(CONFIG, run("third", 3), HOUR, is_alive=running).action == "skip"
    ledger.enter(CONFIG, run("waited-long", 2), -HOUR)  # a waiting run outlived its lease too: still queued
    assert ledger.enter(CONFIG, run("fourth", 4), HOUR, is_alive=running).action == "skip"


def test_when_airflow_cannot_answer_the_lease_decides(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("live"), HOUR)
    ledger.enter(CONFIG, run("lost", 2), -HOUR)  # waits; its lease ran out and nothing renewed it
    assert ledger.clear_stale(CONFIG, unknown) == [run("lost", 2)]
    assert ledger.clear_stale(CONFIG, unknown) == []  # "live" is within its lease
    assert ledger.enter(CONFIG, run("next", 3), HOUR, is_alive=unknown).action == "wait"


def test_renewing_keeps_a_run_without_an_answer_from_airflow(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("long"), dt.timedelta(seconds=1))
    with keep_renewed(ledger, run("long"), dt.timedelta(seconds=1), every=0.2):
        time.sleep(2.5)  # more than twice its lease
        assert ledger.clear_stale(CONFIG, unknown) == []
        assert ledger.enter(CONFIG, run("next", 2), HOUR, is_alive=unknown).action == "wait"
    time.sleep(1.5)  # no one renews it any more: the lease ends the hold, the waiting run moves up
    assert ledger.clear_stale(CONFIG, unknown) == [run("long")]
    assert ledger.promote(CONFIG, run("next", 2), HOUR, is_alive=unknown) is True


def test_renewing_stops_when_the_run_holds_nothing(ledger: ProcessLedger) -> None:
    with keep_renewed(ledger, run("unguarded"), HOUR, every=0.1) as keeper:
        time.sleep(0.5)
        assert keeper.renewals == 1  # one look, nothing held: no more queries


def test_configurations_do_not_block_each_other(ledger: ProcessLedger) -> None:
    assert ledger.enter("route:a", run("x"), HOUR).action == "run"
    assert ledger.enter("route:b", run("y"), HOUR).action == "run"
    assert ledger.enter("incoming:a", run("z"), HOUR).action == "run"


def test_n_runs_at_the_same_instant_one_runs_one_waits_the_rest_skip(store_url: str) -> None:
    create_store_engine(store_url).dispose()  # the schema exists before the racers start
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "tests")])}
    start = time.time() + 4  # every racer has imported and connected by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "helpers.racer", store_url, CONFIG, f"job-{i}", str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outcomes = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-2000:]
        outcomes.append(out.strip().splitlines()[-1])
    assert Counter(outcomes) == {"run": 1, "wait": 1, "skip": 6}


def paused(*dag_ids: str) -> Callable[[str, str], str | None]:
    """``may_go`` for a run of these DAGs: paused in Airflow, and nothing of it executes."""

    def may_go(dag_id: str, run_id: str) -> str | None:
        return f"the job {dag_id} is paused in Airflow" if dag_id in dag_ids else None

    return may_go


def test_a_paused_jobs_waiting_run_is_freed_and_the_next_run_waits_in_its_place(ledger: ProcessLedger) -> None:
    # Issue 22, item 11: dup-b paused while it waits. Airflow would never queue its task again.
    ledger.enter(CONFIG, run("dup-a"), HOUR)
    assert ledger.enter(CONFIG, run("dup-b", 2), HOUR).action == "wait"
    decision = ledger.enter(CONFIG, run("dup-c", 3), HOUR, is_alive=running, may_go=paused("dup-b"))
    assert (decision.action, decision.holder) == ("wait", run("dup-a"))  # not a duplicate of a paused run
    assert ledger.slot_of(CONFIG, run("dup-b", 2)) is None
    (freed,) = ledger.skipped(CONFIG)
    assert (freed["dag_id"], freed["run_id"]) == ("dup-b", run("dup-b", 2).run_id)
    assert "was freed: the job dup-b is paused in Airflow" in str(freed["reason"])
    assert ledger.freed_reason(CONFIG, run("dup-b", 2)) == freed["reason"]


def test_a_freed_waiting_run_cannot_take_the_slot_when_it_frees(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("dup-a"), HOUR)
    ledger.enter(CONFIG, run("dup-b", 2), HOUR)
    assert ledger.clear_stale(CONFIG, running, paused("dup-b")) == [run("dup-b", 2)]
    ledger.leave(run("dup-a"))
    # Its trigger still polls: the free slot is not its own any more.
    assert ledger.promote(CONFIG, run("dup-b", 2), HOUR, is_alive=running) is False
    assert ledger.slot_of(CONFIG, run("dup-b", 2)) is None
    assert ledger.enter(CONFIG, run("dup-c", 3), HOUR, is_alive=running).action == "run"


def test_a_paused_run_handed_the_slot_or_kept_for_a_retry_is_freed_and_the_waiting_one_moves_up(
    ledger: ProcessLedger,
) -> None:
    ledger.enter(CONFIG, run("dup-b"), HOUR)  # handed the running slot, or a failed try kept it for a retry
    ledger.enter(CONFIG, run("dup-a", 2), HOUR)  # waits behind it
    decision = ledger.enter(CONFIG, run("dup-c", 3), HOUR, is_alive=running, may_go=paused("dup-b"))
    assert (decision.action, decision.holder) == ("wait", run("dup-a", 2))
    assert ledger.slot_of(CONFIG, run("dup-a", 2)) is Slot.RUNNING
    assert ledger.promote(CONFIG, run("dup-a", 2), HOUR, is_alive=running) is True


def test_a_live_run_of_an_active_job_keeps_its_hold_whatever_may_go_is_asked(ledger: ProcessLedger) -> None:
    ledger.enter(CONFIG, run("dup-a"), -HOUR)
    assert ledger.clear_stale(CONFIG, running, paused("someone-else")) == []
    assert ledger.clear_stale(CONFIG, unknown, paused("dup-a")) == [run("dup-a")]  # no word: the lease decides
    assert ledger.skipped(CONFIG) == []  # a lease that ran out is no skip
