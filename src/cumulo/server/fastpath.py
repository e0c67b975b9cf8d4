"""The short way for invocations through the control plane: ``POST /endpoints/NAME/invocations``
with a bearer token, handled before FastAPI's routing.

Scoring a row on a replica takes tens of microseconds; matching the request against every
route of the API, resolving dependencies and building FastAPI's request and response objects
costs more than that, on the one core the control plane's event loop has. So this middleware
answers that one kind of request itself, with the same parts the route uses: the caller from
the token cache (:func:`cumulo.server.auth.caller`), the forwarding of
:func:`cumulo.serving.api.forward_invocation`, errors answered by
:func:`cumulo.server.errors.error_response`. Anything else, a browser's cookie or a request
without a token included, goes on to the route, which says what is wrong the usual way.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.errors import CumuloError, TooLarge
from cumulo.httplimits import lift_body_limit
from cumulo.server.auth import caller
from cumulo.server.errors import error_response
from cumulo.services import services
from cumulo.serving.api import forward_invocation

__all__ = ["InvokeFastPath"]

_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
_FORWARDED = (b"content-type", b"x-cumulo-variant")


class InvokeFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (_PATH.match(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        authorization = b""
        headers: list[tuple[str, str]] = []
        if match is not None:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                elif name in _FORWARDED:
                    headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if not authorization.startswith(b"Bearer ") or match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            request.state.principal = await caller(request, authorization[7:].decode("latin-1"))

            async def body(limit: int) -> bytes:
                lift_body_limit(request, limit)
                return await request.body()

            response = await forward_invocation(services(request), match.group(1), headers,
                                                body)
        except CumuloError as exc:
            response = error_response(exc)
        except HTTPException as exc:  # the body limit (server/middleware.py BodyLimit)
            if exc.status_code != 413:
                raise
            response = error_response(TooLarge(str(exc.detail)))
        await response(scope, receive, send)
