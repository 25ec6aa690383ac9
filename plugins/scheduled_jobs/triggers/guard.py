"""The guard's trigger: waits in the triggerer, not in a worker slot, until the run may execute."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class GuardTrigger(BaseTrigger):
    """Polls the process ledger until this waiting run holds its configuration's running slot.

    While it waits it renews the run's lease, so a live waiting run is never cleared as stale.
    """

    def __init__(
        self,
        *,
        configuration: str,
        dag_id: str,
        run_id: str,
        store_url: str,
        lease_seconds: float,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.configuration = configuration
        self.dag_id = dag_id
        self.run_id = run_id
        self.store_url = store_url
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "configuration": self.configuration,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "store_url": self.store_url,
                "lease_seconds": self.lease_seconds,
                "poll_seconds": self.poll_seconds,
            },
        )

    def __repr__(self) -> str:  # never the store URL: it may carry a password
        return f"<GuardTrigger {self.configuration} {self.dag_id}/{self.run_id}>"

    def _may_run(self) -> bool:
        from scheduled_jobs.store.engine import create_store_engine
        from scheduled_jobs.store.processes import Holder, ProcessLedger

        engine = create_store_engine(self.store_url)
        try:
            ledger = ProcessLedger(engine)
            me = Holder(self.dag_id, self.run_id)
            lease = dt.timedelta(seconds=self.lease_seconds)
            if ledger.promote(self.configuration, me, lease):
                return True
            ledger.renew(me, lease)
            return False
        finally:
            engine.dispose()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while not await asyncio.to_thread(self._may_run):
            await asyncio.sleep(self.poll_seconds)
        yield TriggerEvent({"status": "running", "configuration": self.configuration})  # type: ignore[no-untyped-call]
