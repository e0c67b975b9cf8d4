"""Streams as Kinesis Data Streams has them: shards that split the 128-bit hash-key space, records
routed by the MD5 of their partition key (or an explicit hash key), per-shard sequence numbers
that only grow, iterators that say where a reader is, and retention.

The catalog (streams, shards) is in the metadata database; the records are in each shard's log
(:mod:`cumulo.streams.log`), on disk under ``<home>/streams``, acknowledged once they are
written and fsync'ed (group commit). A sequence number as the API shows it is a decimal string
of the shard's number and the record's sequence in the shard, so it is unique in the stream,
grows within a shard, and names its shard.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from bisect import bisect_right
from collections.abc import Iterator as Iterator_
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.config import Prices
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound, Unavailable
from cumulo.principal import Principal
from cumulo.streams.backend import LogBackend, open_log_backend
from cumulo.streams.log import Archives, Record
from cumulo.streams.metering import StreamMeter, put_units
from cumulo.streams.models import Shard, Stream
from cumulo.streams.push import Subscriptions

__all__ = ["ITERATOR_TYPES", "MAX_BATCH", "MAX_BATCH_BYTES", "MAX_RECORD", "Iterator",
           "StreamEngine", "children_of", "create_stream", "delete_stream", "get_stream",
           "list_streams", "merge_shards", "shards_of", "split_shard", "stream_doc"]

MAX_RECORD = 1 << 20  # a record's data, as Kinesis's 1 MiB
MAX_BATCH = 500  # records in one PutRecords
MAX_BATCH_BYTES = 5 << 20
MAX_SHARDS = 256
HASH_SPACE = 1 << 128
ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER",
                  "AT_TIMESTAMP")
ITERATOR_TTL = 300.0  # seconds an iterator is good for, as Kinesis's
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
log = logging.getLogger("cumulo.streams")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"stream name {name[:140]!r} is not allowed: use 1-128 of letters, "
                      "digits, '_', '.' and '-'", details={"stream": name[:140]})


def shard_name(number: int) -> str:
    return f"shardId-{number:012d}"


def create_stream(session: Session, principal: Principal, name: str, *, shards: int = 1,
                  retention_hours: int = 24, project: str | None = None) -> Stream:
    """A new stream whose ``shards`` split the hash keys evenly. Commits."""
    _check_name(name)
    if not 1 <= shards <= MAX_SHARDS:
        raise Invalid(f"a stream has 1 to {MAX_SHARDS} shards, not {shards}")
    if not 24 <= retention_hours <= 8760:
        raise Invalid(f"retention is 24 hours to 365 days (8760 hours), not {retention_hours}")
    project_id = projects.project_id_for(session, project)
    principal.require("streams:Create", f"stream/{name}", project=project)
    stream = Stream(name=name, status="ACTIVE", retention_hours=retention_hours,
                    created_by=principal.user_id, project_id=project_id)
    session.add(stream)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"stream {name!r} already exists", details={"stream": name}) from exc
    now = utcnow()
    step = HASH_SPACE // shards
    for i in range(shards):
        end = HASH_SPACE - 1 if i == shards - 1 else (i + 1) * step - 1
        session.add(Shard(stream_id=stream.id, shard_id=shard_name(i), number=i,
                          start_hash=str(i * step), end_hash=str(end), created_at=now))
    session.commit()
    return stream


def get_stream(session: Session, name: str) -> Stream:
    stream = session.scalar(select(Stream).where(Stream.name == name))
    if stream is None:
        raise NotFound(f"stream {name!r} does not exist; 'cumulo streams ls' lists streams",
                       details={"stream": name})
    return stream


def list_streams(session: Session, *, project: str | None = None) -> list[Stream]:
    query = select(Stream).order_by(Stream.name)
    if project is not None:
        query = query.where(Stream.project_id == projects.project_id_for(session, project))
    return list(session.scalars(query))


def shards_of(session: Session, stream: Stream) -> list[Shard]:
    return list(session.scalars(select(Shard).where(Shard.stream_id == stream.id)
                                .order_by(Shard.number)
                                .execution_options(populate_existing=True)))


def delete_stream(session: Session, engine: StreamEngine, name: str) -> None:
    stream = get_stream(session, name)
    engine.meter.meter(session, stream)  # its last usage record: shard-hours until now
    session.delete(stream)
    session.commit()
    engine.forget(name)
    engine.logs.drop_stream(name)


# --- resharding ----------------------------------------------------------------------------------


def _open_shard(shards: list[Shard], shard_id: str, stream: str) -> Shard:
    shard = next((s for s in shards if s.shard_id == shard_id), None)
    if shard is None:
        raise NotFound(f"stream {stream!r} has no shard {shard_id!r}; 'cumulo streams show "
                       f"{stream}' lists them", details={"shard": shard_id})
    if shard.closed_at is not None:
        raise Invalid(f"shard {shard_id} was closed by an earlier split or merge; reshard its "
                      "children", details={"field": "ShardToSplit"})
    return shard


def split_shard(session: Session, engine: StreamEngine, name: str, shard_id: str,
                new_start: str | None = None) -> tuple[Shard, Shard]:
    """Close ``shard_id`` and give its hash keys to two children: those below ``new_start``
    (default: the middle of its range) and the rest. Readers finish the parent first (its
    records stay until retention). Commits."""
    stream = get_stream(session, name)
    shards = shards_of(session, stream)
    parent = _open_shard(shards, shard_id, name)
    low, high = int(parent.start_hash), int(parent.end_hash)
    at = (low + high + 1) // 2 if new_start is None else None
    if at is None:
        assert new_start is not None
        if not new_start.isdigit() or not low < int(new_start) <= high:
            raise Invalid(f"NewStartingHashKey {new_start[:50]!r} must be a whole number inside "
                          f"shard {shard_id}'s range, above {low} and at most {high}",
                          details={"field": "NewStartingHashKey"})
        at = int(new_start)
    if high == low:
        raise Invalid(f"shard {shard_id} takes one hash key: it cannot be split")
    number = max(s.number for s in shards) + 1
    now = utcnow()
    with engine.resharding():
        parent.closed_at = now
        children = (Shard(stream_id=stream.id, shard_id=shard_name(number), number=number,
                          start_hash=str(low), end_hash=str(at - 1), parent=parent.shard_id,
                          created_at=now),
                    Shard(stream_id=stream.id, shard_id=shard_name(number + 1),
                          number=number + 1, start_hash=str(at), end_hash=str(high),
                          parent=parent.shard_id, created_at=now))
        session.add_all(children)
        session.commit()
        engine.forget(name)
    engine.logs.shard(name, parent.shard_id).nudge()  # its subscribers: the shard is closed
    return children


def merge_shards(session: Session, engine: StreamEngine, name: str, shard_id: str,
                 adjacent_id: str) -> Shard:
    """Close two shards whose hash keys are adjacent and give both ranges to one child.
    Commits."""
    stream = get_stream(session, name)
    shards = shards_of(session, stream)
    a = _open_shard(shards, shard_id, name)
    b = _open_shard(shards, adjacent_id, name)
    if a.shard_id == b.shard_id or not (int(a.end_hash) + 1 == int(b.start_hash)
                                        or int(b.end_hash) + 1 == int(a.start_hash)):
        raise Invalid(f"shards {shard_id} and {adjacent_id} are not adjacent: only shards whose "
                      "hash-key ranges meet can be merged",
                      details={"field": "AdjacentShardToMerge"})
    number = max(s.number for s in shards) + 1
    now = utcnow()
    with engine.resharding():
        a.closed_at = b.closed_at = now
        child = Shard(stream_id=stream.id, shard_id=shard_name(number), number=number,
                      start_hash=str(min(int(a.start_hash), int(b.start_hash))),
                      end_hash=str(max(int(a.end_hash), int(b.end_hash))),
                      parent=a.shard_id, adjacent_parent=b.shard_id, created_at=now)
        session.add(child)
        session.commit()
        engine.forget(name)
    for closed in (a, b):  # their subscribers: the shards are closed
        engine.logs.shard(name, closed.shard_id).nudge()
    return child


def children_of(shards: list[Shard], shard_id: str) -> list[Shard]:
    return [s for s in shards if shard_id in (s.parent, s.adjacent_parent)]


# --- records -------------------------------------------------------------------------------------


def hash_key_of(partition_key: str, explicit: str | None = None) -> int:
    if not partition_key or len(partition_key) > 256:
        raise Invalid("a record's partition key is 1 to 256 characters"
                      + ("" if partition_key else ": it is missing"),
                      details={"field": "PartitionKey"})
    if explicit is not None:
        if not explicit.isdigit() or int(explicit) >= HASH_SPACE:
            raise Invalid(f"ExplicitHashKey {explicit[:50]!r} must be a whole number from 0 to "
                          "2^128 - 1", details={"field": "ExplicitHashKey"})
        return int(explicit)
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


class _Router:
    """Which open shard takes a hash key: their ranges, as numbers, searched by bisection (a
    PutRecords routes 500 records)."""

    def __init__(self, shards: list[Shard]) -> None:
        ranges = sorted(((int(s.start_hash), int(s.end_hash), s) for s in shards
                         if s.closed_at is None), key=lambda r: r[0])
        self._starts = [low for low, _, _ in ranges]
        self._ranges = ranges

    def __call__(self, hash_key: int) -> Shard:
        i = bisect_right(self._starts, hash_key) - 1
        if i < 0 or hash_key > self._ranges[i][1]:
            raise Invalid("no open shard takes this hash key")  # not with shards covering all
        return self._ranges[i][2]


def external_seq(shard: Shard, seq: int) -> str:
    return str((shard.number << 64) | seq)


def internal_seq(shard: Shard, text: str) -> int:
    if not text.isdigit():
        raise Invalid(f"sequence number {text[:60]!r} is not one this stream gave out",
                      details={"field": "StartingSequenceNumber"})
    value = int(text)
    if value >> 64 != shard.number:
        raise Invalid(f"sequence number {text[:60]} is not of shard {shard.shard_id}",
                      details={"field": "StartingSequenceNumber"})
    return value & ((1 << 64) - 1)


@dataclass(frozen=True)
class Iterator:
    """Where a reader is in a shard: the next sequence to read (sealed: a reader cannot point
    it elsewhere), good for ITERATOR_TTL seconds from when it was made."""

    stream: str
    shard: str
    next_seq: int
    made: float


# Seconds a put trusts its view of a stream and its open shards. A reshard or delete made here
# drops the view at once (under the put gate); this bounds how long one made by another
# control plane sharing the database goes unseen.
ROUTE_TTL = 1.0
_Row = TypeVar("_Row", Stream, Shard)


def _unbound(row: _Row) -> _Row:
    """A copy of ``row``'s columns in no session (nothing can expire it)."""
    return type(row)(**{a.key: getattr(row, a.key)
                        for a in sa_inspect(type(row)).column_attrs})


