"""The control plane's client for its replicas, against a real asyncio HTTP server on a free
port that can answer with Content-Length or chunked, and close connections when told."""

from __future__ import annotations

import asyncio

import pytest

from cumulo.serving.forward import Forwarder, ReplicaGone


class Replica:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.chunked = False
        self.close_after_answer = False
        self.silent = False
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.silent:
                    await asyncio.sleep(10)
                answer = b'{"predictions": [' + body + b"]}"
                if self.chunked:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
                    for part in (answer[:5], answer[5:]):
                        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"x-cumulo-variant: a\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(answer), answer))
                await writer.drain()
                if self.close_after_answer:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def _stop(server: asyncio.Server, replica: Replica, forward: Forwarder) -> None:
    forward.close()
    for writer in replica.writers:
        writer.close()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.05)  # let the closed transports go


async def _serve(replica: Replica) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(replica.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_connections_are_kept_and_answers_read_whole() -> None:
    async def go() -> None:
        replica = Replica()
        server, port = await _serve(replica)
        forward = Forwarder()
        for n in range(20):
            status, headers, body = await forward.post(
                "127.0.0.1", port, "/endpoints/e/invocations",
                [("content-type", "application/json"), ("authorization", "Bearer t")],
                str(n).encode())
            assert status == 200 and body == b'{"predictions": [%d]}' % n
            assert ("x-cumulo-variant", "a") in headers
        assert replica.connections == 1  # one keep-alive connection for all twenty
        assert b"authorization: Bearer t" in replica.requests[0]
        assert replica.requests[0].startswith(b"POST /endpoints/e/invocations HTTP/1.1\r\n")

        replica.chunked = True  # as Ray Serve's proxy may answer
        assert (await forward.post("127.0.0.1", port, "/", [], b"7"))[2] == \
            b'{"predictions": [7]}'
        # Many at once: each on a connection of its own, all answered.
        answers = await asyncio.gather(*(forward.post("127.0.0.1", port, "/", [], b"1")
                                         for _ in range(16)))
        assert all(a[0] == 200 for a in answers)
        await _stop(server, replica, forward)

    asyncio.run(go())


def test_a_connection_the_replica_closed_is_replaced_once() -> None:
    async def go() -> None:
        replica = Replica()
        server, port = await _serve(replica)
        forward = Forwarder()
        assert (await forward.post("127.0.0.1", port, "/", [], b"1"))[0] == 200
        for writer in replica.writers:  # the replica drops its idle connections
            writer.close()
        await asyncio.sleep(0.05)
        assert (await forward.post("127.0.0.1", port, "/", [], b"2"))[0] == 200
        assert replica.connections == 2
        assert len(replica.requests) == 2  # the request was not sent twice
        await _stop(server, replica, forward)

    asyncio.run(go())


def test_a_replica_that_is_gone_or_silent_is_a_clear_error() -> None:
    async def go() -> None:
        replica = Replica()
        server, port = await _serve(replica)
        server.close()
        await server.wait_closed()
        forward = Forwarder(timeout=0.5)
        with pytest.raises(ReplicaGone, match="cannot reach the replica"):
            await forward.post("127.0.0.1", port, "/", [], b"1")

        replica = Replica()
        replica.silent = True
        server, port = await _serve(replica)
        with pytest.raises(ReplicaGone, match="did not answer in"):
            await forward.post("127.0.0.1", port, "/", [], b"1")
        await _stop(server, replica, forward)

    asyncio.run(go())


def test_idle_connections_to_replicas_that_are_gone_are_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import cumulo.serving.forward as forward_module

    monkeypatch.setattr(forward_module, "_IDLE_S", 0.1)

    async def go() -> None:
        old, new = Replica(), Replica()
        old_server, old_port = await _serve(old)
        new_server, new_port = await _serve(new)
        forward = Forwarder()
        assert (await forward.post("127.0.0.1", old_port, "/", [], b"1"))[0] == 200
        kept = forward._idle[("127.0.0.1", old_port)][0]
        await asyncio.sleep(0.2)
        # The old replica is never asked again; a request elsewhere sweeps its connection.
        assert (await forward.post("127.0.0.1", new_port, "/", [], b"2"))[0] == 200
        assert ("127.0.0.1", old_port) not in forward._idle
        assert kept.transport is not None and kept.transport.is_closing()
        await _stop(old_server, old, forward)
        await _stop(new_server, new, forward)

    asyncio.run(go())
