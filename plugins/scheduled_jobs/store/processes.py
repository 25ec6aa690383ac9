"""The process ledger behind duplicate prevention.

Per configuration (an incoming configuration or a route) at most one run executes and at most one
waits. The decision is the database's: a unique key on (configuration, slot) lets exactly one of any
number of concurrent runs take a slot; there is no check-then-act on counts.

A holder is cleared before anyone decides when Airflow says its run is over. While Airflow says it is
queued or running, its hold stays, however long it takes (the seed's "at least 1 hour"). Only when
Airflow cannot answer does the lease decide; a live run keeps renewing it (``keep_renewed``), so the
lease runs out only for a run whose process is gone.

One exception to Airflow's word: a live run of a paused or disabled job (``MayGo``, asked only where Airflow
can tell) whose work is not executing. Airflow queues no task of a paused DAG, so such a hold would never
end: it counts as free, is removed, and recorded with the reason as a skipped run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from scheduled_jobs.store.schema import processes, skipped_runs
from scheduled_jobs.store.tasks import table_rows, utcnow

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class Slot(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"


@dataclass(frozen=True)
class Holder:
    dag_id: str
    run_id: str

    def __str__(self) -> str:
        return f"{self.dag_id} / {self.run_id}"


@dataclass(frozen=True)
class Decision:
    """What a run may do: ``run`` now, ``wait`` for the running one, or ``skip`` as a duplicate of ``holder``."""

    action: Literal["run", "wait", "skip"]
    holder: Holder | None = None
    reason: str = ""


# Tells whether an Airflow run is still queued or running; None when it cannot tell.
IsAlive = Callable[[str, str], bool | None]
# Why a live run's hold counts as free all the same (its job is paused or disabled and nothing of it
# executes); None while it keeps it.
MayGo = Callable[[str, str], str | None]


class ProcessLedger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _holders(self, configuration: str) -> dict[Slot, tuple[int, Holder, dt.datetime]]:
        query = select(processes).where(processes.c.configuration == configuration)
        with self.engine.connect() as conn:
            return {
                Slot(row.slot): (row.id, Holder(row.dag_id, row.run_id), row.lease_expires_at)
                for row in conn.execute(query)
            }

    def clear_stale(
        self, configuration: str, is_alive: IsAlive | None = None, may_go: MayGo | None = None
    ) -> list[Holder]:
        """Remove holders whose Airflow run is over (failed, cleared, killed), or, when Airflow cannot
        answer, whose lease ran out. A run Airflow says is queued or running keeps its hold, unless
        ``may_go`` gives a reason it counts as free (its job paused or disabled): then it is removed and
        recorded as skipped with that reason."""
        now = utcnow()
        gone: list[Holder] = []
        for _ in Slot:  # removing the running holder hands its slot to the waiting one: look at that one too
            found = False
            for slot, (_, holder, expires) in self._holders(configuration).items():
                if holder in gone:
                    continue
                alive = is_alive(holder.dag_id, holder.run_id) if is_alive is not None else None
                reason = may_go(holder.dag_id, holder.run_id) if may_go is not None and alive else None
                if alive is False or (alive is None and expires < now) or reason:
                    if reason:
                        self._free(configuration, slot, holder, reason)
                    else:
                        self.leave(holder)
                    gone.append(holder)
                    found = True
            if not found:
                break
        return gone

    def _free(self, configuration: str, slot: Slot, holder: Holder, reason: str) -> None:
        """A live run's hold that counts as free: removed (a waiting run moves up) and recorded as skipped."""
        self.leave(holder)
        text = f"{configuration}: the {slot.value} hold of {holder} was freed: {reason}, and nothing of it executes"
        log.warning("%s", text)
        self._record_skip(configuration, holder, holder, text)

    def slot_of(self, configuration: str, me: Holder) -> Slot | None:
        """The slot this run holds of ``configuration``; None when it holds none."""
        for slot, (_, holder, _) in self._holders(configuration).items():
            if holder == me:
                return slot
        return None

    def held_by(self, me: Holder) -> list[str]:
        """The configurations this run holds (running or waiting)."""
        query = select(processes.c.configuration).where(
            processes.c.dag_id == me.dag_id, processes.c.run_id == me.run_id
        )
        with self.engine.connect() as conn:
            return sorted(set(conn.execute(query).scalars()))

    def freed_reason(self, configuration: str, me: Holder) -> str:
        """Why this run no longer holds ``configuration``: the latest skip recorded for it, or a plain word."""
        query = (
            select(skipped_runs.c.reason)
            .where(
                skipped_runs.c.configuration == configuration,
                skipped_runs.c.dag_id == me.dag_id,
                skipped_runs.c.run_id == me.run_id,
            )
            .order_by(skipped_runs.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return str(found) if found else f"{configuration}: the hold of {me} was freed while it waited"

    @staticmethod
    def _row(configuration: str, slot: Slot, me: Holder, lease: dt.timedelta) -> dict[str, object]:
        now = utcnow()
        return {
            "configuration": configuration,
            "slot": slot.value,
            "dag_id": me.dag_id,
            "run_id": me.run_id,
            "acquired_at": now,
            "lease_expires_at": now + lease,
        }

    def _take(self, configuration: str, slot: Slot, me: Holder, lease: dt.timedelta) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(processes).values(self._row(configuration, slot, me, lease)))
        except IntegrityError:
            return False
        return True

    def enter(
        self,
        configuration: str,
        me: Holder,
        lease: dt.timedelta,
        *,
        wait_allowed: bool = True,
        is_alive: IsAlive | None = None,
        may_go: MayGo | None = None,
    ) -> Decision:
        """Decide for a run that wants to execute ``configuration`` (the seed's duplicate rule).

        ``wait_allowed=False`` is the ``skip`` overlap policy: never wait, skip while anything holds it.
        """
        self.clear_stale(configuration, is_alive, may_go)
        for slot, (_, holder, _) in self._holders(configuration).items():
            if holder == me:  # this run decided before (its guard is retried): the same answer
                return Decision("run" if slot is Slot.RUNNING else "wait")
        if self._take(configuration, Slot.RUNNING, me, lease):
            return Decision("run")
        if wait_allowed and self._take(configuration, Slot.WAITING, me, lease):
            running = self._holders(configuration).get(Slot.RUNNING)
            return Decision("wait", running[1] if running else None)
        holders = self._holders(configuration)
        first, second = (Slot.WAITING, Slot.RUNNING) if wait_allowed else (Slot.RUNNING, Slot.WAITING)
        found = holders.get(first) or holders.get(second)
        holder = found[1] if found else Holder("(gone)", "(gone)")
        if wait_allowed:
            reason = f"{configuration} already has a run waiting ({holder}); this run is a duplicate of it"
        else:
            reason = f"{configuration} is being executed by {holder}; overlap: skip drops this run"
        self._record_skip(configuration, me, holder, reason)
        return Decision("skip", holder, reason)

    def promote(
        self,
        configuration: str,
        me: Holder,
        lease: dt.timedelta,
        is_alive: IsAlive | None = None,
        may_go: MayGo | None = None,
    ) -> bool:
        """Whether a waiting run may execute now: it was handed the running slot, or takes the free one.

        Only a run that still waits may take it: one whose hold was freed (its job paused or disabled) is
        not let in (``slot_of`` then says None)."""
        self.clear_stale(configuration, is_alive, may_go)
        holders = self._holders(configuration)
        running = holders.get(Slot.RUNNING)
        if running is not None:
            return running[1] == me
        waiting = holders.get(Slot.WAITING)
        if waiting is None or waiting[1] != me:
            return False
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    delete(processes).where(
                        processes.c.configuration == configuration,
                        processes.c.slot == Slot.WAITING.value,
                        processes.c.dag_id == me.dag_id,
                        processes.c.run_id == me.run_id,
                    )
                ).rowcount
                if not taken:  # freed meanwhile
                    return False
                conn.execute(insert(processes).values(self._row(configuration, Slot.RUNNING, me, lease)))
        except IntegrityError:
            return False
        return True

    def renew(self, me: Holder, lease: dt.timedelta) -> int:
        """Push back the lease of whatever this run holds; how many holds it has (0: none)."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    update(processes)
                    .where(processes.c.dag_id == me.dag_id, processes.c.run_id == me.run_id)
                    .values(lease_expires_at=utcnow() + lease)
                ).rowcount
            )

    def leave(self, me: Holder) -> int:
        """Free whatever this run holds; a run waiting for it is handed the running slot at once,
        so no newcomer can overtake it."""
        now = utcnow()
        with self.engine.begin() as conn:
            held = conn.execute(
                select(processes.c.configuration, processes.c.slot).where(
                    processes.c.dag_id == me.dag_id, processes.c.run_id == me.run_id
                )
            ).all()
            conn.execute(delete(processes).where(processes.c.dag_id == me.dag_id, processes.c.run_id == me.run_id))
            for configuration, slot in held:
                if slot != Slot.RUNNING.value:
                    continue
                waiting = conn.execute(
                    select(processes.c.id, processes.c.acquired_at, processes.c.lease_expires_at).where(
                        processes.c.configuration == configuration, processes.c.slot == Slot.WAITING.value
                    )
                ).first()
                if waiting is not None:
                    lease = waiting.lease_expires_at - waiting.acquired_at
                    conn.execute(
                        update(processes)
                        .where(processes.c.id == waiting.id)
                        .values(slot=Slot.RUNNING.value, acquired_at=now, lease_expires_at=now + lease)
                    )
        return len(held)

    def _record_skip(self, configuration: str, me: Holder, holder: Holder, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(skipped_runs).values(
                    configuration=configuration,
                    dag_id=me.dag_id,
                    run_id=me.run_id,
                    duplicate_of_dag_id=holder.dag_id,
                    duplicate_of_run_id=holder.run_id,
                    reason=reason,
                    skipped_at=utcnow(),
                )
            )

    def skipped(self, configuration: str | None = None) -> list[dict[str, object]]:
        """Every skipped run (of a configuration), oldest first."""
        return table_rows(self.engine, skipped_runs, configuration=configuration)


class LeaseKeeper:
    """Renews a run's lease every ``every`` seconds, in a thread, until stopped.

    A beat of time, not of progress: one delivery a destination holds for an hour is still work under
    way. It stops by itself once the run holds nothing (an unguarded job, a webhook run), and a failed
    renewal (the store briefly away) is logged and tried again at the next beat.
    """

    def __init__(self, ledger: ProcessLedger, me: Holder, lease: dt.timedelta, every: float) -> None:
        self.ledger, self.me, self.lease, self.every = ledger, me, lease, every
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{me.dag_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.renewals += 1
                if self.ledger.renew(self.me, self.lease) == 0:
                    return
            except Exception as exc:  # the next beat tries again; the lease is several beats long
                log.warning("Could not renew the hold of %s: %s", self.me, exc)
            if self._stop.wait(self.every):
                return

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextmanager
def keep_renewed(ledger: ProcessLedger, me: Holder, lease: dt.timedelta, every: float) -> Iterator[LeaseKeeper]:
    """Keep ``me``'s lease renewed while the block runs (the run's work executes)."""
    keeper = LeaseKeeper(ledger, me, lease, every).start()
    try:
        yield keeper
    finally:
        keeper.stop()
