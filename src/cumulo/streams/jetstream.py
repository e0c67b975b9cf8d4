"""Streams on NATS JetStream (``streams_url = nats://HOST:4222``): the records of each Cumulo
shard in a JetStream stream of their own, so they outlive the control plane and any control
plane that reaches the same NATS serves them.

A shard of stream ``clicks`` is the JetStream stream ``CUMULO__clicks__shardId-000000000000``
on the subject ``cumulo.clicks.shardId-000000000000`` (``_`` and ``.`` in names are escaped as
``_5F`` and ``_2E``), kept in files. A record's sequence is the JetStream stream sequence, which
starts at 1 and grows by one a message as the embedded log's does, so the sequence numbers the
API shows mean the same with either backend. The partition key, hash key and arrival time ride
in message headers.

A put returns once JetStream's PubAck for every record came back: the message is stored by
the server (on one server: written to its file store, which JetStream fsyncs on an interval,
two minutes by default, so it survives the control plane's and the NATS process's death but
not a power cut within that window; nats-server 2.10+ can set ``sync_interval: always``; in a
cluster with replicas: stored by a quorum). Retention is JetStream's ``max_age`` plus a
purge on each retention pass.

nats-py is asyncio: one event loop runs in a thread of its own and the thread-safe methods
here hand it their work (:func:`asyncio.run_coroutine_threadsafe`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from cumulo.errors import CumuloError, Invalid, NotFound, Unavailable
from cumulo.streams.log import Record, Wakeups

__all__ = ["JetStreamShard", "JetStreamStore"]

log = logging.getLogger("cumulo.streams")
T = TypeVar("T")

_KEY, _HASH, _ARRIVED = "Cumulo-Key", "Cumulo-Hash", "Cumulo-Arrived"
_TIMEOUT = 10.0  # seconds a JetStream request may take
_CHUNK = 256  # messages a fetch asks for at once
_DIRECT_READS = 8  # reads of at most this many records get them one by one (no consumer)
_MAX_RECORD = 8 << 20  # nats-server's max_payload must allow a 1 MiB record and its headers


def _token(name: str) -> str:
    """A name as one subject token / part of a stream name: ``_`` and ``.`` escaped, so
    different names never meet and ``__`` can separate parts."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", name):
        raise Invalid(f"{name!r} cannot name a JetStream stream: use 1 to 128 letters, digits, "
                      "'_', '.' or '-'")
    return name.replace("_", "_5F").replace(".", "_2E")


def _missing(url: str) -> CumuloError:
    return CumuloError(f"streams_url is {url}, which needs the nats-py package: "
                       "pip install 'cumulo[streams-nats]'")


