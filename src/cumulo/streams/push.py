"""Push subscriptions: a shard's records sent down one open HTTP answer as they are written,
for Kinesis's SubscribeToShard (enhanced fan-out) and the SDK's ``client.streams.subscribe``.

An open subscription holds no thread while it waits: the shard's log calls back when an append
is published (``ShardStore.watch``), which wakes the subscription on the server's event loop;
its reads run on a few threads of their own (a limiter apart from the routes'), so that puts
filling the routes' threads do not hold subscribers back. A subscription sends a page at least
every :data:`HEARTBEAT` seconds (empty when nothing came: the caller learns it is alive, the
server that the caller is), and ends after :data:`SESSION_SECONDS` as Kinesis's does: the
caller subscribes again from the last page's position. The server keeps at most
``stream_subscriptions`` open (:class:`Subscriptions`); past that a new one is refused
(:class:`SubscriptionLimit`: 503 with Retry-After; Kinesis's LimitExceededException).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Hashable
from dataclasses import dataclass

import anyio
from anyio import CapacityLimiter, to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cumulo.errors import Conflict, NotFound, Unavailable
from cumulo.streams.backend import ShardStore
from cumulo.streams.log import Record

__all__ = ["HEARTBEAT", "SESSION_SECONDS", "Follower", "Page", "PushResponse",
           "SubscriptionLimit", "Subscriptions", "respond", "wait"]

log = logging.getLogger("cumulo.streams")

SESSION_SECONDS = 300.0  # a subscription's life, as Kinesis's
HEARTBEAT = 5.0  # a page at least this often, records or none
READ_RECORDS = 10_000  # records in one page, at most
READ_BYTES = 4 << 20  # and about this much data (a record over it comes alone)
_READERS = 8  # threads reading for subscriptions at once
_RETRY_AFTER = 5.0


class SubscriptionLimit(Unavailable):
    """The server holds as many open subscriptions as it may."""


class Subscriptions:
    """The server's open subscriptions: at most ``limit`` at once, and one at a time for each
    key that is given (Kinesis's: a registered consumer on a shard)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open = 0
        self._keys: set[Hashable] = set()
        self._following: dict[Hashable, Follower] = {}  # keyed subscriptions, for ``show``
        self._readers: CapacityLimiter | None = None

    @property
    def open(self) -> int:
        return self._open

    def acquire(self, key: Hashable | None = None) -> Callable[[], None]:
        """Take a place (raises :class:`SubscriptionLimit` when none is left, and
        :class:`Conflict` when ``key`` holds one already); returns what gives it back (once,
        however often it is called)."""
        with self._lock:
            if self._open >= self.limit:
                raise SubscriptionLimit(
                    f"the server has {self.limit} subscriptions open, as many as it keeps (the "
                    "setting stream_subscriptions): retry later, or read with GetRecords",
                    details={"limit": self.limit}, retry_after=_RETRY_AFTER)
            if key is not None and key in self._keys:
                raise Conflict("this consumer has a subscription to this shard open already: "
                               "one at a time (end it, or wait a few seconds after it ended)")
            self._open += 1
            if key is not None:
                self._keys.add(key)
        given_back = threading.Event()

        def release() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                self._open -= 1
                self._keys.discard(key)
                self._following.pop(key, None)

        return release

    def follow(self, key: Hashable, follower: Follower) -> None:
        """Say which follower reads for ``key`` (taken with :meth:`acquire`), so that ``show``
        can tell how far it is."""
        with self._lock:
            if key in self._keys:  # not given back already
                self._following[key] = follower

    def following(self, key: Hashable) -> Follower | None:
        """The follower reading for ``key`` now, if a subscription under it is open."""
        with self._lock:
            return self._following.get(key)

    def readers(self) -> CapacityLimiter:
        """The limiter that subscriptions' reads run under (made on the event loop)."""
        if self._readers is None:
            self._readers = CapacityLimiter(_READERS)
        return self._readers


@dataclass(frozen=True)
class Page:
    records: list[Record]
    next_seq: int  # the next record to read: the position is next_seq - 1
    millis_behind: int  # from the last record of the page to the shard's newest
    ended: bool = False  # the shard is closed and read to its end: no page comes after


class Follower:
    """The pages of one shard's records from ``start`` on, as they are written, for up to
    ``seconds``. ``closed`` says (from a thread: it may ask the database) whether the shard
    was closed by a split or merge, and raises when what is read is gone; it is asked at the
    start, when the log is nudged and at least every heartbeat, and once it says so and every
    record is read, a last page ``ended``."""

    def __init__(self, shard_log: ShardStore, start: int, *, closed: Callable[[], bool],
                 readers: CapacityLimiter, seconds: float = SESSION_SECONDS,
                 heartbeat: float = HEARTBEAT) -> None:
        self._log = shard_log
        self._start = self.start = start
        self._closed = closed
        self._readers = readers
        self._seconds = seconds
        self._heartbeat = heartbeat
        self._nudge = asyncio.Event()
        self._stopped = False
        self._recheck = True
        self.position: int | None = None  # the last record sent (None: none yet)
        self.millis_behind = 0  # of the last page sent

    def stop(self) -> None:
        """End the pages (the caller went away). On the event loop."""
        self._stopped = True
        self._nudge.set()

    async def pages(self) -> AsyncGenerator[Page, None]:
        loop = asyncio.get_running_loop()
        nudge = self._nudge

        def wake(appended: bool) -> None:  # on the appending thread
            if not appended:
                self._recheck = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(nudge.set)

        unwatch = self._log.watch(wake)
        deadline = loop.time() + self._seconds
        seq, sent, asked = self._start, loop.time(), loop.time()
        closed = False  # once closed, a shard takes no record again
        try:
            while not self._stopped and loop.time() < deadline:
                if not closed and (self._recheck or loop.time() - asked >= self._heartbeat):
                    # At the start, when nudged, and every heartbeat even while records flow
                    # (it also raises once the shard, or what reads it, is gone).
                    self._recheck, asked = False, loop.time()
                    closed = await to_thread.run_sync(self._closed, limiter=self._readers)
                nudge.clear()  # before reading: an append from now on wakes the wait below
                page = await self._read(seq)
                if page.records:
                    seq = page.next_seq
                    self.position, self.millis_behind = seq - 1, page.millis_behind
                    yield page
                    sent = loop.time()
                    continue
                if closed:  # and read to its end: every record came before the close
                    yield Page([], seq, 0, ended=True)
                    return
                now = loop.time()
                if now - sent >= self._heartbeat:
                    yield Page([], seq, 0)
                    sent = now
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(deadline, sent + self._heartbeat,
                                                   asked + self._heartbeat) - now):
                        await nudge.wait()
        finally:
            unwatch()

    async def _read(self, seq: int) -> Page:
        records, behind = await to_thread.run_sync(_read, self._log, seq,
                                                   limiter=self._readers)
        return Page(records, records[-1].seq + 1 if records else seq, behind)


