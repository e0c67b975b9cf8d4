"""The embedded durable log behind streams: one append-only log per shard, in local files.

A shard's log is a folder of segment files named by their first sequence number,
``00000000000000000001.seg``, each a run of frames::

    header  magic u32 | body length u32 | crc32(body) u32
    body    seq u64 | arrived f64 | hash key (16 bytes, big-endian) | key length u16 | key (utf-8)
            | data length u32 | data

(little-endian but the hash key). A new segment starts once the active one passes
``segment_bytes``; retention (:meth:`ShardLog.trim`) removes whole old segments.

Durability: :meth:`ShardLog.append` returns once its records are written and fsync'ed. Calls
from many threads share one write and one fsync (group commit): the first caller to find no
write under way leads, takes every request queued so far, writes and syncs them together and
wakes the others; whoever queued meanwhile leads the next round. Readers see a record only
once its append may have returned, so nothing they see can be taken back by a crash.

Crash safety: only the last segment is ever written to, and a segment is synced in full before
the next one is made, so a crash can only leave a torn frame at the end of the last segment.
Opening a log checks every frame of that segment (crc32) and cuts a torn tail away: a process
killed mid-write loses the records whose append had not returned, never one whose had. Older
segments are only walked frame header by frame header on open (not read through), so a large
log opens quickly; reads check every frame they return.

Arrival times never go backwards within a shard (a clock stepped back holds them at the last
one), which is what lets :meth:`ShardLog.seq_at` search them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from cumulo.errors import Conflict, CumuloError, Invalid, Unavailable

__all__ = ["Archive", "Archives", "LogStore", "Record", "ShardLog", "Wakeups"]

log = logging.getLogger("cumulo.streams")

_MAGIC = 0x314C5343  # b"CSL1"
_HEADER = struct.Struct("<III")  # magic, body length, crc32(body)
_FIXED = struct.Struct("<Qd16sH")  # seq, arrived, hash key, key length
_SEQ_ARRIVED = struct.Struct("<Qd")
_DATA_LEN = struct.Struct("<I")
_MIN_BODY = _FIXED.size + _DATA_LEN.size
_MAX_DATA = 0xFFFFFFFF - _MIN_BODY - 0xFFFF
# The in-memory index keeps one entry every so many records or bytes: a read seeks to the
# entry at or before its start and walks at most that far; a day of a busy shard stays small.
_INDEX_RECORDS = 64
_INDEX_BYTES = 256 << 10
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


@dataclass(frozen=True, slots=True)
class Record:
    seq: int  # per shard, strictly increasing, from 1
    arrived: float  # time.time() when appended (ApproximateArrivalTimestamp)
    key: str  # partition key
    data: bytes
    hash_key: int  # the 128-bit hash key the record was routed by


_Prepared = tuple[bytes, bytes, int]  # utf-8 key, data, hash key
_Ack = tuple[int, float]  # seq, arrived


def _prepare(key: str, data: bytes, hash_key: int) -> _Prepared:
    encoded = key.encode()
    if len(encoded) > 0xFFFF:
        raise Invalid(f"a partition key may have at most 65535 bytes, not {len(encoded)}")
    if not 0 <= hash_key < 1 << 128:
        raise Invalid(f"a hash key must be in [0, 2**128), not {hash_key}")
    data = bytes(data)
    if len(data) > _MAX_DATA:
        raise Invalid(f"a record may hold at most {_MAX_DATA} bytes, not {len(data)}")
    return encoded, data, hash_key


def _frame(seq: int, arrived: float, record: _Prepared) -> bytes:
    key, data, hash_key = record
    body = b"".join((_FIXED.pack(seq, arrived, hash_key.to_bytes(16, "big"), len(key)), key,
                     _DATA_LEN.pack(len(data)), data))
    return _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> Record:
    seq, arrived, hash_key, key_len = _FIXED.unpack_from(body)
    start = _FIXED.size + key_len
    (data_len,) = _DATA_LEN.unpack_from(body, start)
    data = body[start + _DATA_LEN.size:start + _DATA_LEN.size + data_len]
    return Record(seq, arrived, body[_FIXED.size:start].decode(), data,
                  int.from_bytes(hash_key, "big"))


def _read_body(f: BinaryIO) -> bytes | None:
    """The next frame's body, or None at the end or at a torn or corrupt frame."""
    header = f.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack(header)
    if magic != _MAGIC or length < _MIN_BODY:
        return None
    body = f.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    return body


