"""The SDK and a busy server: a 503 with Retry-After is waited out and sent again when the
request is safe to repeat, and raised at once when it is not. A real HTTP server on a free
port that is busy for its first answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cumulo.client.transport import Transport
from cumulo.errors import Unavailable


class Busy(BaseHTTPRequestHandler):
    busy_for = 0
    seen: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        Busy.seen.append(self.command)
        if Busy.busy_for > 0:
            Busy.busy_for -= 1
            body = b'{"error": {"code": "unavailable", "message": "busy", "details": {}}}'
            self.send_response(503)
            self.send_header("retry-after", "1")
        else:
            body = b'{"ok": true}'
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy() -> Iterator[Transport]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Busy.seen = []
    transport = Transport(f"http://127.0.0.1:{server.server_address[1]}", "cml_x")
    yield transport
    transport.close()
    server.shutdown()
    server.server_close()


def test_a_safe_request_waits_out_a_busy_server(busy: Transport) -> None:
    Busy.busy_for = 2
    t0 = time.monotonic()
    assert busy.json("GET", "/api/v1/tables") == {"ok": True}
    assert time.monotonic() - t0 >= 1.9  # waited what Retry-After said, twice
    assert Busy.seen == ["GET", "GET", "GET"]
    Busy.busy_for, Busy.seen = 1, []
    assert busy.json("PUT", "/x", content=b"same bytes") == {"ok": True}
    assert Busy.seen == ["PUT", "PUT"]


def test_an_unsafe_request_or_a_long_busy_spell_is_an_error(busy: Transport) -> None:
    Busy.busy_for = 1
    with pytest.raises(Unavailable, match="busy"):
        busy.json("POST", "/api/v1/jobs", json={})  # a job submitted twice is two jobs
    assert Busy.seen == ["POST"]
    Busy.busy_for, Busy.seen = 10, []
    with pytest.raises(Unavailable):
        busy.json("GET", "/api/v1/tables")
    assert len(Busy.seen) == 4  # the first try and three more


def test_a_list_of_control_planes_is_tried_in_turn(busy: Transport) -> None:
    """CUMULO_URL naming several control planes: one that cannot be reached (nothing was
    sent, so even a POST is safe to send to the next) is passed over, and the next one is
    kept for the requests after."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    live = busy.url
    Busy.busy_for, Busy.seen = 0, []
    both = Transport(f"{dead}, {live}/", "cml_x")
    try:
        assert both.json("POST", "/api/v1/jobs", json={}) == {"ok": True}
        assert both.url == live and Busy.seen == ["POST"]
        assert both.json("GET", "/api/v1/tables") == {"ok": True}
    finally:
        both.close()
    alone = Transport(dead, "cml_x")
    try:
        with pytest.raises(Unavailable, match="cannot reach Cumulo"):
            alone.json("GET", "/api/v1/tables")
    finally:
        alone.close()
