"""The guard: the seed's duplicate rule around the work of every job that executes a configuration.

At most one run executes a configuration and at most one waits for it; a further run is skipped as a
duplicate, its log naming the run it duplicated. Waiting happens in the triggerer (deferrable), not in
a worker slot. While the work executes, ``keep_hold`` renews the run's lease.

Two designs share the decision (``enter_guard``) and the release (``release_hold``), chosen by
``[scheduled_jobs] guard_design``: ``inline`` (the default) lets the work task decide itself and free its
hold in its own ``finally`` (``ScheduledJobOperator``), a crash being covered by the ledger's liveness
check; ``teardown`` puts a ``GuardSensor`` first and a ``ReleaseGuardOperator`` teardown last.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from scheduled_jobs import settings
from scheduled_jobs.airflow_runs import dag_inactive, run_executing, run_is_alive
from scheduled_jobs.catalog import load_catalog
from scheduled_jobs.compat import AirflowSkipException
from scheduled_jobs.realtime import DAG_ID_PREFIX
from scheduled_jobs.store import Holder, Slot, TaskStoreHook, keep_renewed
from scheduled_jobs.triggers.guard import GuardTrigger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow.sdk import Context
    from airflow.sdk.types import Logger

    from scheduled_jobs.models.jobs import Overlap

WEBHOOK = "webhook"


def _holder(context: Context) -> Holder:
    return Holder(context["dag"].dag_id, context["run_id"])


class GuardSensor(BaseSensorOperator):
    """Decides whether this run executes now, waits, or is a duplicate (skipped).

    Always deferrable: a waiting run waits in the triggerer (``GuardTrigger``), holding no worker slot,
    up to the sensor's ``timeout``. It never pokes: it is a sensor for that timeout only.
    """

    template_fields = ("configuration",)
    ui_color = "#fff4d6"

    def __init__(self, *, configuration: str, overlap: Overlap = "buffer_one", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.configuration = configuration
        self.overlap = overlap

    def execute(self, context: Context) -> str:
        decided = enter_guard(context, self.configuration, self.overlap, self.log)
        if isinstance(decided, GuardTrigger):
            self.defer(trigger=decided, method_name="resume", timeout=dt.timedelta(seconds=self.timeout))
        return decided

    def resume(self, context: Context, event: dict[str, Any] | None = None) -> str:
        after_wait(context, self.configuration, event, self.log)
        return "running"


def hold_may_go(dag_id: str, run_id: str) -> str | None:
    """Why the hold of a live run counts as free (``ProcessLedger``'s ``MayGo``); None while it keeps it.

    Only a run none of whose tasks is queued or running, of a job that is paused in Airflow (its toggle, or
    the UI's disable), disabled in its definition, or no longer defined (its file deleted, its identifier
    changed). Airflow queues no task of such a DAG, so a run that waits, was handed the running slot, or
    keeps its hold for a retry would hold its configuration with no end. Whenever Airflow or the catalog
    cannot tell (a definition file with a problem may be the job's), the hold stays.
    """
    if run_executing(dag_id, run_id) is not False:
        return None
    why = dag_inactive(dag_id)
    if why is None and not dag_id.startswith(DAG_ID_PREFIX):  # a route's real-time export is no job
        catalog = load_catalog()
        job = catalog.jobs.get(dag_id)
        if catalog.problems:
            why = None
        elif job is None:
            why = "is no longer defined (its file was deleted, or its identifier changed)"
        elif job.definition.disabled:
            why = "is disabled (disabled: true in its definition)"
    return None if why is None else f"the job {dag_id} {why}"


def enter_guard(context: Context, configuration: str, overlap: Overlap, log: Logger) -> str | GuardTrigger:
    """The duplicate rule's decision for this run, shared by both guard designs.

    A word (``running``, ``allowed``, ``webhook``) when the run executes now; the ``GuardTrigger`` to
    defer to when it must wait for the running one; ``AirflowSkipException`` for a duplicate.
    """
    conf = context["dag_run"].conf or {}
    if not settings.prevent_duplicates():
        log.info("Duplicate prevention is off ([scheduled_jobs] prevent_duplicates = False)")
        return "allowed"
    if overlap == "allow":
        log.info("overlap: allow: runs of %s may overlap", configuration)
        return "allowed"
    if conf.get("trigger") == WEBHOOK:
        log.info("Triggered by a webhook: never skipped as a duplicate")
        return "webhook"
    ledger = TaskStoreHook().get_ledger()
    me = _holder(context)
    lease = dt.timedelta(minutes=settings.guard_lease_minutes())
    decision = ledger.enter(
        configuration, me, lease, wait_allowed=overlap == "buffer_one", is_alive=run_is_alive, may_go=hold_may_go
    )
    if decision.action == "run":
        log.info("%s is free: this run executes it", configuration)
        return "running"
    if decision.action == "skip":
        log.warning("Skipped as a duplicate: %s", decision.reason)
        raise AirflowSkipException(f"Duplicate: {decision.reason}")
    log.info("%s is being executed by %s: this run waits for it (in the triggerer)", configuration, decision.holder)
    return GuardTrigger(
        configuration=configuration,
        dag_id=me.dag_id,
        run_id=me.run_id,
        store_conn_id=settings.store_conn_id(),  # never the URL: it may carry a password
        lease_seconds=lease.total_seconds(),
        poll_seconds=settings.guard_poll_seconds(),
    )


def after_wait(context: Context, configuration: str, event: dict[str, Any] | None, log: Logger) -> None:
    """Where a run that waited for ``configuration`` goes on: it executes it only while it holds the running
    slot. One whose hold was freed while it waited (its job paused or disabled; the trigger says ``freed``,
    or it was freed after the trigger fired, while Airflow kept its task from running) is skipped, with why."""
    if not settings.prevent_duplicates():  # switched off while it waited: nothing to hold
        return
    ledger = TaskStoreHook().get_ledger()
    me = _holder(context)
    status = (event or {}).get("status")
    if status == "freed" or ledger.slot_of(configuration, me) is not Slot.RUNNING:
        reason = ledger.freed_reason(configuration, me)
        ledger.leave(me)  # whatever it may still hold of it
        log.warning("Skipped: %s", reason)
        raise AirflowSkipException(f"Hold freed: {reason}")
    log.info("The run that held %s is done: this run executes it now", configuration)


def release_hold(context: Context, log: Logger) -> int:
    """Free whatever this run holds in the process ledger (a run waiting for it is handed the slot).

    A waiting run whose job was paused or disabled meanwhile is not handed it: its hold is freed first
    (``hold_may_go``), so the next run takes the free slot instead of waiting behind a run Airflow never
    queues."""
    if not settings.prevent_duplicates():
        return 0
    ledger = TaskStoreHook().get_ledger()
    me = _holder(context)
    try:
        for configuration in ledger.held_by(me):
            ledger.clear_stale(configuration, run_is_alive, hold_may_go)
    except Exception as exc:  # the check is a courtesy to the next run: this run's own release goes on
        log.warning("Cannot check the run waiting for this run's configuration: %r", exc)
    freed = ledger.leave(me)
    log.info("Released %d hold(s) of this run", freed)
    return freed


@contextmanager
def keep_hold(context: Context) -> Iterator[None]:
    """While a run's work executes, renew the lease of whatever the run holds (nothing: it stops).

    Airflow's word keeps a running run's hold; the lease is what is left when Airflow cannot answer,
    so a live run renews it: a quarter of the lease apart, so three beats may fail before it runs out.
    """
    if not settings.prevent_duplicates():
        yield
        return
    lease = dt.timedelta(minutes=settings.guard_lease_minutes())
    every = max(lease.total_seconds() / 4, 1.0)
    with keep_renewed(TaskStoreHook().get_ledger(), _holder(context), lease, every):
        yield


class ReleaseGuardOperator(BaseOperator):
    """Frees what this run holds in the process ledger, however the run's other tasks ended."""

    ui_color = "#fff4d6"

    def execute(self, context: Context) -> int:
        return release_hold(context, self.log)