def _peek(f: BinaryIO, pos: int, size: int) -> tuple[int, float, int, int] | None:
    """Seq, arrival, frame length and data length of the frame at ``pos`` from its header and
    the body's first bytes (its crc unchecked), or None where no whole frame fits."""
    head = f.read(_HEADER.size + _FIXED.size)
    if len(head) < _HEADER.size + _FIXED.size:
        return None
    magic, length, _ = _HEADER.unpack_from(head)
    seq, arrived, _, key_len = _FIXED.unpack_from(head, _HEADER.size)
    data_len = length - _MIN_BODY - key_len
    if magic != _MAGIC or data_len < 0 or pos + _HEADER.size + length > size:
        return None
    f.seek(pos + _HEADER.size + length)
    return seq, arrived, _HEADER.size + length, data_len


@dataclass(eq=False)
class _Segment:
    first_seq: int
    path: Path
    size: int = 0  # bytes of whole, published frames
    records: int = 0
    data_bytes: int = 0
    last_seq: int = 0
    last_arrived: float = 0.0
    since_entry: int = 0  # records since the index's last entry
    index_seq: array[int] = field(default_factory=lambda: array("q"))
    index_offset: array[int] = field(default_factory=lambda: array("q"))
    index_arrived: array[float] = field(default_factory=lambda: array("d"))
    archived: bool = False  # in the storage backend, not in the shard's folder (archive.py)

    def add(self, seq: int, arrived: float, offset: int, frame_len: int, data_len: int) -> None:
        if (not self.index_seq or self.since_entry >= _INDEX_RECORDS
                or offset - self.index_offset[-1] >= _INDEX_BYTES):
            self.index_seq.append(seq)
            self.index_offset.append(offset)
            self.index_arrived.append(arrived)
            self.since_entry = 0
        self.since_entry += 1
        self.records += 1
        self.data_bytes += data_len
        self.size = offset + frame_len
        self.last_seq, self.last_arrived = seq, arrived

    def offset_of(self, seq: int) -> int:
        """Where to start walking for ``seq``: the index entry at or before it."""
        i = bisect_right(self.index_seq, seq) - 1
        return self.index_offset[i] if i >= 0 else 0

    def offset_at(self, when: float) -> int:
        """Where to start walking for the first record that arrived at ``when`` or later."""
        i = bisect_left(self.index_arrived, when) - 1
        return self.index_offset[i] if i >= 0 else 0


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


class Archive(Protocol):
    """Where a shard's old sealed segments go (:class:`cumulo.streams.archive.ShardArchive`)."""

    after: float  # seconds after its newest record that a sealed segment goes

    def put(self, path: Path, name: str) -> None: ...

    def put_stub(self, name: str, stub: bytes) -> None: ...

    def stubs(self) -> dict[str, bytes]: ...

    def fetch(self, name: str) -> Path: ...

    def drop(self, name: str) -> None: ...


class Archives(Protocol):
    """The archives of every shard (:class:`cumulo.streams.archive.SegmentArchive`)."""

    def shard(self, stream: str, shard: str) -> Archive: ...

    def drop_stream(self, stream: str) -> None: ...


def _stub(segment: _Segment) -> bytes:
    """What the shard's folder keeps of an archived segment: ``NAME.arc``, its summary."""
    return json.dumps({"first_seq": segment.first_seq, "last_seq": segment.last_seq,
                       "records": segment.records, "data_bytes": segment.data_bytes,
                       "size": segment.size, "first_arrived": segment.index_arrived[0],
                       "last_arrived": segment.last_arrived}).encode()


