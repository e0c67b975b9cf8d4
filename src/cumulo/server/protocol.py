"""The control plane's HTTP protocol: uvicorn's httptools protocol with bounded request heads.

uvicorn grows a request's target and headers without limit, by concatenation: a 60 MiB
request line held the server for 11 s, and every other client with it, before anything could
refuse it. Here a target over 8 KiB is answered 414 and headers over 64 KiB (or 100 fields)
431, as soon as they pass the limit, before authentication or routing, and the connection is
closed. The replicas' own server (:mod:`cumulo.serving.http`) keeps the same limits.
"""

from __future__ import annotations

import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cumulo.httplimits import (
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    MAX_URL,
    TooLong,
    headers_too_long,
    url_too_long,
)

__all__ = ["BoundedHttpToolsProtocol"]

_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_done, self._head_bytes, self._header_bytes = True, 0, 0

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with the limits' answers.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
            if not self._headers_done:
                # The parser holds a header until the next begins: count what it holds.
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEADER_BYTES:
                    raise headers_too_long()
        except TooLong as exc:
            self._refuse(exc)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, TooLong):
                self._refuse(exc.__context__)
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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done, self._head_bytes, self._header_bytes = False, 0, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL:
            raise url_too_long()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADER_FIELDS:
            raise headers_too_long()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()
