"""The control plane's way to its replicas: keep-alive HTTP/1.1 connections, kept per address,
on plain asyncio streams.

``/endpoints/NAME/invocations`` on the control plane adds a hop in front of a replica that
answers in well under a millisecond, so the hop must cost little: a general HTTP client spends
more on a request (its models of URLs, headers and streams, its connection pool's bookkeeping)
than the replica spends scoring it. A replica speaks a known, small HTTP/1.1 (one answer per
request, with Content-Length), so this client writes one buffer and reads the head and the body
(by its Content-Length, or chunked as Ray Serve's proxy may send it), no more.

A connection that sat idle may have been closed by the replica (it closes idle ones after its
keep-alive), so a request that fails on a reused connection before any answer came is sent
once more on a new one; on a new connection a failure is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

__all__ = ["Forwarder", "ReplicaGone"]

_IDLE_S = 15.0  # under the replicas' keep-alive (30 s), so they seldom close one under us
_HEAD_LIMIT = 64 * 1024


class ReplicaGone(Exception):
    """The replica could not be reached, or went away before it answered."""


class _Conn:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Forwarder:
    def __init__(self, *, timeout: float = 120.0, connect_timeout: float = 5.0,
                 idle_per_address: int = 256) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle_per_address = idle_per_address
        self._idle: dict[tuple[str, int], deque[_Conn]] = {}
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
                return await self._exchange(address, conn, request)
            except _Stale:
                pass  # closed while idle: once more, on a new connection
        conn = await self._open(address)
        try:
            return await self._exchange(address, conn, request)
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
            if now - conn.used < _IDLE_S and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _open(self, address: tuple[str, int]) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address),
                                                    self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise ReplicaGone(f"cannot reach the replica at {address[0]}:{address[1]}: "
                              f"{exc or type(exc).__name__}") from exc
        return _Conn(reader, writer)

    async def _exchange(self, address: tuple[str, int], conn: _Conn,
                        request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        answered = False
        try:
            async with asyncio.timeout(self.timeout):  # no task per read, unlike wait_for
                conn.writer.write(request)
                head = await conn.reader.readuntil(b"\r\n\r\n")
                answered = True
                status, headers, length, keep = _parse_head(head)
                if length > 0:
                    body = await conn.reader.readexactly(length)
                elif length == 0:
                    body = b""
                else:
                    body = await _read_chunked(conn.reader)
        except ReplicaGone:
            conn.close()
            raise
        except TimeoutError as exc:  # before OSError, of which it is one
            conn.close()
            raise ReplicaGone(f"the replica at {address[0]}:{address[1]} did not answer in "
                              f"{self.timeout:.0f}s") from exc
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                OSError) as exc:
            conn.close()
            if not answered:
                raise _Stale() from exc
            raise ReplicaGone(f"the replica at {address[0]}:{address[1]} went away while "
                              f"answering: {exc}") from exc
        if keep:
            conn.used = time.monotonic()
            idle = self._idle.setdefault(address, deque())
            if len(idle) < self.idle_per_address:
                idle.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        return status, headers, body

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


class _Stale(Exception):
    """The connection failed before any answer came."""


def _parse_head(head: bytes) -> tuple[int, list[tuple[str, str]], int, bool]:
    if len(head) > _HEAD_LIMIT:
        raise ReplicaGone("the replica's answer head is too large")
    lines = head.decode("latin-1").split("\r\n")
    try:
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
    except ValueError as exc:
        raise ReplicaGone(f"the replica answered something that is not HTTP: "
                          f"{lines[0][:80]!r}") from exc
    headers: list[tuple[str, str]] = []
    length = 0
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            keep = value.lower() != "close" and (keep or value.lower() == "keep-alive")
        elif name == "transfer-encoding":
            length = -1 if "chunked" in value.lower() else length
        else:
            headers.append((name, value))
    return status, headers, length, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, if any
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
