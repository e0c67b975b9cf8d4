"""What streams use, as Kinesis Data Streams (provisioned mode) bills it: shard-hours (each
shard from its creation until a split or merge closed it, or the stream was deleted) and PUT
payload units (each record's data in 25 KiB chunks, rounded up, at least one a record).

Usage records of kind ``stream`` are written every ``stream_meter_seconds`` (five minutes by
default), when the server stops, and when a stream is deleted. Shard-hours come from the
shards' rows, from the stream's ``metered_at`` on, so none are lost or counted twice, across
restarts and control planes alike: moving ``metered_at`` is a conditional update, made in the
transaction that writes the record. PUT units are counted in this control plane's memory as
puts are acknowledged, and written with the next record: those counted since the last one are
lost if the server is killed (not when it stops).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import projects
from cumulo.config import Prices
from cumulo.db import utcnow
from cumulo.metering import usage
from cumulo.streams.models import Shard, Stream

if TYPE_CHECKING:
    from cumulo.metering.models import UsageRecord

__all__ = ["PUT_UNIT", "StreamMeter", "put_units", "shard_hours"]

# Bytes of a record's data in one PUT payload unit: 25 KB, with AWS's pricing page's KB of
# 1,024 bytes. Its example's "1MB record" of 40 units is then 1,000 KiB (a full 1 MiB is 41).
PUT_UNIT = 25 * 1024
log = logging.getLogger("cumulo.streams")


def put_units(sizes: Iterable[int]) -> int:
    """PUT payload units of records of these data sizes (bytes): 25 KiB chunks, rounded up
    for each record, at least one a record (an empty record is one)."""
    return sum((size - 1) // PUT_UNIT + 1 if size > 0 else 1 for size in sizes)


def shard_hours(shards: Iterable[tuple[datetime, datetime | None]], since: datetime,
                until: datetime) -> float:
    """Hours the shards (created, closed or None) were open between ``since`` and ``until``."""
    seconds = 0.0
    for created, closed in shards:
        start = max(created, since)
        end = until if closed is None else min(closed, until)
        seconds += max(0.0, (end - start).total_seconds())
    return seconds / 3600.0


@dataclass
class _Counted:
    """PUT units counted for a stream and not yet in a record, and whose they are (kept so
    that units of a stream another control plane deleted are still written)."""

    name: str
    user_id: int | None
    project_id: int | None
    units: int = 0


class StreamMeter:
    """Counts PUT payload units per stream as puts are acknowledged, and writes streams' usage
    records (on a thread of its own once started)."""

    def __init__(self, prices: Prices, *, every: float = 300.0) -> None:
        self.prices = prices
        self.every = every
        self._counted: dict[int, _Counted] = {}  # by stream id
        self._lock = threading.Lock()
        self._sessions: sessionmaker[Session] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self, stream: Stream, units: int) -> None:
        """Count PUT units of an acknowledged put (the engine's put path: kept cheap)."""
        with self._lock:
            counted = self._counted.get(stream.id)
            if counted is None:
                counted = self._counted[stream.id] = _Counted(
                    stream.name, stream.created_by, stream.project_id)
            counted.units += units

    def pending(self, stream_id: int) -> int:
        """PUT units counted for a stream and not yet in a record."""
        with self._lock:
            counted = self._counted.get(stream_id)
            return counted.units if counted else 0

    def _take(self, stream_id: int) -> _Counted | None:
        with self._lock:
            return self._counted.pop(stream_id, None)

    def _give_back(self, stream_id: int, taken: _Counted | None) -> None:
        if taken is None:
            return
        with self._lock:
            counted = self._counted.setdefault(stream_id, taken)
            if counted is not taken:
                counted.units += taken.units

    def meter(self, session: Session, stream: Stream, *,
              now: datetime | None = None) -> UsageRecord | None:
        """Write (and commit) the stream's usage since its last record: its shard-hours up to
        ``now`` and the PUT units counted here. None when there was nothing to write (or
        another control plane metered its shard-hours meanwhile, and no units were counted)."""
        now = now or utcnow()
        since = stream.metered_at or stream.created_at
        shards = session.execute(select(Shard.created_at, Shard.closed_at)
                                 .where(Shard.stream_id == stream.id)).all()
        hours = shard_hours(((created, closed) for created, closed in shards), since, now)
        taken = self._take(stream.id)
        units = taken.units if taken else 0
        try:
            if hours > 0:
                old = stream.metered_at
                claimed = session.execute(
                    update(Stream).where(Stream.id == stream.id)
                    .where(Stream.metered_at.is_(None) if old is None
                           else Stream.metered_at == old)
                    .values(metered_at=now).execution_options(synchronize_session=False))
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    hours = 0.0  # another control plane wrote this period's shard-hours
            if hours <= 0 and units == 0:
                return None
            row = self._record(session, stream.name, stream.created_by,
                               projects.name_of(session, stream.project_id),
                               since=since if hours > 0 else now, now=now,
                               hours=hours, units=units)
            session.commit()
        except BaseException:
            session.rollback()
            self._give_back(stream.id, taken)  # counted again with the next record
            raise
        if hours > 0:
            stream.metered_at = now
        return row

    def _record(self, session: Session, name: str, user_id: int | None, project: str | None,
                *, since: datetime, now: datetime, hours: float, units: int) -> UsageRecord:
        return usage.record(
            session, self.prices, kind="stream", ref=name, cluster=None, user_id=user_id,
            tags=[], started_at=since, ended_at=now,
            wall_seconds=(now - since).total_seconds(), project=project,
            quantities={"shard_hours": hours, "put_units": units})

    def meter_all(self, session: Session, *, now: datetime | None = None) -> int:
        """Meter every stream, and write the units counted here for streams since deleted
        (by another control plane); the usage records written."""
        now = now or utcnow()
        written = 0
        seen = set()
        for stream in list(session.scalars(select(Stream).order_by(Stream.id))):
            seen.add(stream.id)
            try:
                if self.meter(session, stream, now=now) is not None:
                    written += 1
            except Exception:  # one stream's failure must not stop the others' metering
                log.exception("streams: metering stream %s failed", stream.name)
        with self._lock:
            gone = [i for i in self._counted if i not in seen]
        for stream_id in gone:
            taken = self._take(stream_id)
            if taken is None or not taken.units:
                continue
            try:
                self._record(session, taken.name, taken.user_id,
                             projects.name_of(session, taken.project_id),
                             since=now, now=now, hours=0.0, units=taken.units)
                session.commit()
                written += 1
            except Exception:
                session.rollback()
                self._give_back(stream_id, taken)
                log.exception("streams: metering deleted stream %s failed", taken.name)
        return written

    def start(self, sessions: sessionmaker[Session]) -> None:
        """Meter every ``every`` seconds, in a thread, until :meth:`stop`."""
        self._sessions = sessions

        def loop() -> None:
            while not self._stop.wait(self.every):
                self.flush()

        self._thread = threading.Thread(target=loop, daemon=True, name="streams-meter")
        self._thread.start()

    def flush(self) -> int:
        """Meter every stream now: the loop's step, and the last one when the server stops."""
        if self._sessions is None:
            return 0
        try:
            with self._sessions() as session:
                return self.meter_all(session)
        except Exception:  # a bad step must not end metering
            log.exception("streams: metering failed")
            return 0

    def stop(self) -> None:
        """End the loop, writing what was counted since the last records."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self.flush()
