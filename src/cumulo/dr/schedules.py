"""Backups on a schedule, run by the control plane (AWS Backup's plans).

A schedule names a target (a folder of the server's machine, or ``s3://bucket/prefix``), a cron
expression (:mod:`cumulo.cron`), a retention policy, and whether to drill each new backup. A
folder is a place on one machine: a schedule with a folder target keeps the name of the machine
whose control plane made it (``host``), and only control planes on that machine run it (another
machine's folder of that name is not the same place). An ``s3://`` target is run by any. The
control plane looks at the schedules every ``LOOK_EVERY`` seconds; a schedule whose cron time
has come is claimed in the database (its ``last_at`` moved on where it still holds the value
read, so two control planes on one database never both run it) and queued. One backup runs at a
time, on a worker thread of its own: a backup reads the whole home, and two at once would only
compete for the disk. A schedule has at most one running backup (and one running drill)
whichever control plane is asked: a unique index over the running runs says so.

Each backup and each drill is a :class:`~cumulo.dr.models.BackupRun`: its figures, or the error
that stopped it. A schedule whose latest backup (or drill) failed is *failing*: ``cumulo
status``, Home and the Backups page say so until a later one succeeds. A run left ``running`` by
a control plane whose lease ran out (:mod:`cumulo.leases`) is marked failed by the others.
"""

from __future__ import annotations

import logging
import queue
import socket
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cumulo.config import Settings
from cumulo.cron import MISSED, check_cron, due_times
from cumulo.db import utcnow
from cumulo.dr.models import BackupRun, BackupSchedule
from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.leases import Membership, live_planes

__all__ = ["BackupScheduler", "check_here", "create_schedule", "delete_schedule", "failing",
           "get_schedule", "last_runs", "next_time"]

log = logging.getLogger("cumulo.dr")

LOOK_EVERY = 15.0  # seconds between looks at the schedules
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def create_schedule(session: Session, *, name: str, target: str, cron: str,
                    key_file: str | None = None, missed: str = "latest", keep_last: int = 0,
                    keep_daily: int = 0, keep_weekly: int = 0, drill: bool = False,
                    created_by: int | None = None, host: str | None = None) -> BackupSchedule:
    """Check and store a schedule; the target is opened (and made) at once, so that a target
    the server cannot write is refused now, not at 2 a.m. ``host`` is the machine of the
    control plane that makes it (its :attr:`BackupScheduler.host`; default this machine's
    name): a folder target is a folder of that machine, run only by control planes there."""
    from cumulo.dr.repo import open_repository

    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name[0] == "-":
        raise Invalid(f"schedule name {name!r}: lowercase letters, digits and '-', "
                      "at most 64, like 'nightly'")
    check_cron(cron)
    if missed not in MISSED:
        raise Invalid(f"missed {missed!r}: one of {', '.join(MISSED)}")
    if min(keep_last, keep_daily, keep_weekly) < 0:
        raise Invalid("keep_last, keep_daily and keep_weekly are counts: 0 or more")
    if session.scalar(select(BackupSchedule).where(BackupSchedule.name == name)) is not None:
        raise Conflict(f"a backup schedule named {name!r} exists; remove it first "
                       f"('cumulo backup unschedule {name}') or pick another name")
    if not target.startswith("s3://") and not target.startswith("/"):
        raise Invalid(f"target {target!r}: give a folder of the server's machine as an absolute "
                      "path (/srv/backups), or s3://bucket/prefix")
    open_repository(target, key_file=key_file, create=True)  # refused now, not at 2 a.m.
    schedule = BackupSchedule(name=name, target=target, key_file=key_file, cron=cron,
                              missed=missed, keep_last=keep_last, keep_daily=keep_daily,
                              keep_weekly=keep_weekly, drill=drill, last_at=utcnow(),
                              created_by=created_by,
                              host=None if target.startswith("s3://")
                              else host or socket.gethostname())
    session.add(schedule)
    session.commit()
    return schedule


def get_schedule(session: Session, name: str) -> BackupSchedule:
    found = session.scalar(select(BackupSchedule).where(BackupSchedule.name == name))
    if found is None:
        names = session.scalars(select(BackupSchedule.name)).all()
        raise NotFound(f"no backup schedule {name!r}"
                       + (f"; there are: {', '.join(names)}" if names else
                          "; make one with 'cumulo backup schedule --cron ... --to ...'"))
    return found


def check_here(schedule: BackupSchedule, host: str, *, doing: str = "run it") -> None:
    """Refuse (Conflict) to use a schedule's folder target from a control plane on another
    machine than the one whose folder it is: it would write, or read, another place."""
    if schedule.host is None or schedule.host == host:
        return
    raise Conflict(f"backup schedule {schedule.name!r} backs up to a folder of machine "
                   f"{schedule.host!r} ({schedule.target}), and this control plane runs on "
                   f"{host!r}: {doing} through a control plane on {schedule.host}, or give the "
                   "schedule an s3:// target (unschedule it and schedule it again with "
                   "--to s3://bucket/prefix)",
                   details={"schedule": schedule.name, "host": schedule.host, "here": host})


