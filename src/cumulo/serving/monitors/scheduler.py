"""The control plane's monitor loop: every few seconds, the monitors whose cron time has come
are claimed and run.

Several control planes on one database look at the same monitors; each cron time is claimed
in the database (the monitor's ``last_at`` moved on by a compare-and-set of what was read, as
pipeline schedules do), so exactly one of them runs it. Cron times missed while no control
plane ran give one run (``latest``, :mod:`cumulo.cron`), which covers every request captured
since the last. Runs left running by a control plane that stopped are failed at start, and
their windows given back.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cumulo.cron import due_times
from cumulo.db import utcnow
from cumulo.errors import Conflict
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.runs import run_monitor
from cumulo.storage.backends import Backend

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from cumulo.leases import Membership

__all__ = ["LOOK_EVERY", "MonitorScheduler", "claim_time", "fail_orphans"]

log = logging.getLogger("cumulo.serving")

LOOK_EVERY = 2.0  # seconds between looks at the monitors' schedules


class MonitorScheduler:
    """Runs the scheduled monitors that are due, one after another, on a thread of its own."""

    def __init__(self, engine: Engine, storage: Backend, *, plane: Membership,
                 look_every: float = LOOK_EVERY) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.storage = storage
        self.plane = plane
        self.look_every = look_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self.sessions() as session:
            fail_orphans(session)
        self._thread = threading.Thread(target=self._loop, name="cumulo-monitors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # a run halfway: failed by the next start

    def _loop(self) -> None:
        while not self._stop.wait(self.look_every):
            try:
                self.fire()
            except Exception:  # a bad moment of the database must not end the loop
                log.exception("monitors: look failed")

    def fire(self, now: datetime | None = None) -> list[int]:
        """Run the monitors whose cron time has come; the runs' ids."""
        now = now or utcnow()
        if not self.plane.valid():
            return []  # fenced: another control plane runs them
        done: list[int] = []
        with self.sessions() as session:
            due = list(session.scalars(select(Monitor).where(Monitor.schedule.is_not(None))))
            for monitor in due:
                if self._stop.is_set():
                    break
                assert monitor.schedule is not None
                times = due_times(monitor.schedule, monitor.last_at, now, "latest")
                if not times or not claim_time(session, monitor, times[-1]):
                    continue
                try:
                    run = run_monitor(session, self.storage, monitor,
                                      trigger=f"schedule at {times[-1].isoformat()}",
                                      owner=self.plane.id)
                except Conflict:  # a run by hand holds the window: this time is skipped
                    continue
                done.append(run.id)
        return done


def claim_time(session: Session, monitor: Monitor, at: datetime) -> bool:
    """Move the monitor's ``last_at`` on to ``at`` where it still holds what was read."""
    claimed = session.execute(update(Monitor).where(
        Monitor.id == monitor.id, Monitor.last_at == monitor.last_at,
    ).values(last_at=at)).rowcount  # type: ignore[attr-defined]
    session.commit()
    if claimed:
        monitor.last_at = at
    return bool(claimed)


def fail_orphans(session: Session) -> None:
    """Runs left running by a control plane whose lease ran out: failed. Their windows are not
    given back (the watermark may have moved on since); the next run starts after them."""
    from cumulo.leases import live_planes

    live = [p.id for p in live_planes(session)]
    session.execute(update(MonitorRun).where(
        MonitorRun.state == "running",
        or_(MonitorRun.owner.is_(None), MonitorRun.owner.not_in(live or [""])))
        .values(state="failed", finished_at=utcnow(),
                message="the control plane stopped while it ran"))
    session.commit()
