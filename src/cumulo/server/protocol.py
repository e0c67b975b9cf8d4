"""The control plane's HTTP protocol: uvicorn's httptools protocol with bounded request heads.

uvicorn grows a request's target and headers without limit, by concatenation: a 60 MiB
request line held the server for 11 s, and every other client with it, before anything could
refuse it. Here a target over 8 KiB is answered 414 and headers over 64 KiB (or 100 fields)
431, as soon as they pass the limit, before authentication or routing, and the connection is
closed. The replicas' own server (:mod:`cumulo.serving.http`) keeps the same limits.

And fewer writes: uvicorn writes a response's head and its body to the socket in two calls,
two system calls and two packets for a small JSON answer. Writes are gathered while the event
loop runs the request's code and go out in one when it is done (``_Gathered``), so the
invocations the control plane forwards cost one write each.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cumulo.httplimits import HeadCounter, TooLong, limit_passed

__all__ = ["BoundedHttpToolsProtocol"]

_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}
_GATHER_UNDER = 64 << 10
_LINGER_S = 1.0  # larger writes (downloads) go out at once, uncopied


class _Gathered:
    """A transport whose small writes wait for the end of the event loop's current turn and
    go out together; anything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if len(data) >= _GATHER_UNDER:
            self.flush()
            self._transport.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = HeadCounter()
        self._body_done = True

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with the limits' answers.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            self._head.received(len(data))
        except (TooLong, httptools.HttpParserError) as exc:
            passed = limit_passed(exc)
            if passed is not None:
                self._refuse(passed)
            else:
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _refuse(self, exc: TooLong) -> None:
        body = json.dumps({"error": {"code": "too_large", "message": str(exc)}}).encode()
        self.transport.write(b"".join([
            f"HTTP/1.1 {exc.status} {_REASONS[exc.status]}\r\n".encode(),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Gathered(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        cycle = self.cycle
        answered_early = cycle is not None and cycle.more_body and not self._body_done
        super().on_response_complete()
        if answered_early and not self.transport.is_closing():
            # Answered (413, 401) before its body came: unless the rest of it arrives in a
            # moment (a client that sends its head and body apart), it is not worth reading.
            # Closed a moment later, not at once, so that the answer is read before the
            # unread body makes the close a reset.
            self.loop.call_later(_LINGER_S, self._close_if_unread, cycle)

    def _close_if_unread(self, cycle: Any) -> None:
        if self.cycle is cycle and not self._body_done and not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head.begin()
        self._body_done = False

    def on_message_complete(self) -> None:
        self._body_done = True
        super().on_message_complete()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head.url(len(self.url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head.header(name, value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head.complete()
        super().on_headers_complete()
