"""The replica's HTTP/1.1 server: an asyncio protocol on httptools that calls the replica's
request path directly.

An ASGI server pays, for every request, a task, a scope dict, message dicts for the body and
each part of the answer, and the awaits between them: on a small model that is most of a
request's cost. Here a request is parsed by httptools' callbacks, handed whole to
:meth:`ReplicaApp.invoke <cumulo.serving.replica.ReplicaApp.invoke>`, and its answer written
as one buffer when its batch has been scored. The same :class:`ReplicaApp` is an ASGI app
too (Ray Serve runs it so).

What it does of HTTP/1.1: keep-alive (closed after ``keep_alive`` idle seconds), pipelined
requests (answered in order), ``Expect: 100-continue``, chunked request bodies, the body limit
(413 as soon as the declared or received size is over it, then the connection closes), a
request line over 8 KiB (414) and headers over 64 KiB or 100 fields (431), refused as soon as
they pass the limit, malformed requests (400, then close). On :meth:`Server.shutdown` it stops
accepting, closes idle connections, and gives requests in flight ``grace`` seconds to be
answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from http import HTTPStatus
from typing import cast

import httptools

from cumulo.httplimits import HeadCounter, TooLong, limit_passed
from cumulo.serving.replica import ReplicaApp, _error_body, _HTTPError, too_large

__all__ = ["Server"]

log = logging.getLogger("cumulo.serving")

MAX_PIPELINED = 64  # answers a connection may owe before it is read again

def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


class Server:
    """Serves one :class:`ReplicaApp` on a listening socket the caller owns."""

    def __init__(self, app: ReplicaApp, *, keep_alive: float = 30.0) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.connections: set[_Connection] = set()
        self._heads: dict[tuple[int, str | None, bool, bool], bytes] = {}
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def head(self, status: int, variant: str | None, keep: bool, http10: bool = False) -> bytes:
        """The answer's status line and fixed headers, made once per kind of answer."""
        key = (status, variant, keep, http10)
        head = self._heads.get(key)
        if head is None:
            head = _status_line(status) + b"content-type: application/json\r\n"
            if status == 401:
                head += b"www-authenticate: Bearer\r\n"
            if variant:
                head += b"x-cumulo-variant: " + variant.encode("latin-1") + b"\r\n"
            if not keep:
                head += b"connection: close\r\n"
            elif http10:  # an HTTP/1.0 client keeps the connection only when told
                head += b"connection: keep-alive\r\n"
            head += b"content-length: "
            if len(self._heads) < 1024:
                self._heads[key] = head
        return head

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Closes keep-alive connections idle for longer than ``keep_alive``."""
        while True:
            await asyncio.sleep(min(5.0, self.keep_alive / 2))
            cutoff = time.monotonic() - self.keep_alive
            for connection in list(self.connections):
                if not connection.owed and connection.last < cutoff:
                    connection.close()

    async def shutdown(self, grace: float = 4.0) -> None:
        """Stop accepting; answer what is in flight (for ``grace`` seconds at most); close."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while True:
            for connection in list(self.connections):
                if not connection.owed:
                    connection.close()
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.close()


class _Answer:
    """An answer a connection owes, in the order its requests came."""

    __slots__ = ("connection", "data", "http10", "keep", "no_body")

    def __init__(self, connection: _Connection, keep: bool, no_body: bool = False,
                 http10: bool = False) -> None:
        self.connection, self.keep, self.no_body = connection, keep, no_body
        self.http10 = http10
        self.data: bytes | None = None

    def __call__(self, status: int, body: bytes, variant: str | None) -> None:
        head = self.connection.server.head(status, variant, self.keep, self.http10)
        self.data = b"%s%d\r\n\r\n%s" % (head, len(body), b"" if self.no_body else body)
        self.connection.write_owed()


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.owed: deque[_Answer] = deque()
        self.last = time.monotonic()
        self.closing = False  # no more requests are read: the last answer closes it
        self.paused = False
        self.writable = True
        self.head = HeadCounter()  # the limits of the request being read
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.error: _HTTPError | None = None
        self.started = 0.0

    # --- asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.owed.clear()  # answers still being scored are dropped when they come

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = time.monotonic()
        try:
            self.parser.feed_data(data)
            self.head.received(len(data))
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not served here")
        except (TooLong, httptools.HttpParserError) as exc:
            passed = limit_passed(exc)
            if passed is not None:
                self._refuse(passed.status, str(passed))
            else:
                self._refuse(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:  # the client reads slowly: stop reading its requests
        self.writable = False
        self._flow()

    def resume_writing(self) -> None:
        self.writable = True
        self._flow()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- httptools -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self.head.begin()
        self.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head.url(len(self.url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head.header(name, value)
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.head.complete()
        limit = self.app.max_body
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.error = too_large(int(declared), limit, declared=True)
            self._dispatch(keep=False)  # answered now: the body is not read
            return
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport \
                and not self.owed:  # with answers owed, it would read as theirs: the client
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # sends the body anyway

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self.size += len(body)
        if self.size > self.app.max_body:
            self.error = too_large(self.size, self.app.max_body)
            self._dispatch(keep=False)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        self._dispatch(keep=bool(self.parser.should_keep_alive()))

    # --- answers ---------------------------------------------------------------------------

    def _dispatch(self, *, keep: bool) -> None:
        method = self.parser.get_method()
        answer = _Answer(self, keep, no_body=method == b"HEAD",
                         http10=self.parser.get_http_version() == "1.0")
        self.owed.append(answer)
        if not keep:
            self.closing = True
        self._flow()
        try:
            routed = self.app.route(method, self.url)
            if routed is not None:
                answer(*routed, None)
                return
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.app.invoke(self.headers, body, answer, error=self.error,
                            started=self.started)
        except Exception as exc:  # pragma: no cover - invoke answers its own errors
            log.exception("endpoint %s: a request failed", self.app.endpoint)
            if answer.data is None:
                answer(500, _error_body(500, f"internal error: {exc!r}"), None)

    def _refuse(self, status: int, message: str) -> None:
        answer = _Answer(self, keep=False)
        self.owed.append(answer)
        self.closing = True
        answer(status, _error_body(status, message), None)

    def write_owed(self) -> None:
        transport = self.transport
        owed = self.owed
        self.last = time.monotonic()  # idle from the last answer, not the last request
        while owed and owed[0].data is not None:
            answer = owed.popleft()
            if transport is None:
                continue
            transport.write(answer.data)  # type: ignore[arg-type]
            if not answer.keep:
                transport.close()
                self.transport = None
                owed.clear()
                return
        self._flow()

    def _flow(self) -> None:
        """Read requests while the client takes its answers and owes few."""
        transport = self.transport
        if transport is None:
            return
        pause = not self.writable or len(self.owed) >= MAX_PIPELINED
        if pause != self.paused:
            self.paused = pause
            with contextlib.suppress(RuntimeError):
                if pause:
                    transport.pause_reading()
                else:
                    transport.resume_reading()

