"""Control planes and their leases: several servers on one database share the work.

Each control plane (a ``cumulo up``) registers a row in ``control_planes`` when it starts and
renews its lease every :data:`RENEW_EVERY` seconds; the lease runs :data:`TTL` seconds past
each renewal. The work a control plane runs (a job's attempt, an endpoint, a pipeline run, a
backup) names it as its ``owner``. When a control plane's lease runs out (it was killed, its
machine is gone, or it cannot reach the database), another one takes its work over: a claim
that names the old owner (``UPDATE ... WHERE owner = :old``), so exactly one succeeds.

Times come from the database's clock where it has one (PostgreSQL's ``now()``), so machines
whose clocks disagree still agree on when a lease ran out; on SQLite (one machine) it is this
machine's.

A control plane that cannot renew its lease for :data:`TTL` seconds is *fenced*: it must
assume its work was taken over, stop what it runs locally and start again under a new id (what
:class:`Membership` does: ``fenced`` is set, and ``on_fenced`` callbacks run).

This is not a consensus protocol: the database is the one source of truth, as it is for
everything else the platform keeps.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, exists, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, sessionmaker

from cumulo.db import Base, UTCDateTime, utcnow

__all__ = ["RENEW_EVERY", "TTL", "ControlPlane", "Membership", "advertised_url", "db_now",
           "expired_planes", "live_key_hashes", "live_planes"]

log = logging.getLogger("cumulo.leases")

TTL = 10.0  # seconds a lease lasts past its last renewal
RENEW_EVERY = 2.0  # seconds between renewals
FORGET_AFTER = timedelta(days=1)  # rows of control planes gone this long are removed


class ControlPlane(Base):
    """One running (or lately running) control plane."""

    __tablename__ = "control_planes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    home: Mapped[str] = mapped_column(String(1024))
    url: Mapped[str] = mapped_column(String(1024))  # where it answers
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The SHA-256 of its key: what it sends to another control plane's endpoint replicas when
    # it forwards an invocation to them (they take any live control plane's).
    key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


def db_now(session: Session) -> datetime:
    """Now, by the database's clock (PostgreSQL), else this machine's."""
    if session.get_bind().dialect.name == "postgresql":
        found: datetime | None = session.scalar(select(func.now()))
        if found is not None:
            return found
    return utcnow()


def advertised_url(host: str, port: int) -> str:
    """Where the other control planes reach this one: its own address (not a load balancer's
    public URL); this machine's name when it listens on every address."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{host}:{port}"


def live_planes(session: Session) -> list[ControlPlane]:
    now = db_now(session)
    return list(session.scalars(select(ControlPlane).where(
        ControlPlane.lease_expires_at > now).order_by(ControlPlane.started_at)))


def live_key_hashes(session: Session) -> list[str]:
    """The key hashes of the live control planes."""
    now = db_now(session)
    return [h for h in session.scalars(select(ControlPlane.key_hash).where(
        ControlPlane.lease_expires_at > now)) if h]


def expired_planes(session: Session) -> dict[str, ControlPlane]:
    """Control planes whose lease has run out, by id: their work is anyone's to take over."""
    now = db_now(session)
    return {p.id: p for p in session.scalars(select(ControlPlane).where(
        ControlPlane.lease_expires_at <= now))}


