"""``/login`` and ``/logout``: signing in with a password, and how a browser holds a token, for
the web console and MLflow's UI.

A browser cannot send ``Authorization: Bearer``, so the user signs in once with a user name
and password (``cumulo.access.signin``: a session token of 12 hours), or pastes a token. The
token is then kept in an HttpOnly (out of reach of scripts), SameSite=Strict (not sent from
other sites) cookie that ``require_token`` accepts. After logging in the browser goes back to
``next``, which must be a path on this site: never another site (no open redirect). A request
that accepts JSON (the console's) gets JSON instead of pages: the user, or the API's error.

The CLI signs in with a JSON body, ``{"user", "password"}``, and gets the session token back in
JSON (``{"token", "user", "expires_at"}``), with no cookie. Sign-in needs no token, so it is
here and not under /api/v1, where every route does.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access.models import User
from cumulo.access.signin import RateLimiter, SignedIn, sign_in
from cumulo.access.tokens import authenticate
from cumulo.db import get_session
from cumulo.errors import CumuloError, Forbidden, Invalid, TooLarge, TooManyRequests, Unauthorized
from cumulo.server.auth import LOGIN_COOKIE, same_origin
from cumulo.server.errors import RETRY_AFTER_S
from cumulo.services import services

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
DEFAULT_NEXT = "/mlflow/"
MAX_FORM = 4096
# Sign-in attempts per client address, for this process: 10 a minute (a person mistyping
# gets through; a guesser gets 14,400 tries a day per address, against a lock after 5).
LIMITER = RateLimiter()
# The page loads nothing, runs no script and may not be framed (no clickjacking of the form).
_HEADERS = {"cache-control": "no-store", "content-security-policy":
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Cumulo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}
details{{margin-top:2rem}} .message{{color:#b00020}}</style></head>
<body><h1>Cumulo</h1>
<p>Sign in to open MLflow's web UI. You stay signed in in this browser for 12 hours, or until
you <a href="/logout">log out</a>.</p>
{message}{sso}
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>User name <input name="user" value="{user}" autocomplete="username" required
{focus_user}></label>
<label>Password <input type="password" name="password" autocomplete="current-password"
required></label>
<button type="submit">Sign in</button></form>
<details{token_open}><summary>Sign in with a token instead</summary>
<p>Paste a Cumulo token: <code>cumulo tokens create browser</code> makes one.</p>
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" required></label>
<button type="submit">Log in</button></form></details></body></html>
"""


def _safe_next(target: str | None) -> str:
    if not target:
        return DEFAULT_NEXT
    # Browsers read '\' as '/' and drop tabs and newlines: '/\evil' would go to evil.
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) <= 0x20 for c in target) or urlsplit(target).netloc):
        raise Invalid(f"next={target!r} is not a path on this site: after logging in, Cumulo "
                      "only goes back to one of its own pages (a path starting with one '/')")
    return target


def _sso_name(request: Request) -> str | None:
    """The single sign-on provider's name for the page's button, when ``[oidc]`` is set."""
    oidc = services(request).settings.oidc
    return oidc.name if oidc is not None else None


def _page(next_: str, message: str = "", status: int = 200, *, user: str = "",
          with_token: bool = False, retry_after: float | None = None,
          sso: str | None = None) -> HTMLResponse:
    shown = f'<p class="message" role="alert">{html.escape(message)}</p>' if message else ""
    link = (f'\n<p><a href="/login/sso?next={html.escape(quote(next_, safe="/"))}">Sign in '
            f"with {html.escape(sso)}</a></p>" if sso else "")
    headers = dict(_HEADERS)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return HTMLResponse(
        _PAGE.format(message=shown, sso=link, next=html.escape(next_), user=html.escape(user),
                     focus_user="" if with_token else "autofocus",
                     token_open=" open" if with_token else ""),
        status_code=status, headers=headers)


async def _body(request: Request, what: str) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise TooLarge(f"the {what} is over {MAX_FORM} bytes")
    return body


async def _form(request: Request) -> dict[str, str]:
    body = await _body(request, "login form")
    try:
        fields = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"the login form could not be read: {exc}") from exc
    return {key: values[0] for key, values in fields.items()}