def _from_stub(path: Path, segment_path: Path) -> _Segment:
    d = json.loads(path.read_bytes())
    segment = _Segment(int(d["first_seq"]), segment_path, size=int(d["size"]),
                       records=int(d["records"]), data_bytes=int(d["data_bytes"]),
                       last_seq=int(d["last_seq"]), last_arrived=float(d["last_arrived"]),
                       archived=True)
    # One index entry: a read of it walks the fetched segment from its start.
    segment.index_seq.append(segment.first_seq)
    segment.index_offset.append(0)
    segment.index_arrived.append(float(d["first_arrived"]))
    return segment


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(path: Path, first_seq: int, *, check: bool) -> _Segment:
    """A segment's index, built by walking its frames; a torn or corrupt tail is cut away.
    ``check`` reads every frame through and checks its crc (the last segment, where a crash
    can leave a torn write); otherwise only headers are walked."""
    segment = _Segment(first_seq, path)
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            if check:
                body = _read_body(f)
                got = None if body is None else (
                    *_SEQ_ARRIVED.unpack_from(body), _HEADER.size + len(body),
                    len(body) - _MIN_BODY - _FIXED.unpack_from(body)[3])
            else:
                got = _peek(f, pos, size)
            if got is None or (segment.records and got[0] <= segment.last_seq):
                break
            segment.add(got[0], got[1], pos, got[2], got[3])
            pos += got[2]
        if pos < size:
            log.warning("stream log %s: cutting away %d bytes of a torn or corrupt tail",
                        path, size - pos)
            f.truncate(pos)
            os.fsync(f.fileno())
    return segment


@dataclass(eq=False, slots=True)
class _Request:
    records: list[_Prepared]
    acks: list[_Ack] | None = None
    error: BaseException | None = None
    done: bool = False


