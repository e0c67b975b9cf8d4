"""The replica's HTTP server, on a real socket, driven by raw HTTP/1.1 from real clients."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from cumulo.serving.http import Server
from cumulo.serving.replica import ReplicaApp, Variant
from tests.serving.test_replica import SCHEMA, Doubler, _body


class Slow(Doubler):
    """2x, after a pause: a request still in flight when the replica is told to stop."""

    def __call__(self, frame: Any) -> Any:
        time.sleep(0.3)
        return super().__call__(frame)


@asynccontextmanager
async def _serving(app: ReplicaApp, **options: Any) -> AsyncIterator[tuple[Server, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = Server(app, **options)
    await server.start(sock)
    try:
        yield server, port
    finally:
        await server.shutdown(grace=1)


class _Clients:
    """Raw connections to the server, each closed at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@asynccontextmanager
async def _clients(port: int) -> AsyncIterator[_Clients]:
    clients = _Clients(port)
    try:
        yield clients
    finally:
        clients.close()
        await asyncio.sleep(0)


def _post(body: bytes, *, path: str = "/invocations", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


async def _read_answers(reader: asyncio.StreamReader, n: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(n):
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        out.append((status, await reader.readexactly(length)))
    return out


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_answers_match_an_http_client_and_batch() -> None:
    model = Doubler()
    app = ReplicaApp("e", [Variant("a", model, SCHEMA)], max_wait_ms=20)

    async def go() -> None:
        async with _serving(app) as (_, port), httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}") as c:
            answers = await asyncio.gather(*(c.post("/endpoints/e/invocations",
                                                    content=_body(i)) for i in range(20, 50)))
            assert [r.json() for r in answers] == [{"predictions": [2.0 * i]}
                                                   for i in range(20, 50)]
            assert all(r.headers["x-cumulo-variant"] == "a" for r in answers)
            assert (await c.get("/ping")).json() == {"status": "ok"}
            assert (await c.head("/ping")).status_code == 200
            assert (await c.post("/nope", content=_body(1))).status_code == 404
            assert (await c.get("/invocations")).status_code == 405
            bad = await c.post("/invocations", content=b"{oops")
            assert bad.status_code == 400 and "not valid JSON" in bad.text

    _run(go)
    assert sum(model.calls) == 30 and len(model.calls) < 30


def test_pipelined_requests_are_answered_in_order() -> None:
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)], max_wait_ms=1)

    async def go() -> None:
        async with _serving(app) as (_, port), _clients(port) as raw:
            reader, writer = await raw.open()
            writer.write(b"".join(_post(_body(i)) for i in range(100) if i != 13)
                         + b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
            answers = await _read_answers(reader, 100)
            assert [orjson.loads(b)["predictions"] for _, b in answers[:99]] == [
                [2.0 * i] for i in range(100) if i != 13]
            assert answers[99] == (200, b'{"status":"ok"}')

    _run(go)


def test_bodies_over_the_limit_get_413_and_the_connection_closes() -> None:
    seen: list[dict[str, Any]] = []
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)], max_body=1000,
                     on_result=seen.append)

    async def go() -> None:
        async with _serving(app) as (_, port), _clients(port) as raw:
            # Declared too large: answered before the body is sent.
            reader, writer = await raw.open()
            writer.write(b"POST /invocations HTTP/1.1\r\nhost: x\r\n"
                         b"content-length: 5000000\r\n\r\n")
            [(status, body)] = await _read_answers(reader, 1)
            assert status == 413 and b"the body is 5000000 bytes; the limit is 1000" in body
            assert await reader.read() == b""  # closed
            # Chunked, with no length said: refused once it passes the limit.
            reader, writer = await raw.open()
            writer.write(b"POST /invocations HTTP/1.1\r\nhost: x\r\n"
                         b"transfer-encoding: chunked\r\n\r\n"
                         + b"".join(b"200\r\n" + b" " * 512 + b"\r\n" for _ in range(4)))
            [(status, body)] = await _read_answers(reader, 1)
            assert status == 413 and b"over the limit of 1000 bytes" in body
            assert await reader.read() == b""
            # A chunked body under the limit is read whole.
            reader, writer = await raw.open()
            body = _body(4)
            writer.write(b"POST /invocations HTTP/1.1\r\nhost: x\r\n"
                         b"transfer-encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            assert await _read_answers(reader, 1) == [(200, b'{"predictions":[8.0]}')]

    _run(go)
    assert [r["status"] for r in seen] == [413, 413, 200]


def test_malformed_http_gets_400_and_expect_continue_is_honoured() -> None:
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)])

    async def go() -> None:
        async with _serving(app) as (_, port), _clients(port) as raw:
            reader, writer = await raw.open()
            writer.write(b"BLAH\x00 / HTTP/9\r\n\r\n")
            [(status, body)] = await _read_answers(reader, 1)
            assert status == 400 and b"malformed HTTP request" in body
            assert await reader.read() == b""

            reader, writer = await raw.open()
            body = _body(5)
            writer.write(f"POST /invocations HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
                         f"content-length: {len(body)}\r\n\r\n".encode())
            assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert await reader.readline() == b"\r\n"
            writer.write(body)
            assert await _read_answers(reader, 1) == [(200, b'{"predictions":[10.0]}')]
            # HTTP/1.0, or "connection: close": answered, then closed.
            writer.write(_post(_body(1), extra="connection: close\r\n"))
            assert await _read_answers(reader, 1) == [(200, b'{"predictions":[2.0]}')]
            assert await reader.read() == b""

    _run(go)