def delete_schedule(session: Session, name: str) -> None:
    """Remove a schedule; its backups stay in the target, and its runs in the history."""
    session.delete(get_schedule(session, name))
    session.commit()


def next_time(schedule: BackupSchedule, now: datetime | None = None) -> datetime | None:
    from croniter import croniter

    if not schedule.enabled:
        return None
    start = max(schedule.last_at, now or utcnow())
    found: datetime = croniter(schedule.cron, start).get_next(datetime)
    return found


def last_runs(session: Session, schedules: list[str]) -> dict[tuple[str, str], BackupRun]:
    """Each schedule's latest run of each kind, by (schedule, kind)."""
    latest: dict[tuple[str, str], BackupRun] = {}
    if not schedules:
        return latest
    rows = session.scalars(select(BackupRun).where(BackupRun.schedule.in_(schedules))
                           .order_by(BackupRun.id.desc()).limit(50 * len(schedules)))
    for run in rows:
        latest.setdefault((run.schedule or "", run.kind), run)
    return latest


def failing(session: Session) -> list[BackupRun]:
    """The latest finished run of each schedule and kind, where it failed."""
    names = list(session.scalars(select(BackupSchedule.name)))
    runs = session.scalars(select(BackupRun).where(BackupRun.schedule.in_(names),
                                                   BackupRun.state != "running")
                           .order_by(BackupRun.id.desc()).limit(100 * max(1, len(names))))
    latest: dict[tuple[str, str], BackupRun] = {}
    for run in runs:
        latest.setdefault((run.schedule or "", run.kind), run)
    return [r for r in latest.values() if r.state == "failed"]


@dataclass(frozen=True)
class _Work:
    schedule: str
    trigger: str
    drill: bool
    run_id: int  # the backup's run, made when queued (so that it is listed at once)


