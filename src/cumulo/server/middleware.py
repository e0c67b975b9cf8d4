"""Request ids, the access log and the body limit, as plain ASGI middleware (no per-request
task overhead)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cumulo.httplimits import BODY_LIMIT_KEY, MAX_BODY
from cumulo.logs import request_id
from cumulo.permissions import PERMISSION_KEY

__all__ = ["AuditChanges", "BodyLimit", "RequestContext"]

log = logging.getLogger("cumulo.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Give each request an id (or keep the caller's X-Request-ID), echo it, log the request;
    ``observe(scope, status, seconds)``, when given, counts and times it for Prometheus
    (server/telemetry.py)."""

    def __init__(self, app: ASGIApp,
                 observe: Callable[[Scope, int, float], None] | None = None) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            if scope["path"] != "/healthz":
                log.info(
                    "%s %s %s", scope["method"], scope["path"], status["code"],
                    extra={"method": scope["method"], "path": scope["path"],
                           "status": status["code"], "ms": round(seconds * 1000, 2)},
                )
            if self.observe is not None:
                self.observe(scope, status["code"], seconds)
            request_id.reset(token)


class BodyLimit:
    """Read every request body within a limit as it arrives (:mod:`cumulo.httplimits`): a
    declared or received size over it is refused with 413 before more is read, whatever reads
    it (FastAPI reads a JSON body before the route's dependencies, authentication included).
    Routes that stream a body to storage lift the limit for their request."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"limit": self.limit}
        scope[BODY_LIMIT_KEY] = state
        declared = dict(scope["headers"]).get(b"content-length", b"")
        size = int(declared) if declared.isdigit() else None
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            limit = state["limit"]
            if limit is not None and size is not None and size > limit:
                raise _too_large(size, limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if limit is not None and seen > limit:
                    raise _too_large(seen, limit)
            return message

        await self.app(scope, limited, send)


def _too_large(size: int, limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over {limit} bytes (at least {size}); "
                              "send large files as uploads ('cumulo files cp')")


_READS = ("GET", "HEAD", "OPTIONS")


_NAMED_WITHIN = 64 * 1024  # bytes of a creation's answer read for the name of what it made


def _creates(scope: Scope) -> bool:
    """Whether the route declared a pattern (``user/*``): it makes something whose name the
    path does not hold, so its answer says it."""
    permission = scope.get(PERMISSION_KEY)
    return (permission is not None and isinstance(permission[1], str)
            and permission[1].endswith("/*"))


def _named(pattern: str, answer: bytes) -> str:
    """``user/*`` and an answer ``{"name": "ana", ...}`` -> ``user/ana`` (or the ``id`` of a
    job); the pattern as it was when the answer names nothing."""
    try:
        body = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return pattern
    if not isinstance(body, dict):
        return pattern
    name = body.get("name") if isinstance(body.get("name"), str) else body.get("id")
    if not isinstance(name, str | int) or not str(name) or "/" in str(name):
        return pattern
    return f"{pattern[:-1]}{name}"


class AuditChanges:
    """Write each request that changes something to the audit log once it is answered: who,
    the action and resource its route declared, the outcome. Refusals are written by the
    decision point itself; requests that only read (whatever their method: MLflow searches
    by POST) are not changes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        made = bytearray()  # a creation's answer, which names what was made

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif (message["type"] == "http.response.body" and 200 <= status["code"] < 300
                  and len(made) < _NAMED_WITHIN and _creates(scope)):
                made.extend(message.get("body", b"")[:_NAMED_WITHIN])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            permission = scope.get(PERMISSION_KEY)
            principal = scope.get("state", {}).get("principal")
            code = status["code"]
            if (permission is not None and permission[0] is not None and principal is not None
                    and code not in (401, 403)
                    and not permission[0].endswith((":Read", ":List"))):
                client = scope.get("client")
                resource = permission[1]
                if made:
                    resource = _named(resource, bytes(made))
                scope["app"].state.services.trail.change(
                    user=principal.user_name, action=permission[0], resource=resource,
                    status=code, method=scope["method"], path=scope["path"],
                    source=client[0] if client else None)