class ShardLog:
    """The durable, append-only log of one shard, in ``folder``. Thread-safe."""

    def __init__(self, folder: Path, *, segment_bytes: int = 64 << 20,
                 fsync: bool = True, archive: Archive | None = None) -> None:
        if segment_bytes < 1:
            raise Invalid(f"segment_bytes must be positive, not {segment_bytes}")
        self._folder = Path(folder)
        self._archive = archive
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        # Published state (segments, next seq): read and changed under _lock.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Group commit: requests queue under _queue; one leader writes at a time.
        self._queue = threading.Condition()
        self._pending: list[_Request] = []
        self._writing = False
        self._closed = False
        self._last_batch = (0, 0)  # the last leader's thread and how many requests it took
        self._broken: str | None = None  # why appends cannot go on (a failed write not undone)
        self._wakeups = Wakeups(self._changed)
        self._segments = self._open()
        self._next_seq = max(s.last_seq + 1 if s.records else s.first_seq
                             for s in self._segments)
        # The leader's own state: the active segment, its file and the last arrival time.
        self._tail = self._segments[-1]
        self._last_arrived = max(s.last_arrived for s in self._segments)
        self._fd = os.open(self._tail.path, os.O_WRONLY | os.O_APPEND)

    def _open(self) -> list[_Segment]:
        if not self._folder.is_dir():
            self._folder.mkdir(parents=True, exist_ok=True)
            if self._fsync:
                _sync_folder(self._folder.parent)
        if self._archive is not None:
            # Stubs in storage but not here: the folder is new (a restore, another machine).
            for name, stub in self._archive.stubs().items():
                if re.fullmatch(r"\d{20}\.arc", name) and not (self._folder / name).exists():
                    (self._folder / name).write_bytes(stub)
        found = sorted((int(p.name[:20]), p) for p in self._folder.iterdir()
                       if re.fullmatch(r"\d{20}\.seg", p.name))
        stubs = {int(p.name[:20]): p for p in self._folder.iterdir()
                 if re.fullmatch(r"\d{20}\.arc", p.name)}
        if not found and not stubs:
            path = self._folder / _segment_name(1)
            os.close(self._create(path))
            return [_Segment(1, path)]
        local = [_scan(path, first, check=i == len(found) - 1)
                 for i, (first, path) in enumerate(found) if first not in stubs]
        for first, path in found:  # archived, then the process died before removing it
            if first in stubs:
                path.unlink(missing_ok=True)
        archived = [_from_stub(stub, self._folder / _segment_name(first))
                    for first, stub in stubs.items()]
        segments = sorted(local + archived, key=lambda s: s.first_seq)
        if segments[-1].archived:  # only archived ones (a restore): a new one to write to
            path = self._folder / _segment_name(segments[-1].last_seq + 1)
            os.close(self._create(path))
            segments.append(_Segment(segments[-1].last_seq + 1, path))
        return segments

    def _create(self, path: Path) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        if self._fsync:
            _sync_folder(self._folder)
        return fd

    # -- appending ---------------------------------------------------------------------------

    def append(self, records: Sequence[tuple[str, bytes, int]]) -> list[tuple[int, float]]:
        """Append (partition key, data, hash key) records; return each one's (seq, arrival)
        once all are on disk. Raises :class:`Invalid` for a bad record (then none is
        appended), :class:`Conflict` once the log is closed and :class:`Unavailable` when the
        disk refuses the write (then none of the batch is kept)."""
        request = _Request([_prepare(key, data, hash_key) for key, data, hash_key in records])
        if not request.records:
            return []
        lead = False
        with self._queue:
            self._check_writable()
            self._pending.append(request)
            while self._writing and not request.done:
                self._queue.wait()
            if not request.done:  # no write under way: lead one, for everyone queued by then
                if self._closed or self._broken:
                    self._pending.remove(request)
                    self._check_writable()
                self._writing = lead = True
        if lead:
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.acks is not None
        return request.acks

    def _check_writable(self) -> None:
        if self._closed:
            raise Conflict(f"the stream log in {self._folder} is closed")
        if self._broken:
            raise Unavailable(f"the stream log in {self._folder} cannot be written to until "
                              f"it is opened again: {self._broken}")

    def _lead(self) -> None:
        """Write and sync everything queued, as one batch, and wake whoever queued it."""
        batch: list[_Request] = []
        error: BaseException | None = None
        try:
            me = threading.get_ident()
            if self._fsync and self._last_batch != (me, 1):
                # The last write released other producers: let them queue their next records
                # (a yield of the GIL, microseconds) so that they share this fsync instead of
                # waiting for the next one. A lone producer does not wait, nor does a log
                # without fsync, whose writes are quicker than the yield.
                time.sleep(0)
            with self._queue:
                batch, self._pending = self._pending, []
            self._last_batch = (me, len(batch))
            self._commit(batch)
        except OSError as exc:
            error = Unavailable(f"could not write the stream log in {self._folder}: {exc}")
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._queue:
                for request in batch:
                    request.error, request.done = error, True
                self._writing = False
                self._queue.notify_all()

    def _commit(self, batch: list[_Request]) -> None:
        arrived = max(time.time(), self._last_arrived)
        seq, segment, pos = self._next_seq, self._tail, self._tail.size
        fds: list[int] = [self._fd]
        made: list[_Segment] = []
        adds: list[tuple[_Segment, tuple[int, float, int, int, int]]] = []
        acks: list[list[_Ack]] = []
        frames: list[bytes] = []
        try:
            for request in batch:
                acks.append([])
                for record in request.records:
                    if pos >= self._segment_bytes:  # roll: this segment is synced in full first
                        self._write(fds[-1], frames)
                        frames, pos = [], 0
                        segment = _Segment(seq, self._folder / _segment_name(seq))
                        made.append(segment)
                        fds.append(self._create(segment.path))
                    frame = _frame(seq, arrived, record)
                    frames.append(frame)
                    adds.append((segment, (seq, arrived, pos, len(frame), len(record[1]))))
                    acks[-1].append((seq, arrived))
                    pos += len(frame)
                    seq += 1
            self._write(fds[-1], frames)
        except BaseException:
            self._undo(fds, made)
            raise
        for fd in fds[:-1]:
            with suppress(OSError):  # synced already: nothing left to lose
                os.close(fd)
        self._fd, self._tail, self._last_arrived = fds[-1], segment, arrived
        with self._lock:
            self._segments.extend(made)
            for target, add in adds:
                target.add(*add)
            self._next_seq = seq
            self._changed.notify_all()
            watchers = self._wakeups.snapshot()
        for request, its_acks in zip(batch, acks, strict=True):
            request.acks = its_acks
        Wakeups.tell(watchers, True)

    def _write(self, fd: int, frames: list[bytes]) -> None:
        if not frames:
            return
        view = memoryview(b"".join(frames))
        while view:
            view = view[os.write(fd, view):]
        if self._fsync:
            _fdatasync(fd)

    def _undo(self, fds: list[int], made: list[_Segment]) -> None:
        """Take a failed batch back off the disk, so the files hold only published frames."""
        try:
            for fd in fds[1:]:
                os.close(fd)
            for segment in made:
                segment.path.unlink(missing_ok=True)
            os.ftruncate(self._fd, self._tail.size)
        except OSError as exc:
            self._broken = str(exc)
            log.error("stream log %s: a failed write could not be undone: %s", self._folder, exc)

    # -- reading -----------------------------------------------------------------------------

    def read(self, start_seq: int, *, limit: int = 10_000,
             max_bytes: int = 10 << 20) -> list[Record]:
        """Records from ``start_seq`` on (or from the oldest kept one, if later), in order and
        without gaps: at most ``limit`` of them and about ``max_bytes`` of data, but at least
        one if any exists."""
        if limit < 1:
            raise Invalid(f"limit must be at least 1, not {limit}")
        out: list[Record] = []
        seq, budget = start_seq, max_bytes
        while True:
            with self._lock:
                self._check_open()
                end, first = self._next_seq, self._first_seq()
                if seq < first:
                    if out:  # trimmed under this read: stop here, so a read has no gaps
                        return out
                    seq = first
                if seq >= end:
                    return out
                i = max(bisect_right(self._segments, seq, key=lambda s: s.first_seq) - 1, 0)
                segment = self._segments[i]
                offset, stop = segment.offset_of(seq), segment.size
                following = (self._segments[i + 1].first_seq if i + 1 < len(self._segments)
                             else end)
            try:
                got, full = _read_span(self._local(segment), offset, stop, seq, end,
                                       limit - len(out), budget, bool(out))
            except FileNotFoundError:
                self._trimmed(segment)
                continue
            out += got
            budget -= sum(len(r.data) for r in got)
            if full:
                return out
            seq = following

    def seq_at(self, when: float) -> int:
        """The first kept record's seq that arrived at ``when`` or later (next_seq if none)."""
        while True:
            with self._lock:
                self._check_open()
                segment = next((s for s in self._segments
                                if s.records and s.last_arrived >= when), None)
                if segment is None:
                    return self._next_seq
                if segment.index_arrived[0] >= when:
                    return segment.index_seq[0]
                offset, stop = segment.offset_at(when), segment.size
            try:
                return _first_at(self._local(segment), offset, stop, when)
            except FileNotFoundError:
                self._trimmed(segment)

    def _local(self, segment: _Segment) -> Path:
        """The segment's file here: its own, or an archived one's fetched copy."""
        if segment.archived:
            assert self._archive is not None
            try:
                return self._archive.fetch(segment.path.name)
            except FileNotFoundError:  # not a race to retry: storage lost it
                raise CumuloError(f"archived stream log segment {segment.path.name} of "
                                  f"{self._folder} is missing in storage") from None
        return segment.path

    def _trimmed(self, segment: _Segment) -> None:
        """A segment's file was gone: fine if trim took it or archived it meanwhile, a fault
        otherwise."""
        with self._lock:
            self._check_open()
            if segment in self._segments and not segment.archived:
                raise CumuloError(f"stream log segment {segment.path} is missing")

    def _first_seq(self) -> int:
        return next((s.index_seq[0] for s in self._segments if s.records), self._next_seq)

    @property
    def first_seq(self) -> int:
        """The oldest kept record's seq (next_seq when none is kept)."""
        with self._lock:
            return self._first_seq()

    @property
    def next_seq(self) -> int:
        """The seq the next record appended will get."""
        with self._lock:
            return self._next_seq

    def wait(self, after_seq: int, timeout: float) -> bool:
        """Block until a record with a seq past ``after_seq`` exists (True) or ``timeout``
        seconds pass, the log closes or :meth:`nudge` is called (False)."""
        with self._changed:
            self._wakeups.wait_until(lambda: self._next_seq > after_seq + 1 or self._closed,
                                     timeout)
            return self._next_seq > after_seq + 1

    def watch(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """See :meth:`Wakeups.watch`: what waits without a thread stands on this."""
        return self._wakeups.watch(callback)

    def nudge(self) -> None:
        """Wake what waits though no record came (the shard was closed by a split or merge:
        a subscriber or a long poll at its end is done)."""
        self._wakeups.nudge()

    # -- retention and life ------------------------------------------------------------------

    def trim(self, before: float) -> int:
        """Drop the oldest segments whose every record arrived before ``before`` (never the
        active one); return how many records went. With an archive, then move the sealed
        segments older than its ``after`` to it."""
        with self._lock:
            self._check_open()
            dropped: list[_Segment] = []
            while len(self._segments) > 1 and self._segments[0].last_arrived < before:
                dropped.append(self._segments.pop(0))
        for segment in dropped:
            if segment.archived:
                assert self._archive is not None
                self._archive.drop(segment.path.name)
                segment.path.with_suffix(".arc").unlink(missing_ok=True)
            else:
                segment.path.unlink(missing_ok=True)
        if self._archive is not None:
            self._move_old(time.time() - self._archive.after)
        return sum(s.records for s in dropped)

    def _move_old(self, before: float) -> None:
        """Archive sealed segments whose newest record arrived before ``before``: copied to
        storage, their stub written and synced, then their file removed (a crash between
        leaves both: opening keeps the stub). The in-memory index stays good: the archived
        file is the same bytes."""
        assert self._archive is not None
        with self._lock:
            old = [s for s in self._segments[:-1]
                   if not s.archived and s.records and s.last_arrived < before]
        for segment in old:
            self._archive.put(segment.path, segment.path.name)
            stub = segment.path.with_suffix(".arc")
            self._archive.put_stub(stub.name, _stub(segment))
            tmp = stub.with_suffix(".arc-tmp")
            tmp.write_bytes(_stub(segment))
            if self._fsync:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, stub)
            if self._fsync:
                _sync_folder(self._folder)
            with self._lock:
                segment.archived = True
            segment.path.unlink(missing_ok=True)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"records": sum(s.records for s in self._segments),
                    "bytes": sum(s.data_bytes for s in self._segments),
                    "first_seq": self._first_seq(), "next_seq": self._next_seq,
                    "segments": len(self._segments)}

    def _check_open(self) -> None:
        if self._closed:
            raise Conflict(f"the stream log in {self._folder} is closed")

    def close(self) -> None:
        with self._queue:
            if self._closed:
                return
            self._closed = True
            while self._writing:
                self._queue.wait()
            self._queue.notify_all()  # those still queued give up
        os.close(self._fd)
        with self._changed:
            self._changed.notify_all()
            watchers = self._wakeups.snapshot()
        Wakeups.tell(watchers, False)

    def delete(self) -> None:
        """Close the log and remove its folder."""
        self.close()
        shutil.rmtree(self._folder, ignore_errors=True)