class BackupScheduler:
    """The control plane's backup loop: fires due schedules, runs one backup at a time."""

    def __init__(self, settings: Settings, engine: Engine, *, plane: Membership,
                 look_every: float = LOOK_EVERY) -> None:
        self.settings = settings
        self.plane = plane
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.look_every = look_every
        self.host = socket.gethostname()
        self._work: queue.Queue[_Work | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._drill_server: subprocess.Popen[bytes] | None = None  # a drill's, while it runs

    def start(self) -> None:
        with self.sessions() as session:
            self._fail_orphans(session)
        for target, name in ((self._look, "cumulo-backup-schedules"),
                             (self._work_loop, "cumulo-backups")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        server = self._drill_server
        if server is not None:  # a drill's scratch server goes with the control plane
            server.kill()
        for thread in self._threads:
            thread.join(timeout=5)  # a backup halfway stays unlisted: the target stays whole

    def run_now(self, name: str, *, drill: bool = False, by: str,
                user_id: int | None = None) -> BackupRun:
        """Queue a backup of schedule ``name`` now (then a drill, with ``drill``)."""
        with self.sessions() as session:
            schedule = get_schedule(session, name)
            check_here(schedule, self.host)
            return self._queue(session, schedule, f"by {by}", drill=drill or schedule.drill,
                               user_id=user_id)

    def _queue(self, session: Session, schedule: BackupSchedule, trigger: str, *,
               drill: bool, user_id: int | None = None) -> BackupRun:
        run = BackupRun(kind="backup", schedule=schedule.name, trigger=trigger,
                        target=schedule.target, state="running", host=self.host,
                        owner=self.plane.id, started_by=user_id)
        session.add(run)
        try:
            session.commit()
        except IntegrityError:  # the unique index over running runs: one at a time
            session.rollback()
            raise Conflict(f"a backup of schedule {schedule.name!r} is already queued or "
                           "running; 'cumulo backup runs' follows it") from None
        self._work.put(_Work(schedule.name, trigger, drill, run.id))
        return run

    def _fail_orphans(self, session: Session) -> None:
        """Runs left running by a control plane whose lease ran out (or from before control
        planes had ids): failed, so that their schedules can run again."""
        live = [p.id for p in live_planes(session)]
        session.execute(update(BackupRun).where(
            BackupRun.state == "running",
            or_(BackupRun.owner.is_(None), BackupRun.owner.not_in(live or [""])))
            .values(state="failed", finished_at=utcnow(),
                    error="the control plane stopped while it ran; the backups before it "
                    "are whole"))
        session.commit()

    def _look(self) -> None:
        while not self._stop.wait(self.look_every):
            try:
                self.fire()
            except Exception:  # a bad moment of the database must not end the loop
                log.exception("backup schedules: look failed")

    def fire(self, now: datetime | None = None) -> list[int]:
        """Queue the backups the schedules owe now; their runs' ids."""
        now = now or utcnow()
        queued: list[int] = []
        if not self.plane.valid():
            return queued  # the lease is not renewed: another control plane fires them
        with self.sessions() as session:
            self._fail_orphans(session)
            # A folder target's schedule waits for a control plane of its machine (its missed
            # cron times then go by its ``missed`` policy); an s3:// one is anyone's.
            for schedule in session.scalars(select(BackupSchedule).where(
                    BackupSchedule.enabled.is_(True),
                    or_(BackupSchedule.host.is_(None), BackupSchedule.host == self.host))):
                times = due_times(schedule.cron, schedule.last_at, now, schedule.missed)
                new_last = times[-1] if times else (now if schedule.missed == "skip" and
                                                    schedule.last_at < now else None)
                if new_last is None:
                    continue
                # Claimed where last_at is still what was read: one control plane wins.
                claimed = session.execute(
                    update(BackupSchedule).where(BackupSchedule.id == schedule.id,
                                                 BackupSchedule.last_at == schedule.last_at)
                    .values(last_at=new_last)).rowcount  # type: ignore[attr-defined]
                session.commit()
                if not claimed or not times:
                    continue
                try:
                    run = self._queue(session, schedule,
                                      f"schedule {schedule.name} at {times[-1].isoformat()}",
                                      drill=schedule.drill)
                except Conflict:
                    log.info("backup schedule %s: still running; %s skipped", schedule.name,
                             times[-1].isoformat())
                    continue
                queued.append(run.id)
        return queued

    def _work_loop(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                self._do(work)
            except Exception:
                log.exception("backup schedule %s: run failed", work.schedule)

    def _do(self, work: _Work) -> None:
        with self.sessions() as session:
            run = session.get(BackupRun, work.run_id)
            schedule = session.scalar(select(BackupSchedule)
                                      .where(BackupSchedule.name == work.schedule))
            if run is None:
                return
            if schedule is None:
                _finish(session, run, error="the schedule was removed before its backup ran")
                return
            backup_id = self._backup(session, run, schedule)
            if backup_id is not None and work.drill and not self._stop.is_set():
                self._drill(session, schedule, backup_id, work.trigger, run.started_by)

    def _backup(self, session: Session, run: BackupRun,
                schedule: BackupSchedule) -> str | None:
        from cumulo.dr.backup import create_backup, prune_backups
        from cumulo.dr.repo import open_repository

        try:
            repo = open_repository(schedule.target, key_file=schedule.key_file, create=True)
            manifest = create_backup(self.settings, repo)
            totals = manifest["totals"]
            run.backup_id, run.files = manifest["id"], totals["files"]
            run.bytes, run.stored_bytes = totals["bytes"], totals["stored_bytes"]
            if schedule.keep_last or schedule.keep_daily or schedule.keep_weekly:
                run.pruned = len(prune_backups(repo, keep_last=schedule.keep_last,
                                               keep_daily=schedule.keep_daily,
                                               keep_weekly=schedule.keep_weekly).removed)
        except Exception as exc:
            _finish(session, run, error=_why(exc))
            log.warning("backup schedule %s: backup failed: %s", schedule.name, run.error)
            return None
        _finish(session, run)
        return run.backup_id

    def _drill(self, session: Session, schedule: BackupSchedule, backup_id: str,
               trigger: str, user_id: int | None) -> None:
        from cumulo.dr.drill import run_drill
        from cumulo.dr.repo import open_repository

        run = BackupRun(kind="drill", schedule=schedule.name, trigger=trigger,
                        target=schedule.target, state="running", host=self.host,
                        owner=self.plane.id, backup_id=backup_id, started_by=user_id)
        session.add(run)
        session.commit()
        try:
            drill = run_drill(open_repository(schedule.target, key_file=schedule.key_file),
                              backup_id, serving=self._serving)
        except Exception as exc:
            _finish(session, run, error=_why(exc))
            return
        run.rpo_seconds, run.rto_seconds = drill.rpo_seconds, drill.rto_seconds
        run.checked = ", ".join(f"{n} {what.replace('_', ' ')}"
                                for what, n in drill.checked.items())
        _finish(session, run, error="; ".join(drill.problems[:20]) or None)


    def _serving(self, server: subprocess.Popen[bytes] | None) -> None:
        self._drill_server = server
        if server is not None and self._stop.is_set():
            server.kill()  # stopped while it started


def _why(exc: Exception) -> str:
    if isinstance(exc, CumuloError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _finish(session: Session, run: BackupRun, *, error: str | None = None) -> None:
    run.state = "failed" if error else "succeeded"
    run.error = error
    run.finished_at = utcnow()
    session.commit()


def run_doc(run: BackupRun) -> dict[str, Any]:
    """A run as the API and the status page give it."""
    return {"id": run.id, "kind": run.kind, "schedule": run.schedule, "trigger": run.trigger,
            "target": run.target, "state": run.state, "backup_id": run.backup_id,
            "files": run.files, "bytes": run.bytes, "stored_bytes": run.stored_bytes,
            "pruned": run.pruned, "rpo_seconds": run.rpo_seconds,
            "rto_seconds": run.rto_seconds, "checked": run.checked, "error": run.error,
            "started_at": run.started_at, "finished_at": run.finished_at, "host": run.host}
