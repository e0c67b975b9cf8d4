"""The control plane's way to its replicas: keep-alive HTTP/1.1 connections, kept per address,
on plain asyncio streams.

``/endpoints/NAME/invocations`` on the control plane adds a hop in front of a replica that
answers in well under a millisecond, so the hop must cost little: a general HTTP client spends
more on a request (its models of URLs, headers and streams, its connection pool's bookkeeping)
than the replica spends scoring it. A replica speaks a known, small HTTP/1.1 (one answer per
request, with Content-Length, or chunked as Ray Serve's proxy may send it), so this client is
an asyncio protocol: it writes one buffer, httptools parses the answer as it arrives, and the
request waits on one future. Deadlines are kept by one timer per forwarder that looks at the
requests in flight a few times a second, not one timer per request.

A connection that sat idle may have been closed by the replica (it closes idle ones after its
keep-alive), so a request that fails on a reused connection before any answer came is sent
once more on a new one; on a new connection a failure is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import httptools

__all__ = ["Forwarder", "ReplicaGone"]

_IDLE_S = 15.0  # under the replicas' keep-alive (30 s), so they seldom close one under us
_HEAD_LIMIT = 64 * 1024


class ReplicaGone(Exception):
    """The replica could not be reached, or went away before it answered."""


class _Stale(Exception):
    """The connection failed before any answer came."""


class _Conn(asyncio.Protocol):
    """One kept-alive connection to a replica, one request at a time."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.used = time.monotonic()
        self.deadline = 0.0
        self.waiter: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] | None = None
        self.lost = False
        self._reset()

    def _reset(self) -> None:
        self.received = False
        self.head_bytes = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ if isinstance(exc.__context__, ReplicaGone)
                       else ReplicaGone(f"the replica's answer could not be read: {exc}"))
        except httptools.HttpParserError as exc:
            self._fail(ReplicaGone(f"the replica answered something that is not HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.received:
            self._fail(_Stale())
        else:
            self._fail(ReplicaGone(f"the replica at {self.address[0]}:{self.address[1]} went "
                                   f"away while answering: {exc or 'connection closed'}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > _HEAD_LIMIT:
            raise ReplicaGone("the replica's answer head is too large")
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            status = self.parser.get_status_code()
            headers = [(k, v) for k, v in self.headers
                       if k not in ("content-length", "transfer-encoding", "connection")]
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            if not self.parser.should_keep_alive():
                self.lost = True  # not to be used again
            waiter.set_result((status, headers, body))

    def _fail(self, exc: BaseException) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, request: bytes, deadline: float
             ) -> asyncio.Future[tuple[int, list[tuple[str, str]], bytes]]:
        assert self.transport is not None
        self._reset()
        self.deadline = deadline
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def timed_out(self, timeout: float) -> None:
        self._fail(ReplicaGone(f"the replica at {self.address[0]}:{self.address[1]} did not "
                               f"answer in {timeout:.0f}s"))

    def usable(self, now: float) -> bool:
        return (not self.lost and self.transport is not None
                and not self.transport.is_closing() and now - self.used < _IDLE_S)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


class Forwarder:
    def __init__(self, *, timeout: float = 120.0, connect_timeout: float = 5.0,
                 idle_per_address: int = 256) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle_per_address = idle_per_address
        self._idle: dict[tuple[str, int], deque[_Conn]] = {}
        self._busy: set[_Conn] = set()
        self._watch: asyncio.TimerHandle | None = None
        self._swept = time.monotonic()

    async def post(self, host: str, port: int, path: str, headers: list[tuple[str, str]],
                   body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """POST ``body`` to ``http://host:port/path``; the answer's status, headers and body."""
        head = [f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Length: {len(body)}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers)
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        address = (host, port)
        conn = self._take(address)
        if conn is not None:
            try:
                return await self._exchange(conn, request)
            except _Stale:
                pass  # closed while idle: once more, on a new connection
        conn = await self._open(address)
        try:
            return await self._exchange(conn, request)
        except _Stale as exc:
            raise ReplicaGone(f"the replica at {host}:{port} closed the connection before "
                              "answering") from exc

    def _take(self, address: tuple[str, int]) -> _Conn | None:
        now = time.monotonic()
        if now - self._swept > _IDLE_S:
            self._sweep(now)
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _open(self, address: tuple[str, int]) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(address), *address), self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise ReplicaGone(f"cannot reach the replica at {address[0]}:{address[1]}: "
                              f"{exc or type(exc).__name__}") from exc
        return conn

    async def _exchange(self, conn: _Conn, request: bytes
                        ) -> tuple[int, list[tuple[str, str]], bytes]:
        self._busy.add(conn)
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self._tick, self._check)
        try:
            answer = await conn.send(request, time.monotonic() + self.timeout)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if conn.lost:
            conn.close()
        else:
            conn.used = time.monotonic()
            idle = self._idle.setdefault(conn.address, deque())
            if len(idle) < self.idle_per_address:
                idle.append(conn)
            else:
                conn.close()
        return answer

    @property
    def _tick(self) -> float:
        return min(1.0, self.timeout / 4)

    def _check(self) -> None:
        """Fail the requests past their deadline; look again while any are in flight."""
        now = time.monotonic()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn.timed_out(self.timeout)
        self._watch = (asyncio.get_running_loop().call_later(self._tick, self._check)
                       if self._busy else None)

    def _sweep(self, now: float) -> None:
        """Close connections idle too long, those to replicas that are gone included (their
        addresses are never asked for again)."""
        self._swept = now
        for address, idle in list(self._idle.items()):
            while idle and now - idle[0].used >= _IDLE_S:
                idle.popleft().close()
            if not idle:
                del self._idle[address]

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