class Wakeups:
    """Who waits for a shard's new records, in either log backend: threads in a long poll
    (:meth:`wait_until`, under the shard's condition) and callbacks (a push subscription on
    the server's event loop, :meth:`watch`). A publish of appended records notifies the
    condition and calls :meth:`tell` with :meth:`snapshot`'s watchers; :meth:`nudge` (a
    split or merge closed the shard) ends both kinds of wait though no record came."""

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self._watchers: list[Callable[[bool], None]] = []
        self._nudges = 0

    def watch(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(True)`` each time appended records are published (from the thread
        that wrote them: it must be quick and must not block), ``callback(False)`` when the
        log closes or is nudged. Returns what stops it."""
        with self._changed:
            self._watchers.append(callback)

        def stop() -> None:
            with self._changed, suppress(ValueError):
                self._watchers.remove(callback)

        return stop

    def snapshot(self) -> tuple[Callable[[bool], None], ...]:
        """The watchers now (the caller holds the condition); to :meth:`tell` outside it."""
        return tuple(self._watchers)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Wait (holding the condition) until ``ready()``, a nudge, or ``timeout``."""
        nudges = self._nudges
        self._changed.wait_for(lambda: ready() or self._nudges != nudges, timeout)

    def nudge(self) -> None:
        with self._changed:
            self._nudges += 1
            self._changed.notify_all()
            watchers = self.snapshot()
        self.tell(watchers, False)

    @staticmethod
    def tell(watchers: Sequence[Callable[[bool], None]], appended: bool) -> None:
        for callback in watchers:
            try:
                callback(appended)
            except Exception:  # the records are durable whatever a watcher does
                log.exception("a stream log watcher failed")


def _read_span(path: Path, offset: int, stop: int, start: int, end: int, limit: int,
               budget: int, have: bool) -> tuple[list[Record], bool]:
    """Records ``start <= seq < end`` from one segment, walking from ``offset`` to ``stop``;
    and whether ``limit`` or ``budget`` (bytes of data) ran out."""
    out: list[Record] = []
    with open(path, "rb", buffering=1 << 16) as f:
        f.seek(offset)
        pos = offset
        while pos < stop:
            body = _read_body(f)
            if body is None:
                raise CumuloError(f"stream log segment {path} is corrupt at byte {pos}")
            pos += _HEADER.size + len(body)
            seq = _SEQ_ARRIVED.unpack_from(body)[0]
            if seq < start:
                continue
            if seq >= end:
                break
            record = _decode(body)
            if len(record.data) > budget and (out or have):
                return out, True
            budget -= len(record.data)
            out.append(record)
            if len(out) >= limit:
                return out, True
    return out, False


def _first_at(path: Path, offset: int, stop: int, when: float) -> int:
    with open(path, "rb", buffering=1 << 16) as f:
        f.seek(offset)
        pos = offset
        while pos < stop:
            body = _read_body(f)
            if body is None:
                break
            seq, arrived = _SEQ_ARRIVED.unpack_from(body)
            if arrived >= when:
                return int(seq)
            pos += _HEADER.size + len(body)
    raise CumuloError(f"stream log segment {path} is corrupt before byte {stop}")


_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class LogStore:
    """ShardLogs under one root folder, by (stream, shard id); opened lazily, cached."""

    url = ""  # the streams_url setting that chooses this backend (backend.py)

    def __init__(self, root: Path, *, fsync: bool = True,
                 archive: Archives | None = None) -> None:
        self._root = Path(root)
        self._fsync = fsync
        self._archive = archive
        self._logs: dict[tuple[str, str], ShardLog] = {}
        self._lock = threading.Lock()

    def shard(self, stream: str, shard: str) -> ShardLog:
        with self._lock:
            opened = self._logs.get((stream, shard))
            if opened is None:
                archive = None if self._archive is None else self._archive.shard(stream, shard)
                opened = ShardLog(self._folder(stream) / _part(shard), fsync=self._fsync,
                                  archive=archive)
                self._logs[stream, shard] = opened
            return opened

    def drop_stream(self, stream: str) -> None:
        """Close the stream's shard logs and delete their folders."""
        with self._lock:
            for key in [k for k in self._logs if k[0] == stream]:
                self._logs.pop(key).close()
            shutil.rmtree(self._folder(stream), ignore_errors=True)
        if self._archive is not None:
            self._archive.drop_stream(stream)

    def close(self) -> None:
        with self._lock:
            for opened in self._logs.values():
                opened.close()
            self._logs.clear()

    def _folder(self, stream: str) -> Path:
        return self._root / _part(stream)


def _part(name: str) -> str:
    if not _PART.fullmatch(name) or name in (".", ".."):
        raise Invalid(f"{name!r} cannot name a stream log folder: use 1 to 128 letters, "
                      "digits, '_', '.' or '-'")
    return name
