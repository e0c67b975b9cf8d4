"""The token checks that guard every route under /api/v1 and /mlflow, given as the routers
are mounted (server/app.py).

A token comes as ``Authorization: Bearer <token>`` (CLI, SDK, MLflow's client) or, from a
browser, as the HttpOnly cookie that ``/login`` sets (MLflow's web UI). A browser sends a cookie
with whatever request a page makes it send, so a cookie counts for a request that changes
something only when the request says it comes from this site's own pages (Origin or Referer).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cumulo.access.tokens import TokenCache
from cumulo.errors import Forbidden, Unauthorized
from cumulo.principal import PROJECT_HEADER, Principal, request_project, source_address
from cumulo.services import Services, services

__all__ = ["LOGIN_COOKIE", "caller", "require_token", "require_token_or_login", "same_origin"]

log = logging.getLogger("cumulo.auth")

LOGIN_COOKIE = "cumulo_token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_bearer = HTTPBearer(auto_error=False, description="a Cumulo API token")


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    return bool(source) and urlsplit(source).netloc == request.headers.get("host")


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    if credentials is not None:
        secret = credentials.credentials
    elif secret := request.cookies.get(LOGIN_COOKIE, ""):
        if request.method not in _SAFE_METHODS and not same_origin(request):
            raise Forbidden(
                f"a {request.method} with the login cookie must come from this site's own pages "
                "(its Origin or Referer header says otherwise, or is missing); scripts send "
                "'Authorization: Bearer <token>' instead"
            )
    else:
        raise Unauthorized(
            "this route needs a token: send 'Authorization: Bearer <token>' "
            "(the CLI and SDK read CUMULO_TOKEN)"
        )
    request.state.principal = await caller(services(request), secret)
    # Kept for the request only: what acts as the caller on the server's own API (a backup's
    # one-thing restore) signs in with it.
    request.state.credential = secret
    if request.client is not None:
        source_address.set(request.client.host)
    request_project.set(request.headers.get(PROJECT_HEADER) or None)


async def caller(running: Services, secret: str) -> Principal:
    """Who ``secret`` belongs to: from the server's token cache when it knows, else from one
    short lookup off the event loop, shared by every request that asks meanwhile. A token in
    use is looked up again in the background before its answer goes stale, so a busy token's
    requests never wait for the database. No database session outlives this call."""
    tokens = running.tokens
    known = tokens.cached(secret)
    if known is not None:
        if tokens.refresh_due(secret):
            _in_background(tokens, secret)
        return known
    key = hashlib.sha256(secret.encode()).hexdigest()
    pending = tokens.pending.get(key)
    loop = asyncio.get_running_loop()
    if not isinstance(pending, asyncio.Future) or pending.get_loop() is not loop:
        pending = asyncio.ensure_future(run_in_threadpool(tokens.lookup, secret))
        tokens.pending[key] = pending
        pending.add_done_callback(lambda done: _forget(tokens, key, done))
    return await asyncio.shield(pending)


def _forget(tokens: TokenCache, key: str, done: asyncio.Future[Principal]) -> None:
    if tokens.pending.get(key) is done:
        del tokens.pending[key]
    if not done.cancelled():
        done.exception()  # retrieved: each waiter has its own copy of the refusal


_background: set[asyncio.Task[None]] = set()


def _in_background(tokens: TokenCache, secret: str) -> None:
    async def refresh() -> None:
        try:
            await run_in_threadpool(tokens.lookup, secret)
        except Unauthorized:
            pass  # remembered as a refusal: the next request gets it
        except Exception:  # the database busy or down: the answer goes stale, then is asked
            log.warning("looking a token up ahead of time failed", exc_info=True)

    task = asyncio.get_running_loop().create_task(refresh())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def require_token_or_login(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> None:
    """``require_token``, but a browser that asks for a page without a working token passes,
    with no caller (``cumulo.auth.signed_in`` is None): the route sends it to /login, where an
    API client gets 401."""
    try:
        await require_token(request, credentials)
    except Unauthorized:
        page = (request.method in ("GET", "HEAD")
                and "text/html" in request.headers.get("accept", ""))
        if credentials is None and page:
            return
        raise
