"""The guard's trigger: waits in the triggerer, not in a worker slot, until the run may execute.

A trigger's arguments are stored in Airflow's metadata database (the ``trigger`` table) and written to
its logs, so it carries the store's connection id, never its URL: the triggerer resolves the
connection itself, as a worker does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from scheduled_jobs.airflow_runs import run_is_alive

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scheduled_jobs.store import ProcessLedger


class GuardTrigger(BaseTrigger):
    """Polls the process ledger until this waiting run holds its configuration's running slot, or holds
    nothing any more (its hold was freed: its job was paused or disabled).

    While it waits it renews the run's lease, so a live waiting run is never cleared as stale; and it
    asks Airflow whether the running run is still running, so a long run is never cleared either.
    """

    def __init__(
        self,
        *,
        configuration: str,
        dag_id: str,
        run_id: str,
        store_conn_id: str,
        lease_seconds: float,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.configuration = configuration
        self.dag_id = dag_id
        self.run_id = run_id
        self.store_conn_id = store_conn_id
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "configuration": self.configuration,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "store_conn_id": self.store_conn_id,
                "lease_seconds": self.lease_seconds,
                "poll_seconds": self.poll_seconds,
            },
        )

    def __repr__(self) -> str:
        return f"<GuardTrigger {self.configuration} {self.dag_id}/{self.run_id}>"

    def _poll(self, ledger: ProcessLedger) -> dict[str, Any] | None:
        """The event to end the wait with: ``running`` when this run holds the running slot, ``freed`` (and
        why) when it holds nothing any more (its job was paused or disabled and a run of a worker freed its
        hold); None while it waits (its lease renewed)."""
        from scheduled_jobs.store import Holder

        me = Holder(self.dag_id, self.run_id)
        lease = dt.timedelta(seconds=self.lease_seconds)
        if ledger.promote(self.configuration, me, lease, is_alive=run_is_alive):
            return {"status": "running", "configuration": self.configuration}
        if ledger.slot_of(self.configuration, me) is None:
            reason = ledger.freed_reason(self.configuration, me)
            return {"status": "freed", "configuration": self.configuration, "reason": reason}
        ledger.renew(me, lease)
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from scheduled_jobs.store import TaskStoreHook

        # In threads: resolving the connection and the ledger's queries block. The connection is
        # resolved once per trigger run; the engine is the triggerer's one for it, shared by every
        # trigger there, so it is never disposed here.
        ledger = await asyncio.to_thread(TaskStoreHook(self.store_conn_id).get_ledger)
        while (event := await asyncio.to_thread(self._poll, ledger)) is None:
            await asyncio.sleep(self.poll_seconds)
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]