async def wait(shard_log: ShardStore, after_seq: int, timeout: float) -> bool:
    """``ShardStore.wait`` without a thread: on the event loop, until a record past
    ``after_seq`` exists (True), or ``timeout`` seconds pass, or the log closes or is nudged
    (False unless a record came too)."""
    loop = asyncio.get_running_loop()
    nudge = asyncio.Event()
    poked = False

    def wake(appended: bool) -> None:
        nonlocal poked
        poked = poked or not appended
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(nudge.set)

    unwatch = shard_log.watch(wake)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while shard_log.next_seq <= after_seq + 1 and not poked:
                    await nudge.wait()
                    nudge.clear()
        return shard_log.next_seq > after_seq + 1
    finally:
        unwatch()


def _read(shard_log: ShardStore, seq: int) -> tuple[list[Record], int]:
    try:
        records = shard_log.read(seq, limit=READ_RECORDS, max_bytes=READ_BYTES)
        if not records:
            return [], 0
        newest = shard_log.next_seq - 1
        behind = 0
        if records[-1].seq < newest:
            last = shard_log.read(newest, limit=1)
            if last:
                behind = max(0, int((last[0].arrived - records[-1].arrived) * 1000))
        return records, behind
    except Conflict:  # the log was closed under the subscription
        raise NotFound("the stream was deleted while subscribed to (or the server is "
                       "stopping)") from None


async def respond(send: Send, receive: Receive, follower: Follower, *, content_type: str,
                  page: Callable[[Page], bytes], fail: Callable[[Exception], bytes],
                  head: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer 200 and send ``head``, then each page of ``follower`` as ``page`` writes it;
    an error after the answer started is sent as ``fail`` writes it, and ends the answer. The
    answer ends when the follower does or the caller goes away."""
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type.encode()), (b"cache-control", b"no-store"),
        *(headers or [])]})

    async def listen() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        follower.stop()

    tail: bytes | None = b""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listen)
        try:
            if head:
                await send({"type": "http.response.body", "body": head, "more_body": True})
            async with contextlib.aclosing(follower.pages()) as pages:
                async for each in pages:
                    await send({"type": "http.response.body", "body": page(each),
                                "more_body": True})
        except OSError:  # the caller went away
            tail = None
        except Exception as exc:
            if not isinstance(exc, NotFound):
                log.exception("a stream subscription failed")
            tail = fail(exc)
        tasks.cancel_scope.cancel()
    if tail is not None:
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": tail, "more_body": False})


class PushResponse(Response):
    """What a route returns to answer with a subscription: :func:`respond`, then the
    subscription's place given back (``release``, from :meth:`Subscriptions.acquire`)."""

    def __init__(self, follower: Follower, release: Callable[[], None], *, content_type: str,
                 page: Callable[[Page], bytes], fail: Callable[[Exception], bytes]) -> None:
        super().__init__(status_code=200, media_type=content_type)
        self._follower, self._release = follower, release
        self._page, self._fail = page, fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await respond(send, receive, self._follower, content_type=str(self.media_type),
                          page=self._page, fail=self._fail)
        finally:
            self._release()
