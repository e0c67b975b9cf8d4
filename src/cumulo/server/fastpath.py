"""The short way for invocations through the control plane: ``POST /endpoints/NAME/invocations``
with a bearer token, answered by the outermost layer of the server's ASGI app.

Scoring a row on a replica takes tens of microseconds. The general way through the control
plane (FastAPI's middleware stack, the request log and body limit as middleware, routing,
dependencies, request and response objects) costs several times that on the one core the
control plane's event loop has, and the control plane then serves a fifth of what the
replicas do. So this layer answers that one kind of request itself, with the same parts the
route uses: the caller from the token cache (:func:`cumulo.server.auth.caller`), the
caller's right to ``endpoints:Invoke`` the endpoint (the decision point, as the route
declares it), the forwarding of :func:`cumulo.serving.api.forward_invocation`, the body
read within the endpoint's own limit, errors answered by :mod:`cumulo.server.errors`. The
request id is kept or made and echoed, and the request logged, as everywhere.

Anything else, a browser's cookie or a request without a token included, goes on to the app,
whose route says what is wrong the usual way.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.errors import CumuloError, TooLarge
from cumulo.logs import request_id
from cumulo.principal import decision_ready, source_address
from cumulo.server.auth import caller
from cumulo.server.errors import error_response, unexpected_response
from cumulo.server.telemetry import observe_http
from cumulo.serving.api import FORWARDED_HEADERS, forward_invocation

__all__ = ["InvokeFastPath"]

log = logging.getLogger("cumulo.access")
_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
_ROUTE = "/endpoints/{name}/invocations"  # its route's template, as the app's route has it
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")  # as server/middleware.py keeps one
_FORWARDED = {name.encode() for name in FORWARDED_HEADERS}


class _Disconnected(Exception):
    """The caller went away before its body was read."""


class InvokeFastPath:
    """Wraps the whole app (``uvicorn`` serves ``InvokeFastPath(create_app(...))``);
    ``services`` gives the running services once the app has started. With ``enabled``
    false (traces are on: each request is a span, made in the app's middleware) every request
    goes to the app."""

    def __init__(self, app: ASGIApp, services: Callable[[], Any], *,
                 metrics: bool = True, enabled: bool = True) -> None:
        self.app = app
        self.services = services
        self.metrics = metrics  # counted and timed as the app's routes are (telemetry.py)
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (_PATH.match(scope["path"]) if self.enabled and scope["type"] == "http"
                 and scope["method"] == "POST" else None)
        if match is None:
            await self.app(scope, receive, send)
            return
        authorization = b""
        given = b""
        declared: int | None = None
        headers: list[tuple[str, str]] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name in _FORWARDED:
                headers.append((name.decode("latin-1"), value.decode("latin-1")))
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"x-request-id":
                given = value
        if not authorization.startswith(b"Bearer "):
            await self.app(scope, receive, send)
            return
        rid = given if _SAFE_ID.match(given) else os.urandom(8).hex().encode()
        token = request_id.set(rid.decode())
        try:
            await self._invoke(scope, receive, send, match.group(1),
                               authorization[7:].decode("latin-1"), headers, declared, rid)
        finally:
            request_id.reset(token)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, name: str, secret: str,
                      headers: list[tuple[str, str]], declared: int | None, rid: bytes) -> None:
        start = time.perf_counter()
        running = self.services()
        try:
            principal = await caller(running, secret)
            client = scope.get("client")
            if client:
                source_address.set(client[0])
            if decision_ready(principal):  # as the route's allow("endpoints:Invoke", ...)
                principal.require("endpoints:Invoke", f"endpoint/{name}")
            else:
                await run_in_threadpool(principal.require, "endpoints:Invoke",
                                        f"endpoint/{name}")
            status, answered, content = await forward_invocation(
                running, name, headers, _body_reader(receive, declared))
        except _Disconnected:
            return
        except Exception as exc:  # answered as the app answers it, and logged
            response = (error_response(exc) if isinstance(exc, CumuloError)
                        else unexpected_response(exc, scope["path"]))
            response.headers["x-request-id"] = rid.decode()
            await response(scope, receive, send)
            _log(scope["path"], response.status_code, start, self.metrics)
            return
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answered]
        raw.append((b"content-length", b"%d" % len(content)))
        raw.append((b"x-request-id", rid))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})
        _log(scope["path"], status, start, self.metrics)


def _log(path: str, status: int, start: float, measure: bool) -> None:
    seconds = time.perf_counter() - start
    log.info("POST %s %s", path, status, extra={
        "method": "POST", "path": path, "status": status, "ms": round(seconds * 1000, 2)})
    if measure:
        observe_http("POST", _ROUTE, status, seconds)


def _body_reader(receive: Receive, declared: int | None) -> Callable[[int], Awaitable[bytes]]:
    async def read(limit: int) -> bytes:
        """The whole body, refused with 413 as soon as it is known to pass ``limit``."""
        if declared is not None and declared > limit:
            raise _too_large(declared, limit)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise _too_large(seen, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    return read


def _too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"the request body is over the endpoint's limit of {limit} bytes (at least "
                    f"{size}); send fewer rows per request, or raise the endpoint's max_body")