class _Loop:
    """An asyncio event loop in a daemon thread, for nats-py."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="streams-nats")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = _TIMEOUT + 5) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel() -> None:
            mine = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not mine]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with suppress(Exception):
            self.run(cancel(), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class JetStreamStore:
    """Shards as JetStream streams on the NATS at ``url``; connects on first use (a NATS that
    is down fails the streams calls with Unavailable, not the server's start)."""

    def __init__(self, url: str) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise _missing(url) from None
        self.url = url
        self._loop = _Loop()
        self._nc: Any = None
        self._js: Any = None
        self._connecting = asyncio.Lock()
        self._shards: dict[tuple[str, str], JetStreamShard] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- the bridge --------------------------------------------------------------------------

    def call(self, make: Callable[[Any], Coroutine[Any, Any, T]], what: str) -> T:
        """Run ``make(jetstream)`` on the loop; NATS's failures become Unavailable naming the
        URL and what to check."""
        if self._closed:
            raise Unavailable("the streams' JetStream backend is closed")
        return self._loop.run(self._call(make, what))

    async def _call(self, make: Callable[[Any], Coroutine[Any, Any, T]], what: str) -> T:
        import nats.errors
        import nats.js.errors

        try:
            js = await self._connect()
            return await make(js)
        except nats.js.errors.NotFoundError as exc:
            raise NotFound(f"{what}: JetStream has no such stream or message ({exc})") from None
        except nats.js.errors.ServiceUnavailableError:
            raise Unavailable(f"{what}: JetStream at {self.url} is unavailable: start "
                              "nats-server with JetStream enabled (-js) and enough storage "
                              "(-sd DIR)") from None
        except nats.js.errors.APIError as exc:
            raise Unavailable(f"{what}: JetStream at {self.url} refused: {exc}") from None
        except nats.errors.MaxPayloadError as exc:
            raise Unavailable(f"{what}: a record is larger than NATS at {self.url} takes "
                              f"({exc}): raise nats-server's max_payload to 2MB for Kinesis's "
                              "1 MiB records") from None
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise Unavailable(f"{what}: no answer from JetStream at {self.url} "
                              f"({type(exc).__name__}): check that nats-server runs there "
                              "with JetStream enabled (-js)") from None
        except (nats.errors.Error, OSError) as exc:
            raise Unavailable(f"{what}: cannot reach NATS at {self.url} (streams_url): {exc}; "
                              "check that nats-server runs there with -js and that this "
                              "machine can connect to it") from None

    async def _connect(self) -> Any:
        async with self._connecting:
            if self._nc is not None and not self._nc.is_closed:
                if not self._nc.is_connected:
                    # Reconnecting: fail now rather than queue records that a caller, told of
                    # a timeout, would put again once NATS is back.
                    raise Unavailable(f"NATS at {self.url} (streams_url) is unreachable, "
                                      "reconnecting: check that nats-server runs there; try "
                                      "again shortly")
                return self._js
            import nats

            # Few tries on the first connect: an unreachable URL fails this call in seconds.
            # Once connected, nats-py reconnects for ever in the background.
            nc = await nats.connect(self.url, connect_timeout=2, allow_reconnect=True,
                                    max_reconnect_attempts=1, reconnect_time_wait=0.5,
                                    error_cb=self._on_error,
                                    disconnected_cb=self._on_disconnected,
                                    reconnected_cb=self._on_reconnected)
            nc.options["max_reconnect_attempts"] = -1
            self._nc = nc
            self._js = self._nc.jetstream(timeout=_TIMEOUT)
            return self._js

    async def _on_error(self, exc: Exception) -> None:
        log.debug("streams: NATS at %s: %s", self.url, exc)  # each reconnect try: quiet

    async def _on_disconnected(self) -> None:
        log.warning("streams: lost NATS at %s; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.warning("streams: NATS at %s is back", self.url)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop.loop)

    @property
    def nc(self) -> Any:
        return self._nc

    # -- LogBackend --------------------------------------------------------------------------

    def shard(self, stream: str, shard: str) -> JetStreamShard:
        with self._lock:
            opened = self._shards.get((stream, shard))
            if opened is None:
                opened = JetStreamShard(self, stream, shard)
                self._shards[stream, shard] = opened
            return opened

    def drop_stream(self, stream: str) -> None:
        with self._lock:
            for key in [k for k in self._shards if k[0] == stream]:
                self._shards.pop(key).close()
        prefix = f"CUMULO__{_token(stream)}__"

        async def drop(js: Any) -> None:
            offset = 0
            names: list[str] = []
            while True:
                answer = json.loads((await self._nc.request(
                    "$JS.API.STREAM.NAMES", json.dumps(
                        {"offset": offset, "subject": f"cumulo.{_token(stream)}.*"}).encode(),
                    timeout=_TIMEOUT)).data)
                got = answer.get("streams") or []
                names += [n for n in got if n.startswith(prefix)]
                offset += len(got)
                if not got or offset >= answer.get("total", 0):
                    break
            for name in names:
                with suppress(Exception):
                    await js.delete_stream(name)

        self.call(drop, f"deleting stream {stream!r}'s shards")

    def close(self) -> None:
        with self._lock:
            for opened in self._shards.values():
                opened.close()
            self._shards.clear()
        if self._closed:
            return
        self._closed = True
        if self._nc is not None:
            with suppress(Exception):
                self._loop.run(self._nc.close(), 5)
        self._loop.stop()


class JetStreamShard:
    """One Cumulo shard as one JetStream stream (see the module's docstring). Thread-safe."""

    def __init__(self, store: JetStreamStore, stream: str, shard: str) -> None:
        self._store = store
        self.name = f"CUMULO__{_token(stream)}__{_token(shard)}"
        self.subject = f"cumulo.{_token(stream)}.{_token(shard)}"
        self._what = f"stream {stream!r} shard {shard}"
        self._made = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seen = 0  # the newest seq the tail saw stored
        self._last_arrived = 0.0
        self._wakeups = Wakeups(self._changed)
        self._tail: Any = None  # the ordered consumer that tells of new records
        self._tailing = False
        self._closed = False

    def _call(self, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        if not self._made:
            self._store.call(self._ensure, f"opening {self._what}")
            self._made = True
        return self._store.call(make, self._what)

    async def _ensure(self, js: Any) -> None:
        import nats.js.errors
        from nats.js.api import DiscardPolicy, StorageType, StreamConfig

        try:
            await js.add_stream(StreamConfig(
                name=self.name, subjects=[self.subject], storage=StorageType.FILE,
                discard=DiscardPolicy.OLD, allow_direct=True, max_msg_size=_MAX_RECORD,
                description="a Cumulo stream shard"))
        except nats.js.errors.BadRequestError as exc:
            # 10058: it exists with another config: made before, and its max_age set since
            if exc.err_code != 10058:
                raise

    async def _state(self, js: Any) -> tuple[int, int, int, int]:
        """first seq, next seq, messages, bytes."""
        info = await js.stream_info(self.name)
        state = info.state
        following = state.last_seq + 1
        first = state.first_seq if state.messages else following
        return max(first, 1), following, state.messages, state.bytes

    @property
    def first_seq(self) -> int:
        return self._call(self._state)[0]

    @property
    def next_seq(self) -> int:
        return self._call(self._state)[1]

    def stats(self) -> dict[str, int]:
        first, following, messages, size = self._call(self._state)
        return {"records": messages, "bytes": size, "first_seq": first, "next_seq": following}

    # -- appending ---------------------------------------------------------------------------

    def append(self, records: Sequence[tuple[str, bytes, int]]) -> list[tuple[int, float]]:
        """Publish the records in order and wait for every PubAck. When NATS fails part way,
        the records acknowledged before stay (a retry may store them twice)."""
        prepared = []
        for key, data, hash_key in records:
            if not 0 <= hash_key < 1 << 128:
                raise Invalid(f"a hash key must be in [0, 2**128), not {hash_key}")
            prepared.append((quote(key, safe=""), bytes(data), str(hash_key)))
        if not prepared:
            return []
        with self._lock:
            arrived = self._last_arrived = max(time.time(), self._last_arrived)
        stamp = repr(arrived)

        async def publish(js: Any) -> list[int]:
            # Each publish queues its message before its first wait, so they go out, and are
            # given sequences, in this order.
            acks = await asyncio.gather(*(
                js.publish(self.subject, data, stream=self.name,
                           headers={_KEY: key, _HASH: hash_key, _ARRIVED: stamp})
                for key, data, hash_key in prepared))
            return [ack.seq for ack in acks]

        seqs = self._call(publish)
        self._saw(max(seqs), True)
        return [(seq, arrived) for seq in seqs]

    # -- reading -----------------------------------------------------------------------------

    def read(self, start_seq: int, *, limit: int = 10_000,
             max_bytes: int = 10 << 20) -> list[Record]:
        if limit < 1:
            raise Invalid(f"limit must be at least 1, not {limit}")

        async def read(js: Any) -> list[Record]:
            first, following, _, _ = await self._state(js)
            start = max(start_seq, first)
            if start >= following:
                return []
            end = min(following, start + limit)
            if end - start <= _DIRECT_READS:
                return await self._direct(js, start, end, max_bytes)
            return await self._fetch(js, start, end, max_bytes)

        return self._call(read)

    async def _direct(self, js: Any, start: int, end: int, budget: int) -> list[Record]:
        import nats.js.errors

        out: list[Record] = []
        for seq in range(start, end):
            try:
                msg = await js.get_msg(self.name, seq=seq, direct=True)
            except nats.js.errors.NotFoundError:
                if out:  # trimmed under this read: stop, so a read has no gaps
                    break
                continue
            record = _record(seq, msg.headers, msg.data)
            if len(record.data) > budget and out:
                break
            budget -= len(record.data)
            out.append(record)
        return out

    async def _fetch(self, js: Any, start: int, end: int, budget: int) -> list[Record]:
        """Records ``start <= seq < end`` through a short-lived pull consumer."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        sub = await js.pull_subscribe(self.subject, stream=self.name, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True))
        out: list[Record] = []
        try:
            while len(out) < end - start:
                msgs = await sub.fetch(min(_CHUNK, end - start - len(out)), timeout=_TIMEOUT)
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    if seq >= end:
                        return out
                    record = _record(seq, msg.headers, msg.data)
                    if len(record.data) > budget and out:
                        return out
                    budget -= len(record.data)
                    out.append(record)
                if not msgs:
                    break
        finally:
            with suppress(Exception):
                await js.delete_consumer(self.name, (await sub.consumer_info()).name)
            with suppress(Exception):
                await sub.unsubscribe()
        return out

    def seq_at(self, when: float) -> int:
        """A binary search over the arrival headers (they never go backwards within a
        shard written by one control plane)."""

        async def search(js: Any) -> int:
            import nats.js.errors

            low, high, _, _ = await self._state(js)  # the answer is in [low, high]
            while low < high:
                middle = (low + high) // 2
                try:
                    msg = await js.get_msg(self.name, seq=middle, direct=True)
                except nats.js.errors.NotFoundError:  # trimmed meanwhile
                    low = middle + 1
                    continue
                if float((msg.headers or {}).get(_ARRIVED, 0)) >= when:
                    high = middle
                else:
                    low = middle + 1
            return low

        return self._call(search)

    # -- waiting -----------------------------------------------------------------------------

    def _saw(self, seq: int, appended: bool) -> None:
        with self._changed:
            if seq > self._seen:
                self._seen = seq
            self._changed.notify_all()
            watchers = self._wakeups.snapshot()
        Wakeups.tell(watchers, appended)

    def _follow(self) -> None:
        """Start the tail once: an ordered consumer of new messages' headers, which tells of
        records stored by any control plane as JetStream stores them."""
        with self._lock:
            if self._tailing or self._closed:
                return
            self._tailing = True

        async def follow(js: Any) -> None:
            from nats.js.api import DeliverPolicy

            async def seen(msg: Any) -> None:
                self._saw(msg.metadata.sequence.stream, True)

            self._tail = await js.subscribe(self.subject, stream=self.name, cb=seen,
                                            ordered_consumer=True, headers_only=True,
                                            deliver_policy=DeliverPolicy.NEW)

        try:
            self._call(follow)
        except BaseException:
            with self._lock:
                self._tailing = False
            raise

    def wait(self, after_seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._follow()
        if self.next_seq > after_seq + 1:
            return True
        with self._changed:
            self._wakeups.wait_until(lambda: self._seen > after_seq or self._closed,
                                     max(0.0, deadline - time.monotonic()))
            return self._seen > after_seq

    def watch(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        self._follow()
        return self._wakeups.watch(callback)

    def nudge(self) -> None:
        self._wakeups.nudge()

    # -- retention and life ------------------------------------------------------------------

    def trim(self, before: float) -> int:
        """Purge what arrived before ``before`` and keep JetStream's max_age at the same age,
        so JetStream goes on dropping between passes."""
        cut = self.seq_at(before)
        age = max(1, round(time.time() - before))

        async def trim(js: Any) -> int:
            info = await js.stream_info(self.name)
            first = int(info.state.first_seq)
            if age >= 60 and abs((info.config.max_age or 0) - age) > 60:
                info.config.max_age = float(age)
                await js.update_stream(info.config)
            if cut <= first:
                return 0
            await js.purge_stream(self.name, seq=cut)
            return cut - first

        return self._call(trim)

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            watchers, tail = self._wakeups.snapshot(), self._tail
        if tail is not None and self._store.nc is not None:
            self._store.spawn(_quietly(tail.unsubscribe()))
        Wakeups.tell(watchers, False)

    def delete(self) -> None:
        self.close()
        self._store.call(lambda js: js.delete_stream(self.name), f"deleting {self._what}")


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    with suppress(Exception):
        await coro


def _record(seq: int, headers: dict[str, str] | None, data: bytes | None) -> Record:
    headers = headers or {}
    return Record(seq, float(headers.get(_ARRIVED, 0.0)), unquote(headers.get(_KEY, "")),
                  data or b"", int(headers.get(_HASH, 0)))
