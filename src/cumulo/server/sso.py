"""``/login/sso``: single sign-on through the OpenID Connect provider that ``[oidc]`` names
(the protocol is :mod:`cumulo.access.oidc`; this module is its pages and answers).

A browser::

    GET /login/sso?next=/path      303 to the provider, with a cookie that binds the sign-in
                                   to this browser (SameSite=Lax: the provider's redirect
                                   back is a cross-site navigation, which Lax lets through)
    GET /login/sso/callback        the provider's answer: the session token in the cookie
                                   /login sets, then on to ``next``

The callback answers with a page that moves on to ``next`` itself rather than a redirect: the
token's cookie is SameSite=Strict, and browsers hold such cookies back from every request of a
redirect chain that began on another site (the provider's page), so a 303 would land on
``next`` looking signed out.

The CLI (``cumulo login --sso``), a device flow (RFC 8628) with Cumulo as its authorization
server::

    POST /login/sso/device         {device_code, user_code, verification_uri, ..., interval}
    GET  /login/sso/device         the page where a person checks the user code, and goes on
    POST /login/sso/device/confirm   to the provider as above (a POST: a link alone cannot
                                   make someone's browser sign a stranger's CLI in)
    POST /login/sso/device/token   the CLI's poll: 202 while pending, 429 when polled too often
                                   (slow_down), 401 expired_token or access_denied (in the
                                   error's details.reason), or {token, user, expires_at}

Each sign-in and each refusal goes to the audit log as ``sso:SignIn``.
"""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access.audit import Outcome
from cumulo.access.oidc import (
    FLOW_TTL_S,
    DeviceFlows,
    Flow,
    OidcClient,
    binding_hash,
    check_settings,
    issue_for_device,
    sign_in,
)
from cumulo.access.signin import RateLimiter
from cumulo.config import OidcSettings
from cumulo.db import get_session
from cumulo.errors import (
    CumuloError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from cumulo.server.auth import LOGIN_COOKIE, same_origin
from cumulo.server.login import DEFAULT_NEXT, _form, _safe_next
from cumulo.services import services

__all__ = ["BINDING_COOKIE", "Sso", "router"]

log = logging.getLogger("cumulo.access")

BINDING_COOKIE = "cumulo_sso"
ACTION = "sso:SignIn"
# Sign-ins begun and user codes tried, per client address: each holds memory for ten minutes,
# and a user code is a secret of 20^8 values that must not be guessed.
LIMITER = RateLimiter(per_minute=30, burst=30)


@dataclass(frozen=True)
class Sso:
    """Single sign-on, as the server runs it: made at start when ``[oidc]`` is set."""

    settings: OidcSettings
    client: OidcClient
    devices: DeviceFlows


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Entered after the app's own lifespan (FastAPI nests a router's inside it): the
    # services, and so the settings, are there.
    settings = app.state.services.settings.oidc
    if settings is None:
        yield {"sso": None}
        return
    check_settings(settings)  # a wrong role or group name stops the start, saying which
    sso = Sso(settings, OidcClient(settings), DeviceFlows())
    try:
        yield {"sso": sso}
    finally:
        sso.client.close()


router = APIRouter(include_in_schema=False, lifespan=_lifespan)


def _sso(request: Request) -> Sso:
    sso: Sso | None = getattr(request.state, "sso", None)
    if sso is None:
        raise NotFound("single sign-on is not set up on this server: an admin sets [oidc] "
                       "issuer, client_id and client_secret (docs/access.md, 'Single sign-on')")
    return sso


def _base(request: Request) -> str:
    """This server's address as the browser knows it (and so the callback's, which must be
    registered with the provider)."""
    return str(request.base_url).rstrip("/")


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _audit(request: Request, *, user: str | None, outcome: Outcome,
           details: dict[str, Any]) -> None:
    services(request).trail.event(  # written off the request, in order
        user=user, action=ACTION, resource=f"user/{user}" if user else "sso",
        outcome=outcome, source=_source(request), details=details)


# --- pages -------------------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 "
          "1rem} .message{color:#b00020} code{font-size:1.4rem;letter-spacing:.1rem}")


