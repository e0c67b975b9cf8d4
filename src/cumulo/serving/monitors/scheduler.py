"""The control plane's monitor loop: every few seconds, the monitors whose cron time has come
are claimed and their runs started (each a job: :mod:`cumulo.serving.monitors.runs`); when
jobs end, the runs whose job it was are recorded.

Several control planes on one database look at the same monitors; each cron time is claimed
in the database (the monitor's ``last_at`` moved on by a compare-and-set of what was read, as
pipeline schedules do), so exactly one of them runs it. Cron times missed while no control
plane ran give one run (``latest``, :mod:`cumulo.cron`), which covers every request captured
since the last. A run whose job was submitted is recorded by whichever control plane sees the
job end (the job outlives the one that submitted it); one left halfway by a control plane that
stopped before its job was submitted, or while it recorded the figures, is failed at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cumulo.cron import due_times
from cumulo.db import utcnow
from cumulo.errors import Conflict
from cumulo.serving.monitors.models import Monitor, MonitorRun
from cumulo.serving.monitors.runs import finish_runs, start_run
from cumulo.storage.backends import Backend

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from cumulo.leases import Membership

__all__ = ["LOOK_EVERY", "MonitorScheduler", "claim_time", "fail_orphans"]

log = logging.getLogger("cumulo.serving")

LOOK_EVERY = 2.0  # seconds between looks at the monitors' schedules


class MonitorScheduler:
    """Starts the scheduled monitors' runs that are due, and records runs whose job ended, on
    a thread of its own. ``notify`` (called by the job supervisor after each step) wakes it
    to record a run as soon as its job ends; ``notify_jobs`` wakes the supervisor when a run's
    job was submitted."""

    def __init__(self, engine: Engine, storage: Backend, *, plane: Membership,
                 notify_jobs: Callable[[], None] = lambda: None,
                 look_every: float = LOOK_EVERY) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.storage = storage
        self.plane = plane
        self.notify_jobs = notify_jobs
        self.look_every = look_every
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Runs this loop may have to record soon (started here, or seen running): looked for
        # at each wake-up while there are, else at each look.
        self._pending = True

    def notify(self) -> None:
        if self._pending:
            self._wake.set()

    def started(self) -> None:
        """A run's job was submitted (here or through the API)."""
        self._pending = True
        self.notify_jobs()

    def start(self) -> None:
        with self.sessions() as session:
            fail_orphans(session)
        self._thread = threading.Thread(target=self._loop, name="cumulo-monitors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # a run halfway: failed by the next start

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.look_every)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.finish()
                if time.monotonic() - last >= self.look_every:
                    last = time.monotonic()
                    self.fire()
            except Exception:  # a bad moment of the database must not end the loop
                log.exception("monitors: look failed")

    def finish(self) -> list[int]:
        """Record the runs whose job ended; their ids."""
        with self.sessions() as session:
            done = finish_runs(session, self.storage, owner=self.plane.id)
            self._pending = bool(session.scalar(select(MonitorRun.id).where(
                MonitorRun.state == "running", MonitorRun.job_id.is_not(None)).limit(1)))
        return done

    def fire(self, now: datetime | None = None) -> list[int]:
        """Start the runs of the monitors whose cron time has come; the runs' ids."""
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
                    run = start_run(session, self.storage, monitor,
                                    trigger=f"schedule at {times[-1].isoformat()}",
                                    owner=self.plane.id)
                except Conflict:  # a run by hand holds the window: this time is skipped
                    continue
                done.append(run.id)
                if run.job_id is not None:
                    self.started()
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
    """Runs left halfway by a control plane whose lease ran out (before their job was
    submitted, or while their figures were recorded): failed. Their windows are not given back
    (the watermark may have moved on since); the next run starts after them. A run whose job
    was submitted is left to be recorded when the job ends."""
    from cumulo.leases import live_planes

    live = [p.id for p in live_planes(session)]
    session.execute(update(MonitorRun).where(
        or_(and_(MonitorRun.state == "running", MonitorRun.job_id.is_(None)),
            MonitorRun.state == "recording"),
        or_(MonitorRun.owner.is_(None), MonitorRun.owner.not_in(live or [""])))
        .values(state="failed", finished_at=utcnow(),
                message="the control plane stopped while it ran"))
    session.commit()
