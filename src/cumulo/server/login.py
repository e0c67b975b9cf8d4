"""``/login`` and ``/logout``: how a browser holds a token, for the web console and MLflow's UI.

A browser cannot send ``Authorization: Bearer``, so the user pastes a token into a form once. It
is checked, then kept in an HttpOnly (out of reach of scripts), SameSite=Strict (not sent from
other sites) cookie that ``require_token`` accepts. After logging in the browser goes back to
``next``, which must be a path on this site: never another site (no open redirect). A request
that accepts JSON (the console's) gets JSON instead of pages: the user, or the API's error.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access.tokens import authenticate
from cumulo.db import get_session
from cumulo.errors import Forbidden, Invalid, TooLarge, Unauthorized
from cumulo.server.auth import LOGIN_COOKIE, same_origin

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
DEFAULT_NEXT = "/mlflow/"
MAX_FORM = 4096
# The page loads nothing, runs no script and may not be framed (no clickjacking of the form).
_HEADERS = {"cache-control": "no-store", "content-security-policy":
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in - Cumulo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}
.message{{color:#b00020}}</style></head>
<body><h1>Cumulo</h1>
<p>Paste a Cumulo token to open MLflow's web UI. <code>cumulo tokens create browser</code>
makes one; it is kept in this browser until you <a href="/logout">log out</a>.</p>
{message}
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" required autofocus></label>
<button type="submit">Log in</button></form></body></html>
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


def _page(next_: str, message: str = "", status: int = 200) -> HTMLResponse:
    shown = f'<p class="message">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(_PAGE.format(message=shown, next=html.escape(next_)),
                        status_code=status, headers=_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise TooLarge(f"the login form is over {MAX_FORM} bytes")
    try:
        fields = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"the login form could not be read: {exc}") from exc
    return {key: values[0] for key, values in fields.items()}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get("/login")
def login_page(next: str | None = None) -> HTMLResponse:
    return _page(_safe_next(next))


@router.post("/login")
async def login(request: Request, session: Session = Depends(get_session)) -> Response:
    sent_by_a_page = "origin" in request.headers or "referer" in request.headers
    if sent_by_a_page and not same_origin(request):
        raise Forbidden("the login form was sent from a page of another site")
    form = await _form(request)
    next_ = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    wants_json = _wants_json(request)  # the web console signs in with fetch()
    try:
        principal = await run_in_threadpool(authenticate, session, token)
    except Unauthorized as exc:
        if wants_json:
            raise
        return _page(next_, f"That token was refused: {exc.message}", status=401)
    response: Response = (JSONResponse({"user": principal.user_name}) if wants_json
                          else RedirectResponse(next_, status_code=303))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    response: Response = (Response(status_code=204) if _wants_json(request)
                          else RedirectResponse("/login", status_code=303))
    response.delete_cookie(LOGIN_COOKIE, path="/", httponly=True, samesite="strict")
    return response