def _page(title: str, body: str, *, status: int = 200, form_to: str = "",
          refresh: str | None = None, retry_after: float | None = None) -> HTMLResponse:
    """A page that loads nothing and runs no script; ``form_to``: another origin its form may
    lead to (the provider, after the form's redirect)."""
    targets = f"'self' {form_to}" if form_to else "'self'"
    headers = {"cache-control": "no-store", "content-security-policy":
               f"default-src 'none'; style-src 'unsafe-inline'; form-action {targets}; "
               "frame-ancestors 'none'; base-uri 'none'"}
    if retry_after is not None:
        headers["retry-after"] = str(max(1, int(retry_after + 0.999)))
    meta = (f'<meta http-equiv="refresh" content="0;url={html.escape(refresh)}">'
            if refresh is not None else "")
    return HTMLResponse(
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)} - Cumulo</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_STYLE}</style></head>\n<body><h1>Cumulo</h1>\n{body}\n</body></html>\n",
        status_code=status, headers=headers)


def _refusal_page(exc: CumuloError, *, next_: str = DEFAULT_NEXT,
                  device: bool = False) -> HTMLResponse:
    again = ("Run <code>cumulo login --sso</code> again for a new code." if device else
             f'<a href="/login/sso?next={html.escape(quote(next_, safe="/"))}">Try again</a>, '
             f'or <a href="/login?next={html.escape(quote(next_, safe="/"))}">sign in another '
             "way</a>.")
    wait = exc.retry_after if isinstance(exc, TooManyRequests | Unavailable) else None
    return _page("Sign-in refused", f'<p class="message" role="alert">Single sign-on refused: '
                 f"{html.escape(exc.message)}</p>\n<p>{again}</p>", status=exc.status,
                 retry_after=wait)