def test_request_lines_and_headers_past_their_limits_are_refused_at_once() -> None:
    # A 100 MiB request line used to get no answer at all: now 414 once it passes 8 KiB,
    # before the rest is sent; headers past 64 KiB or 100 fields get 431.
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)])

    async def go() -> None:
        async with _serving(app) as (_, port), _clients(port) as raw:
            reader, writer = await raw.open()
            writer.write(b"GET /" + b"a" * (16 << 10))  # no end of line: refused mid-way
            [(status, body)] = await _read_answers(reader, 1)
            assert status == 414 and b"over 8192 bytes" in body
            assert await reader.read() == b""
            for headers in (b"x-big: " + b"v" * (70 << 10) + b"\r\n",
                            b"".join(b"x-%d: v\r\n" % i for i in range(150))):
                reader, writer = await raw.open()
                writer.write(b"POST /invocations HTTP/1.1\r\nhost: x\r\n" + headers)
                [(status, body)] = await _read_answers(reader, 1)
                assert status == 431 and b"headers are over" in body
                assert await reader.read() == b""
            # Within the limits, the same connection's requests are served as before.
            reader, writer = await raw.open()
            writer.write(_post(_body(2), extra="x-fine: " + "v" * 4000 + "\r\n"))
            assert await _read_answers(reader, 1) == [(200, b'{"predictions":[4.0]}')]

    _run(go)


def test_idle_connections_close_and_shutdown_answers_what_it_holds() -> None:
    app = ReplicaApp("e", [Variant("a", Slow(), SCHEMA)])

    async def go() -> None:
        async with _serving(app, keep_alive=0.2) as (server, port), _clients(port) as raw:
            reader, writer = await raw.open()
            writer.write(_post(_body(1)))
            assert (await _read_answers(reader, 1))[0][0] == 200
            await asyncio.wait_for(reader.read(), 2)  # closed by the sweep: idle too long
            assert not server.connections

            idle = await raw.open()
            reader, writer = await raw.open()
            writer.write(_post(_body(3)))
            await asyncio.sleep(0.1)  # the model is on it
            stopping = asyncio.get_running_loop().create_task(server.shutdown(grace=5))
            assert await _read_answers(reader, 1) == [(200, b'{"predictions":[6.0]}')]
            await stopping
            assert await idle[0].read() == b"" and await reader.read() == b""
            refused = None
            try:
                await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                refused = exc
            assert refused is not None  # no longer accepting

    _run(go)


def test_http10_keep_alive_is_said() -> None:
    app = ReplicaApp("e", [Variant("a", Doubler(), SCHEMA)])

    async def go() -> None:
        async with _serving(app) as (_, port), _clients(port) as raw:
            reader, writer = await raw.open()
            body = _body(2)
            request = (f"POST /invocations HTTP/1.0\r\nconnection: keep-alive\r\n"
                       f"content-length: {len(body)}\r\n\r\n").encode() + body
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            assert b"connection: keep-alive" in head
            await reader.readexactly(int(head.split(b"content-length: ")[1].split(b"\r")[0]))
            writer.write(request)  # the same connection serves the next one
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")

    _run(go)