class Membership:
    """This control plane's row and lease, renewed on a thread of its own."""

    def __init__(self, engine: Engine, *, home: str, url: str, version: str,
                 ttl: float = TTL, renew_every: float = RENEW_EVERY) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.host = socket.gethostname()
        self.home = home
        self.url = url
        self.version = version
        self.ttl = ttl
        self.renew_every = renew_every
        self.id = uuid.uuid4().hex
        self.key = ""  # made with each registration: see ControlPlane.key_hash
        self.fenced = threading.Event()  # set when the lease ran out: our work is not ours
        self.on_fenced: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = 0.0  # monotonic time of the last renewal that succeeded

    def start(self) -> None:
        self._register()
        self._thread = threading.Thread(target=self._run, name="cumulo-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Give the lease up at once: what this control plane ran is taken over now, not in
        ``ttl`` seconds (it stopped what it runs here, or leaves it to be adopted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with self.sessions() as session:
                now = db_now(session)
                session.execute(update(ControlPlane).where(ControlPlane.id == self.id)
                                .values(stopped_at=now, lease_expires_at=now))
                session.commit()
        except Exception:  # the database is gone too: the lease runs out by itself
            log.warning("could not give up the lease of control plane %s", self.id)

    def valid(self) -> bool:
        """Whether this control plane may act on its work: its lease was renewed within the
        last ``ttl`` seconds (by this machine's monotonic clock, which no one can set back)."""
        return not self.fenced.is_set() and time.monotonic() - self._renewed < self.ttl

    def _register(self) -> None:
        key = "cml_" + secrets.token_urlsafe(32)
        with self.sessions() as session:
            now = db_now(session)
            session.add(ControlPlane(
                id=self.id, host=self.host, home=self.home, url=self.url, pid=os.getpid(),
                version=self.version, started_at=now, renewed_at=now,
                lease_expires_at=now + timedelta(seconds=self.ttl),
                key_hash=hashlib.sha256(key.encode()).hexdigest()))
            # An earlier life of this control plane (this machine, this home) whose process is
            # gone was killed: its lease ends now, so that its work is taken over at once.
            for earlier in session.scalars(select(ControlPlane).where(
                    ControlPlane.host == self.host, ControlPlane.home == self.home,
                    ControlPlane.id != self.id, ControlPlane.lease_expires_at > now)):
                if not _alive(earlier.pid):
                    earlier.lease_expires_at = now
            # Control planes gone a day are forgotten (their work was taken over long since).
            session.execute(delete(ControlPlane).where(
                ControlPlane.lease_expires_at < now - FORGET_AFTER))
            session.commit()
        self.key = key
        self._renewed = time.monotonic()

    def renew(self) -> bool:
        """Extend the lease; False if it had run out already and another control plane may
        have taken its work (then we are fenced)."""
        started = time.monotonic()
        with self.sessions() as session:
            now = db_now(session)
            extended = {"renewed_at": now, "lease_expires_at": now + timedelta(seconds=self.ttl)}
            done = session.execute(
                update(ControlPlane).where(ControlPlane.id == self.id,
                                           ControlPlane.lease_expires_at > now)
                .values(**extended)
            ).rowcount  # type: ignore[attr-defined]
            if not done and session.get_bind().dialect.name == "sqlite":
                done = self._uncontested(session, extended)
            session.commit()
        if done:
            self._renewed = started
            return True
        return False

    def _uncontested(self, session: Session, extended: dict[str, datetime]) -> int:
        """The lease ran out, but no other control plane has been live since it did, so none
        can have taken this one's work: it is extended all the same (1), else 0. This is what a
        laptop that slept, or a machine paused for a snapshot, needs: a lone control plane
        would otherwise fence itself and kill its own running jobs. Only on SQLite, where the
        control planes share one machine and writes are serialized, so that the check and the
        extension are one step no other plane's takeover can come between."""
        mine = session.get(ControlPlane, self.id)
        if mine is None or mine.stopped_at is not None:
            return 0
        expired = mine.lease_expires_at
        other = aliased(ControlPlane)
        done: int = session.execute(
            update(ControlPlane).where(
                ControlPlane.id == self.id, ControlPlane.stopped_at.is_(None),
                ~exists().where(other.id != self.id, other.lease_expires_at > expired))
            .values(**extended)).rowcount  # type: ignore[attr-defined]
        if done:
            log.warning("control plane %s: its lease ran out (the machine slept or paused?) "
                        "and no other control plane was live since: it keeps its work",
                        self.id)
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if self.renew():
                    continue
                self._fence("its lease ran out before it was renewed")
            except Exception as exc:
                if time.monotonic() - self._renewed >= self.ttl:
                    self._fence(f"the database could not be reached for {self.ttl:.0f}s ({exc})")
                else:
                    log.warning("control plane %s: lease not renewed: %s", self.id, exc)

    def _fence(self, why: str) -> None:
        """Our work may be another's now: say so, let the services drop it, and come back
        under a new id once the database answers."""
        log.error("control plane %s is fenced: %s; what it ran is taken over by the others",
                  self.id, why)
        self.fenced.set()
        for callback in self.on_fenced:
            try:
                callback()
            except Exception:
                log.exception("control plane %s: dropping work after fencing failed", self.id)
        try:
            self.id = uuid.uuid4().hex
            self._register()
            self.fenced.clear()
            log.info("control plane is back as %s", self.id)
        except Exception:
            log.warning("control plane still cannot reach the database; tries again")


def _alive(pid: int) -> bool:
    """Whether a process of this machine still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: it runs
    return True