def _to_provider(request: Request, sso: Sso, *, next_: str,
                 device_code: str | None = None) -> Response:
    secret = secrets.token_urlsafe(32)
    url, _ = sso.client.begin(f"{_base(request)}/login/sso/callback", next=next_,
                              binding=binding_hash(secret), device_code=device_code)
    response = RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})
    response.set_cookie(BINDING_COOKIE, secret, max_age=FLOW_TTL_S, path="/login/sso",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


# --- the browser -------------------------------------------------------------------------------


@router.get("/login/sso")
def start(request: Request, next: str | None = None) -> Response:
    sso = _sso(request)
    next_ = _safe_next(next)
    try:
        LIMITER.check(_source(request))
        return _to_provider(request, sso, next_=next_)
    except (TooManyRequests, Unavailable) as exc:
        return _refusal_page(exc, next_=next_)


@router.get("/login/sso/callback")
def callback(request: Request, state: str = "", code: str = "", iss: str | None = None,
             error: str | None = None, error_description: str | None = None,
             session: Session = Depends(get_session)) -> Response:
    sso = _sso(request)
    flow: Flow | None = None
    via = "browser"
    try:
        flow = sso.client.flows.take(state, binding_hash(request.cookies.get(BINDING_COOKIE,
                                                                             "")))
        via = "device" if flow.device_code else "browser"
        if error is not None:
            said = f"{error} ({error_description})" if error_description else error
            raise Unauthorized(f"the provider did not sign you in: {said}",
                               details={"reason": "provider_refused"})
        if not code:
            raise Unauthorized("the provider's answer has no code",
                               details={"reason": "malformed"})
        identity = sso.client.complete(flow, code, iss=iss)
        done = sign_in(session, sso.settings, identity, token=flow.device_code is None)
    except CumuloError as exc:  # refused (401), the provider away (503), the last admin (409)
        if flow is not None and flow.device_code is not None:
            sso.devices.refuse(flow.device_code, exc.message)
        _audit(request, user=exc.details.get("user"),
               outcome="failed" if isinstance(exc, Unavailable) else "denied",
               details={"via": via, "reason": exc.details.get("reason", exc.code),
                        "why": exc.message})
        return _refusal_page(exc, next_=flow.next if flow else DEFAULT_NEXT,
                             device=via == "device")
    _audit(request, user=done.user, outcome="allowed", details={
        "via": via, "subject": identity.subject, "created": done.created,
        "groups_added": done.added, "groups_removed": done.removed})
    if flow.device_code is not None:
        if not sso.devices.approve(flow.device_code, done.user_id):
            return _refusal_page(Unauthorized(
                "the command line stopped waiting for this sign-in (it waits "
                f"{FLOW_TTL_S // 60} minutes), or another browser finished it first"),
                device=True)
        response: Response = _page("Signed in", f"<p>Signed in as <b>{html.escape(done.user)}"
                                   "</b> for the command line: go back to your terminal, it "
                                   "has its token now. You can close this page.</p>")
    else:
        assert done.signed is not None
        target = html.escape(flow.next)
        response = _page("Signed in", f'<p>Signed in as <b>{html.escape(done.user)}</b>. '
                         f'Going on to <a href="{target}">{target}</a>...</p>',
                         refresh=flow.next)
        response.set_cookie(LOGIN_COOKIE, done.signed.secret, httponly=True,
                            samesite="strict", path="/", secure=request.url.scheme == "https")
    response.delete_cookie(BINDING_COOKIE, path="/login/sso", httponly=True, samesite="lax")
    return response


# --- the CLI's device flow ---------------------------------------------------------------------


@router.post("/login/sso/device")
def device_start(request: Request) -> JSONResponse:
    sso = _sso(request)
    LIMITER.check(_source(request))
    started = sso.devices.start()
    page = f"{_base(request)}/login/sso/device"
    return JSONResponse({
        "device_code": started.device_code, "user_code": started.user_code,
        "verification_uri": page,
        "verification_uri_complete": f"{page}?user_code={started.user_code}",
        "interval": started.interval, "expires_in": sso.devices.expires_in(started),
    }, headers={"cache-control": "no-store"})


def _code_form(message: str = "", status: int = 200) -> HTMLResponse:
    shown = f'<p class="message" role="alert">{html.escape(message)}</p>\n' if message else ""
    return _page("Sign in the command line", f"{shown}<p>Enter the code that <code>cumulo login "
                 "--sso</code> shows:</p>\n<form method=\"get\" action=\"/login/sso/device\">"
                 '<input name="user_code" autocomplete="off" autofocus required> '
                 '<button type="submit">Next</button></form>', status=status)


@router.get("/login/sso/device")
def device_page(request: Request, user_code: str | None = None) -> HTMLResponse:
    sso = _sso(request)
    if not user_code:
        return _code_form()
    try:
        LIMITER.check(_source(request))
        waiting = sso.devices.by_user_code(user_code)
    except TooManyRequests as exc:
        return _refusal_page(exc, device=True)
    except NotFound as exc:
        return _code_form(exc.message, status=404)
    issuer = urlsplit(sso.settings.issuer)
    return _page("Sign in the command line", (
        "<p>A command line (<code>cumulo login --sso</code>) asks to sign in to Cumulo as "
        "you. It shows this code:</p>\n"
        f"<p><code>{html.escape(waiting.user_code)}</code></p>\n"
        "<p>Go on only if you started it yourself and it shows this same code: whoever "
        "runs it will act as you.</p>\n"
        '<form method="post" action="/login/sso/device/confirm">'
        f'<input type="hidden" name="user_code" value="{html.escape(waiting.user_code)}">'
        f'<button type="submit">Sign in with {html.escape(sso.settings.name)}</button>'
        "</form>"), form_to=f"{issuer.scheme}://{issuer.netloc}")


@router.post("/login/sso/device/confirm")
async def device_confirm(request: Request) -> Response:
    sso = _sso(request)
    sent_by_a_page = "origin" in request.headers or "referer" in request.headers
    if sent_by_a_page and not same_origin(request):
        raise Forbidden("the sign-in form was sent from a page of another site")
    form = await _form(request)
    try:
        LIMITER.check(_source(request))
        waiting = sso.devices.by_user_code(form.get("user_code", ""))
        return await run_in_threadpool(_to_provider, request, sso, next_="/",
                                       device_code=waiting.device_code)
    except NotFound as exc:
        return _code_form(exc.message, status=404)
    except (TooManyRequests, Unavailable) as exc:
        return _refusal_page(exc, device=True)


class DeviceToken(BaseModel):
    device_code: str


@router.post("/login/sso/device/token")
def device_token(request: Request, sent: DeviceToken,
                 session: Session = Depends(get_session)) -> JSONResponse:
    sso = _sso(request)
    poll = sso.devices.poll(sent.device_code)
    if poll.status == "slow_down":
        raise TooManyRequests(f"polled too often: wait {poll.interval} s between polls",
                              details={"reason": "slow_down", "interval": poll.interval},
                              retry_after=poll.interval)
    if poll.status == "authorization_pending":
        return JSONResponse({"status": "authorization_pending", "interval": poll.interval},
                            status_code=202, headers={"cache-control": "no-store"})
    assert poll.user_id is not None
    signed = issue_for_device(session, poll.user_id)
    return JSONResponse({"token": signed.secret, "user": signed.user,
                         "expires_at": signed.expires_at.isoformat()},
                        headers={"cache-control": "no-store"})
