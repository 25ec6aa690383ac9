"""One racer for the N-way ledger race: waits for a start instant, then enters; prints its decision."""

from __future__ import annotations

import datetime as dt
import sys
import time

from scheduled_jobs.store.engine import create_store_engine
from scheduled_jobs.store.processes import Holder, ProcessLedger


def main() -> None:
    url, configuration, dag_id, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    ledger = ProcessLedger(create_store_engine(url))
    time.sleep(max(0.0, start - time.time()))
    decision = ledger.enter(configuration, Holder(dag_id, "scheduled__2026-11-24T12:00:00"), dt.timedelta(hours=1))
    print(decision.action)


if __name__ == "__main__":
    main()
