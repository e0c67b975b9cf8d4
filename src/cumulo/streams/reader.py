"""Reading a whole stream from positions, for the control plane's own readers (deliveries,
scorers): every shard, parents before children, and, when nothing is new, a sleep on the
shards' wake-ups rather than a poll.

A :class:`ShardReader` keeps the stream's shards (looked up again every ``LOOK_AGAIN``
seconds, and at once when a shard it reads is closed by a split or merge) and reads, from the
positions its caller keeps (the next sequence to read, by shard), the shards that are
*readable*: not finished (a closed shard read to its end, or whose records retention dropped)
and whose parents are finished. A caller owns its positions and when they move: a delivery
moves them as it buffers, a scorer once a batch is written; the reader only reads.

Each readable shard is watched through its store (:meth:`ShardStore.watch`, the embedded
log's and JetStream's :class:`~cumulo.streams.log.Wakeups`): a shard that had nothing at a
position is not read again from there until the store says records were appended, and
:meth:`ShardReader.wait` sleeps until one does, a watched shard is closed, the caller stops
(:class:`Stopping`), or a deadline passes. An idle reader then costs one look at the shard
list every ``LOOK_AGAIN`` seconds, and no read of any shard (for JetStream: no NATS request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cumulo.streams import service
from cumulo.streams.backend import ShardStore
from cumulo.streams.log import Record
from cumulo.streams.models import Shard
from cumulo.streams.service import StreamEngine

__all__ = ["LOOK_AGAIN", "Item", "ShardReader", "Stopping"]

# Seconds between looks at the stream's shards: how soon a reshard made by another control
# plane (JetStream) is seen; one made here wakes the reader at once.
LOOK_AGAIN = 2.0


@dataclass(frozen=True)
class Item:
    """A record, with the shard it came from."""

    shard: Shard
    record: Record


class Stopping(threading.Event):
    """A runner's stop flag (:class:`~cumulo.streams.claims.Runner`): set, it also ends the
    wait of each reader bound to it at once."""

    def __init__(self) -> None:
        super().__init__()
        self._woken: list[threading.Event] = []

    def bind(self, woken: threading.Event) -> None:
        self._woken.append(woken)
        if self.is_set():
            woken.set()

    def unbind(self, woken: threading.Event) -> None:
        if woken in self._woken:
            self._woken.remove(woken)

    def set(self) -> None:
        super().set()
        for woken in list(self._woken):
            woken.set()


class ShardReader:
    """Reads stream ``stream``'s shards for one delivery or scorer, on its thread; ``close``
    when done (it stops watching the shards)."""

    def __init__(self, engine: StreamEngine, sessions: sessionmaker[Session], stream: str, *,
                 stopping: Stopping | None = None, look_again: float = LOOK_AGAIN) -> None:
        self.engine = engine
        self.sessions = sessions
        self.stream = stream
        self.look_again = look_again
        self.shards: list[Shard] = []
        self._shards_at = float("-inf")
        self._ends: dict[str, int] = {}  # closed shard: its next_seq, which no longer moves
        self._lock = threading.Lock()  # guards what the watch callbacks touch: below
        self._woken = threading.Event()  # records came, a shard closed, or the caller stops
        self._appends: dict[str, int] = {}  # shard: how many times the store told of records
        self._stale = False  # a watched shard was closed: look at the shards again
        self._empty: dict[str, tuple[int, int]] = {}  # shard: (position, appends) read empty
        self._watches: dict[str, Callable[[], None]] = {}  # shard: what stops its watch
        self._stopping = stopping
        if stopping is not None:
            stopping.bind(self._woken)

    # -- the shards ------------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> list[Shard]:
        """The stream's shards, looked up again when ``force``d, stale, or older than
        ``look_again``; NotFound if the stream is gone."""
        with self._lock:
            stale, self._stale = self._stale, False
        if force or stale or time.monotonic() - self._shards_at >= self.look_again:
            with self.sessions() as session:
                shards = service.shards_of(session, service.get_stream(session, self.stream))
                for shard in shards:
                    session.expunge(shard)
            self.shards, self._shards_at = shards, time.monotonic()
        return self.shards

    def _store(self, shard: Shard) -> ShardStore:
        return self.engine.logs.shard(self.stream, shard.shard_id)

    def _finished(self, shard: Shard, positions: Mapping[str, int]) -> bool:
        """A closed shard read to its end, or whose every record retention dropped."""
        if shard.closed_at is None:
            return False
        end = self._ends.get(shard.shard_id)
        if end is None:  # closed: no record comes to it any more
            end = self._ends[shard.shard_id] = self._store(shard).next_seq
        return (positions.get(shard.shard_id, 0) >= end
                or self._store(shard).first_seq >= end)

    def readable(self, positions: Mapping[str, int]) -> list[Shard]:
        """The shards to read from ``positions``: not finished, their parents finished (a
        parent this stream no longer has counts as finished), in the stream's order."""
        shards = self.refresh()
        known = {s.shard_id for s in shards}
        finished = {s.shard_id for s in shards if self._finished(s, positions)}
        return [s for s in shards if s.shard_id not in finished and all(
            p in finished or p not in known for p in (s.parent, s.adjacent_parent) if p)]

    # -- reading ---------------------------------------------------------------------------------

    def read(self, positions: Mapping[str, int], *, limit: int,
             max_bytes: int | None = None) -> list[Item]:
        """Up to ``limit`` records from ``positions`` (by shard: the next sequence to read; 0
        for a shard not in it: its oldest kept record), shard by shard, stopping after the
        shard that brings the data read to ``max_bytes``. A shard found empty at a position
        is read again from there only once its store told of new records."""
        shards = self.readable(positions)
        self._woken.clear()  # from here on, what the watches say wakes the next wait
        self._watch(shards)
        items: list[Item] = []
        size = 0
        for shard in shards:
            position = positions.get(shard.shard_id, 0)
            with self._lock:
                appends = self._appends.get(shard.shard_id, 0)
                if self._empty.get(shard.shard_id) == (position, appends):
                    continue  # nothing there since it was read from here
            records = self._store(shard).read(position, limit=limit - len(items))
            if not records:
                with self._lock:
                    self._empty[shard.shard_id] = (position, appends)
                continue
            items += [Item(shard, r) for r in records]
            size += sum(len(r.data) for r in records)
            if len(items) >= limit or (max_bytes is not None and size >= max_bytes):
                break
        return items

    def wait(self, until: float) -> None:
        """Sleep until a shard read last has new records, one of them was closed, the caller
        stops, or ``until`` (a ``time.monotonic()``); at most until the shards are due to be
        looked at again. Returns at once if that happened since the last :meth:`read`."""
        timeout = min(until, self._shards_at + self.look_again) - time.monotonic()
        if timeout > 0:
            self._woken.wait(timeout)

    # -- the watches -----------------------------------------------------------------------------

    def _watch(self, shards: list[Shard]) -> None:
        """Watch exactly ``shards``: those no longer read are let go."""
        wanted = {s.shard_id: s for s in shards}
        for shard_id in [s for s in self._watches if s not in wanted]:
            self._watches.pop(shard_id)()
        for shard_id, shard in wanted.items():
            if shard_id not in self._watches:
                self._watches[shard_id] = self._store(shard).watch(self._on(shard_id))

    def _on(self, shard_id: str) -> Callable[[bool], None]:
        def told(appended: bool) -> None:  # on the writer's thread: quick, never blocking
            with self._lock:
                self._appends[shard_id] = self._appends.get(shard_id, 0) + 1
                if not appended:  # closed by a split or merge (or the log closed)
                    self._stale = True
            self._woken.set()

        return told

    def close(self) -> None:
        """Stop watching the shards."""
        if self._stopping is not None:
            self._stopping.unbind(self._woken)
        watches, self._watches = self._watches, {}
        for stop in watches.values():
            stop()