class ShardBusy(Unavailable):
    """A shard's backlog is full: put again in a moment (Kinesis's
    ProvisionedThroughputExceededException)."""

    def __init__(self, stream: str, shard_id: str) -> None:
        super().__init__(f"shard {shard_id} of stream {stream!r} has as many records waiting "
                         "to be written as it takes (the setting stream_shard_backlog): put "
                         "them again in a moment",
                         details={"stream": stream, "shard": shard_id}, retry_after=1)


class Backlog:
    """Bytes of records on their way into each shard's log. Past ``limit`` a shard takes no
    more puts that may be refused (Kinesis's ProvisionedThroughputExceededException, which its
    clients retry with backoff) until what waits is written: the writers, not the memory of
    the server, set the pace. A put bigger than the limit alone is taken when nothing waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, str], int] = {}

    def take(self, stream: str, sizes: dict[str, int], *, refuse: bool) -> set[str]:
        """Count ``sizes`` (bytes by shard id) as waiting; returns the shards taken (all of
        them unless ``refuse``)."""
        taken = set()
        with self._lock:
            for shard_id, size in sizes.items():
                now = self._waiting.get((stream, shard_id), 0)
                if refuse and now and now + size > self.limit:
                    continue
                self._waiting[(stream, shard_id)] = now + size
                taken.add(shard_id)
        return taken

    def written(self, stream: str, sizes: dict[str, int]) -> None:
        with self._lock:
            for shard_id, size in sizes.items():
                left = self._waiting.pop((stream, shard_id), 0) - size
                if left > 0:
                    self._waiting[(stream, shard_id)] = left


@dataclass(frozen=True)
class _Route:
    """A stream as puts see it: its row and the router over its open shards."""

    stream: Stream
    router: _Router
    until: float  # time.monotonic() after which it is read again


class StreamEngine:
    """The running side of streams in a control plane: the shards' logs, the key that seals
    iterators (a new one each start: iterators last minutes, as Kinesis's), and the push
    subscriptions open (at most ``subscriptions`` at once)."""

    def __init__(self, home: Path, *, streams_url: str = "", subscriptions: int = 256,
                 prices: Prices | None = None, meter_every: float = 300.0,
                 archive: Archives | None = None, shard_backlog: int = 64 * 2**20) -> None:
        # The shards' records: the embedded log under <home>/streams (old segments moved to
        # ``archive``, in storage), or JetStream (backend.py).
        self.logs: LogBackend = open_log_backend(streams_url, home, archive=archive)
        self.subscriptions = Subscriptions(subscriptions)  # push subscriptions open (push.py)
        # shard-hours and PUT payload units, written as usage records (metering.py)
        self.meter = StreamMeter(prices or Prices(), every=meter_every)
        self._appends = futures.ThreadPoolExecutor(16, thread_name_prefix="streams-append")
        self._key = os.urandom(32)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Puts route and append under the shared side; a split or merge closes shards under
        # the exclusive side, so no record lands in a shard after it closed.
        self._gate = threading.Condition()
        self._putting = 0
        self._resharding = False
        # Puts look streams up here, not in the database each time (a fifth of a PutRecords'
        # time went there). ``_epoch`` counts what ``forget`` dropped, so that a view read
        # before a reshard is never kept after it.
        self._routes: dict[str, _Route] = {}
        self._epoch = 0
        self.backlog = Backlog(shard_backlog)

    def start(self, sessions: Any, every: float = 60.0) -> None:
        """Enforce retention every ``every`` seconds, and meter the streams' use every
        ``meter_every``, in threads."""
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    with sessions() as session:
                        self.trim(session)
                except Exception:  # a bad step must not end retention
                    log.exception("streams: trimming by retention failed")

        self._thread = threading.Thread(target=loop, daemon=True, name="streams-retention")
        self._thread.start()
        self.meter.start(sessions)

    @contextlib.contextmanager
    def resharding(self) -> Iterator_[None]:
        with self._gate:
            while self._resharding:
                self._gate.wait()
            self._resharding = True
            while self._putting:
                self._gate.wait()
        try:
            yield
        finally:
            with self._gate:
                self._resharding = False
                self._gate.notify_all()

    @contextlib.contextmanager
    def _put_gate(self) -> Iterator_[None]:
        with self._gate:
            while self._resharding:
                self._gate.wait()
            self._putting += 1
        try:
            yield
        finally:
            with self._gate:
                self._putting -= 1
                self._gate.notify_all()

    def close(self) -> None:
        self._stop.set()
        self.meter.stop()  # writes what was counted since the last records
        if self._thread is not None:
            self._thread.join(5)
        self._appends.shutdown()
        self.logs.close()

    def seal(self, it: Iterator) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            [it.stream, it.shard, it.next_seq, round(it.made, 3)]).encode()).decode()
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def open_iterator(self, token: str, *, now: float | None = None) -> Iterator:
        body, _, mac = token.partition(".")
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise ExpiredIterator("the shard iterator is not valid (not one this server gave "
                                  "out, or the server restarted): get a new one with "
                                  "GetShardIterator")
        try:
            stream, shard, seq, made = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, TypeError):
            raise ExpiredIterator("the shard iterator is malformed") from None
        if (now or time.time()) - made > ITERATOR_TTL:
            raise ExpiredIterator(f"the shard iterator expired ({ITERATOR_TTL:.0f} s after it "
                                  "was made): get a new one with GetShardIterator, or keep "
                                  "reading with each NextShardIterator")
        return Iterator(stream, shard, int(seq), float(made))

    def writable(self, session: Session, name: str) -> Stream:
        """The stream ``name``, for a put (NotFound if there is none): from the view puts keep,
        read again at most ``ROUTE_TTL`` seconds after it was read."""
        return self._route(session, name).stream

    def forget(self, name: str) -> None:
        """Drop the puts' view of stream ``name``: it was resharded, deleted or made again."""
        with self._gate:
            self._epoch += 1
            self._routes.pop(name, None)

    def _route(self, session: Session, name: str) -> _Route:
        route = self._routes.get(name)
        if route is not None and route.until > time.monotonic():
            return route
        epoch = self._epoch
        stream = get_stream(session, name)
        # Copies that belong to no session: the view outlives the session that read it.
        route = _Route(_unbound(stream), _Router([_unbound(s) for s in shards_of(session, stream)]),
                       time.monotonic() + ROUTE_TTL)
        with self._gate:
            if epoch == self._epoch:  # else a reshard came between: do not keep what was read
                self._routes[name] = route
        return route

    def put(self, session: Session, stream: Stream, records: list[tuple[str, bytes, int]], *,
            refuse: bool = False) -> list[tuple[Shard, int, float] | ShardBusy]:
        """Append records (partition key, data, hash key), each to its shard; durable on
        return. Returns each record's shard, sequence and arrival time, in order; with
        ``refuse``, a ShardBusy for the records of a shard whose backlog is full (not written: the
        caller says so, and its writer retries). The shards are looked up under the put gate,
        so a split or merge is never half seen."""
        if not records:
            return []
        with self._put_gate():
            current = self._route(session, stream.name)
            stream, route = current.stream, current.router
            by_shard: dict[str, list[int]] = {}
            chosen = []
            for i, (_, _, hash_key) in enumerate(records):
                shard = route(hash_key)
                chosen.append(shard)
                by_shard.setdefault(shard.shard_id, []).append(i)
            sizes = {shard_id: sum(len(records[i][1]) for i in indexes)
                     for shard_id, indexes in by_shard.items()}
            taken = self.backlog.take(stream.name, sizes, refuse=refuse)
            done: list[tuple[Shard, int, float] | ShardBusy | None] = [None] * len(records)
            for shard_id, indexes in by_shard.items():
                if shard_id not in taken:  # one error for the shard's records (few, if any)
                    busy = ShardBusy(stream.name, shard_id)
                    for i in indexes:
                        done[i] = busy
            by_shard = {s: indexes for s, indexes in by_shard.items() if s in taken}
            if not by_shard:
                return [d for d in done if d is not None]
            work = [(self.logs.shard(stream.name, shard_id), [records[i] for i in indexes])
                    for shard_id, indexes in by_shard.items()]
            try:
                # Each shard's log writes and syncs on its own: a put that spans shards
                # appends to all of them at once, and so waits for about one fsync instead of
                # one a shard.
                others = [self._appends.submit(log.append, batch) for log, batch in work[1:]]
                try:
                    appended = [work[0][0].append(work[0][1])]
                finally:
                    futures.wait(others)  # all done under the gate, whatever happened
                appended += [f.result() for f in others]
            finally:
                self.backlog.written(stream.name, {s: sizes[s] for s in by_shard})
            for indexes, acks in zip(by_shard.values(), appended, strict=True):
                for i, (seq, arrived) in zip(indexes, acks, strict=True):
                    done[i] = (chosen[i], seq, arrived)
        self.meter.count(stream, put_units(len(records[i][1]) for indexes in by_shard.values()
                                           for i in indexes))
        return [d for d in done if d is not None]  # every record has its answer by now

    def start_seq(self, stream: Stream, shard: Shard, kind: str, *,
                  sequence: str | None = None, timestamp: float | None = None) -> int:
        log = self.logs.shard(stream.name, shard.shard_id)
        if kind == "TRIM_HORIZON":
            return log.first_seq
        if kind == "LATEST":
            return log.next_seq
        if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if sequence is None:
                raise Invalid(f"{kind} needs StartingSequenceNumber",
                              details={"field": "StartingSequenceNumber"})
            seq = internal_seq(shard, sequence)
            return seq + (1 if kind == "AFTER_SEQUENCE_NUMBER" else 0)
        if kind == "AT_TIMESTAMP":
            if timestamp is None:
                raise Invalid("AT_TIMESTAMP needs Timestamp", details={"field": "Timestamp"})
            return log.seq_at(timestamp)
        raise Invalid(f"ShardIteratorType {kind!r} is not one of {', '.join(ITERATOR_TYPES)}",
                      details={"field": "ShardIteratorType"})

    def read(self, stream: Stream, shard: Shard, start: int, *,
             limit: int) -> tuple[list[Record], int, int]:
        """Records from ``start``; the next sequence to read; milliseconds behind the shard's
        newest record."""
        log = self.logs.shard(stream.name, shard.shard_id)
        start = max(start, log.first_seq)
        records = log.read(start, limit=limit)
        following = records[-1].seq + 1 if records else start
        behind = 0
        if following < log.next_seq:
            newest = log.read(log.next_seq - 1, limit=1)
            if newest and records:
                behind = max(0, int((newest[0].arrived - records[-1].arrived) * 1000))
        return records, following, behind

    def trim(self, session: Session) -> int:
        """Retention: drop what every stream keeps no longer."""
        dropped = 0
        for stream in list_streams(session):
            before = time.time() - stream.retention_hours * 3600
            for shard in shards_of(session, stream):
                dropped += self.logs.shard(stream.name, shard.shard_id).trim(before)
        return dropped


class ExpiredIterator(Invalid):
    code = "expired_iterator"


def latest_positions(session: Session, engine: StreamEngine, stream: Stream) -> dict[str, int]:
    """Each shard's next sequence now, by shard id: where a reader that starts at LATEST
    begins (a delivery or a scorer made now), so that what comes after is all it reads."""
    return {shard.shard_id: engine.logs.shard(stream.name, shard.shard_id).next_seq
            for shard in shards_of(session, stream)}


def last_seq(stats: dict[str, int]) -> int:
    """The last sequence of a shard's log, as a closed shard's range ends: its last record's,
    or, where it never had one, its first (a range never ends before it starts)."""
    return max(stats["first_seq"], stats["next_seq"] - 1)


def stream_doc(session: Session, engine: StreamEngine, stream: Stream) -> dict[str, Any]:
    """A stream as ``show`` tells it: its shards, their hash ranges, sequence numbers, records
    and bytes."""
    shards = []
    for shard in shards_of(session, stream):
        stats = engine.logs.shard(stream.name, shard.shard_id).stats()
        shards.append({
            "shard_id": shard.shard_id, "parent": shard.parent,
            "adjacent_parent": shard.adjacent_parent,
            "hash_key_range": {"start": shard.start_hash, "end": shard.end_hash},
            "starting_sequence_number": external_seq(shard, stats["first_seq"]),
            "ending_sequence_number": external_seq(shard, last_seq(stats))
            if shard.closed_at is not None else None,
            "records": stats["records"], "bytes": stats["bytes"],
            "open": shard.closed_at is None})
    return {"name": stream.name, "status": stream.status,
            "retention_hours": stream.retention_hours, "created_at": _iso(stream.created_at),
            "shards": shards, "records": sum(s["records"] for s in shards),
            "bytes": sum(s["bytes"] for s in shards)}


def _iso(at: datetime) -> str:
    return at.isoformat()