async def _credentials(request: Request) -> tuple[str, str]:
    body = await _body(request, "sign-in request")
    try:
        sent: Any = json.loads(body)
    except ValueError as exc:
        raise Invalid(f"the sign-in request is not JSON: {exc}") from exc
    if not (isinstance(sent, dict) and isinstance(sent.get("user"), str)
            and isinstance(sent.get("password"), str)):
        raise Invalid('a sign-in is {"user": "NAME", "password": "..."}, both strings')
    return sent["user"], sent["password"]


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/json"


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _sign_in(request: Request, session: Session, user: str, password: str) -> SignedIn:
    """Sign in with a password; each attempt, its outcome and source go to the audit log."""
    trail = services(request).trail
    try:
        signed = await run_in_threadpool(sign_in, session, user, password,
                                         source=_source(request), limiter=LIMITER)
    except CumuloError as exc:
        # A name that is no user's is not kept: it is often a password typed in the wrong box.
        known = await run_in_threadpool(
            lambda: session.scalar(select(User.id).where(User.name == user)) is not None)
        shown = user[:64] if known else None
        trail.event(user=shown, action="auth:SignIn", resource=f"user/{shown or '?'}",
                    outcome="denied", source=_source(request),
                    details={"how": "password", "why": exc.message, "status": exc.status,
                             "known_user": known})
        raise
    trail.event(user=signed.user, action="auth:SignIn", resource=f"user/{signed.user}",
                outcome="allowed", source=_source(request),
                details={"how": "password", "token_id": signed.token_id})
    return signed


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get("/login/options")
def login_options(request: Request) -> JSONResponse:
    """How one may sign in here, for the web console's own sign-in form (asked before anyone
    is signed in): with a password or a token always, and with single sign-on when set."""
    return JSONResponse({"password": True, "token": True, "sso": _sso_name(request)})


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _page(_safe_next(next), sso=_sso_name(request))


@router.post("/login")
async def login(request: Request, session: Session = Depends(get_session)) -> Response:
    sent_by_a_page = "origin" in request.headers or "referer" in request.headers
    if sent_by_a_page and not same_origin(request):
        raise Forbidden("the login form was sent from a page of another site")
    if _is_json(request):  # the CLI: the token in the answer, no cookie
        signed = await _sign_in(request, session, *await _credentials(request))
        return JSONResponse({"token": signed.secret, "user": signed.user,
                             "expires_at": signed.expires_at.isoformat()},
                            headers={"cache-control": "no-store"})
    form = await _form(request)
    next_ = _safe_next(form.get("next"))
    wants_json = _wants_json(request)  # the web console signs in with fetch()
    if "user" in form or "password" in form:
        user = form.get("user", "").strip()
        try:
            signed = await _sign_in(request, session, user, form.get("password", ""))
        except (Invalid, Unauthorized, TooManyRequests) as exc:
            if wants_json:
                raise
            return _refused(next_, exc, user=user, sso=_sso_name(request))
        token, user_name = signed.secret, signed.user
    else:
        token = form.get("token", "").strip()
        try:
            principal = await run_in_threadpool(authenticate, session, token)
        except Unauthorized as exc:
            if wants_json:
                raise
            return _page(next_, f"That token was refused: {exc.message}", status=401,
                         with_token=True, sso=_sso_name(request))
        user_name = principal.user_name
    response: Response = (JSONResponse({"user": user_name}) if wants_json
                          else RedirectResponse(next_, status_code=303))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


def _refused(next_: str, exc: CumuloError, *, user: str, sso: str | None) -> HTMLResponse:
    wait = (exc.retry_after or RETRY_AFTER_S) if isinstance(exc, TooManyRequests) else None
    return _page(next_, f"Sign-in refused: {exc.message}", status=exc.status, user=user,
                 retry_after=wait, sso=sso)


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    response: Response = (Response(status_code=204) if _wants_json(request)
                          else RedirectResponse("/login", status_code=303))
    response.delete_cookie(LOGIN_COOKIE, path="/", httponly=True, samesite="strict")
    return response
