"""The token checks that guard every route under /api/v1 and /mlflow, given as the routers
are mounted (server/app.py).

A token comes as ``Authorization: Bearer <token>`` (CLI, SDK, MLflow's client) or, from a
browser, as the HttpOnly cookie that ``/login`` sets (MLflow's web UI). A browser sends a cookie
with whatever request a page makes it send, so a cookie counts for a request that changes
something only when the request says it comes from this site's own pages (Origin or Referer).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cumulo.errors import Forbidden, Unauthorized
from cumulo.principal import Principal
from cumulo.services import services

__all__ = ["LOGIN_COOKIE", "caller", "require_token", "require_token_or_login", "same_origin"]

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
    request.state.principal = await caller(request, secret)


async def caller(request: Request, secret: str) -> Principal:
    """Who ``secret`` belongs to: from the server's token cache when it knows, else from one
    short lookup off the event loop. No database session outlives this call."""
    tokens = services(request).tokens
    known = tokens.cached(secret)
    return known if known is not None else await run_in_threadpool(tokens.authenticate, secret)


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
