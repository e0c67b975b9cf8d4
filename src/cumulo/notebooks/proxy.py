"""``/notebooks/NAME/...``: a notebook's JupyterLab, reached through Cumulo, behind sign-in.

A generic reverse proxy: HTTP requests and responses are streamed through (httpx, as MLflow's
proxy does), WebSockets (the kernels' channels, terminals) are carried both ways (the
``websockets`` client upstream). Nothing here speaks Jupyter's protocol. Jupyter's token for
the run is added here (``Authorization: token ...``), so no one types one; Cumulo's own login
cookie and the browser's Origin stay here (Cumulo checked them; Jupyter would refuse an Origin
that is not its own address).

Who may open it: its owner, those it is shared with, and whoever the decision point allows
``notebooks:Open`` on ``notebook/NAME`` (admins). A browser not signed in is sent to /login; one
signed in but not allowed gets 403. A notebook that is not running answers a page that says so
(stopped: when and why, with a Start button; starting: a page that reloads until it is up),
never a blank page or a 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cumulo.auth import login_url, signed_in
from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)
from cumulo.httplimits import lift_body_limit
from cumulo.notebooks import service
from cumulo.permissions import PERMISSION_KEY
from cumulo.principal import Principal, decision_ready
from cumulo.services import Running, Services

__all__ = ["router", "sockets"]

router = APIRouter(prefix="/notebooks", include_in_schema=False)  # mounted behind sign-in
sockets = APIRouter(prefix="/notebooks", include_in_schema=False)  # checks its callers itself
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "authorization"}
_NOT_FORWARDED = _HOP | {"cookie", "origin", "referer"}
_NOT_RETURNED = _HOP | {"set-cookie"}
# Cumulo's login cookie (cumulo.server.auth.LOGIN_COOKIE): how a browser's WebSocket signs in.
_LOGIN_COOKIE = "cumulo_token"
ROUTE_TTL = 1.0  # seconds a notebook's route is used before it is read again
_HTTP: dict[int, httpx.AsyncClient] = {}  # per event loop
# WebSockets carried at once (a JupyterLab tab holds one to three), and the largest message
# either way (a kernel's output with images can be megabytes; Jupyter's own limit is 10 MiB).
MAX_SOCKETS = 512
MAX_MESSAGE = 64 * 2**20


class SocketLimit:
    """How many WebSockets this control plane carries; past ``limit`` a new one is refused
    before its handshake (close code 1013, "try again later"), never left to pile up. Used on
    the event loop's one thread only."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


_SOCKETS = SocketLimit(MAX_SOCKETS)
_PAGE_HEADERS = {"cache-control": "no-store", "content-security-policy":
                 "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                 "frame-ancestors 'self'; base-uri 'none'"}


# --- where a notebook is ------------------------------------------------------------------------

_routes: dict[str, tuple[float, service.Route | None]] = {}


async def _route(running: Services, name: str, *, fresh: bool = False) -> service.Route | None:
    """The notebook's route, read at most once a second per notebook (a page of JupyterLab
    makes dozens of requests)."""
    now = time.monotonic()
    cached = _routes.get(name)
    if cached is not None and not fresh and now - cached[0] < ROUTE_TTL:
        return cached[1]

    def read() -> service.Route | None:
        with running.sessions() as session:
            return service.route(session, name)

    found = await run_in_threadpool(read)
    if len(_routes) > 10_000:
        _routes.clear()
    _routes[name] = (now, found)
    return found


def forget(name: str) -> None:
    """Read the notebook's route again at its next request (it was started or stopped)."""
    _routes.pop(name, None)


async def _require_open(principal: Principal, route: service.Route) -> None:
    # Those it is shared with open it as its owner does (a share is the owner's grant).
    owner = principal.user_name if principal.user_id in route.shared_with else route.owner
    args = ("notebooks:Open", f"notebook/{route.name}")
    if decision_ready(principal):
        principal.require(*args, owner=owner, project=route.project)
    else:
        await run_in_threadpool(principal.require, *args, owner=owner, project=route.project)


def _http() -> httpx.AsyncClient:
    loop = id(asyncio.get_running_loop())
    client = _HTTP.get(loop)
    if client is None:
        client = _HTTP[loop] = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
    return client


# --- pages for a notebook that is not running ---------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}"
          "button{padding:.5rem 1.5rem;font-size:1rem} .muted{color:#555}")


def _page(title: str, body: str, *, status: int = 200, reload: bool = False) -> HTMLResponse:
    refresh = '<meta http-equiv="refresh" content="1">' if reload else ""
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{html.escape(title)} - Cumulo</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>")
    headers = dict(_PAGE_HEADERS)
    if reload:
        headers["retry-after"] = "1"
    return HTMLResponse(text, status_code=status, headers=headers)


def _wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def _not_running(route: service.Route, *, page: bool = True) -> HTMLResponse:
    """A page that says the notebook is not running; to JupyterLab's own calls (JSON), an
    error that says so (503)."""
    if not page:
        details = {"notebook": route.name, "state": route.state}
        if route.state not in ("stopped", "failed"):
            raise Unavailable(f"notebook {route.name!r} is {route.state}", details=details,
                              retry_after=1)
        raise Conflict(f"notebook {route.name!r} is {route.state}"
                       + (f" ({route.reason})" if route.reason else "")
                       + f"; 'cumulo notebooks start {route.name}' starts it", details=details)
    name = html.escape(route.name)
    if route.state in ("starting", "running"):  # running: listening any moment now
        waiting = f'<p class="muted">{html.escape(route.waiting)}</p>' if route.waiting else ""
        return _page(f"{route.name} is starting", f"<h1>Notebook {name}</h1>"
                     f"<p>Starting JupyterLab... this page reloads by itself.</p>{waiting}",
                     status=503, reload=True)
    if route.state == "stopping":
        return _page(f"{route.name} is stopping", f"<h1>Notebook {name}</h1>"
                     "<p>Stopping... this page reloads by itself.</p>", status=503, reload=True)
    when = html.escape(route.stopped_at or "")
    why = html.escape(route.reason or "")
    return _page(f"{route.name} is {route.state}", (
        f"<h1>Notebook {name} is {html.escape(route.state)}</h1>"
        f'<p>It {"stopped" if route.state == "stopped" else "ended"} at '
        f"<time>{when}</time> UTC: {why}.</p>"
        '<p class="muted">Its files are kept; starting it again opens them.</p>'
        f'<form method="post" action="/notebooks/{name}/_cumulo/start">'
        '<button type="submit">Start</button></form>'))


# --- HTTP -----------------------------------------------------------------------------------------

async def _caller_and_route(request: Request, running: Services,
                            name: str) -> tuple[Principal, service.Route]:
    principal = signed_in(request)
    if principal is None:  # a browser asking for a page, not signed in: require_token_or_login
        raise Unauthorized("sign in first")
    route = await _route(running, name)
    if route is None:
        raise NotFound(f"no notebook {name!r}; 'cumulo notebooks ls' lists them",
                       details={"notebook": name})
    await _require_open(principal, route)
    return principal, route


@router.api_route("/{name}", methods=["GET", "HEAD"])
async def bare(name: str) -> RedirectResponse:
    return RedirectResponse(f"/notebooks/{name}/", status_code=307)


@router.post("/{name}/_cumulo/start")
async def start_page(name: str, request: Request, running: Running) -> Response:
    """The stopped page's Start button: start it, then show it (starting, until it is up)."""
    if signed_in(request) is None:
        return RedirectResponse(login_url(request), status_code=303)
    principal, route = await _caller_and_route(request, running, name)
    request.scope[PERMISSION_KEY] = ("notebooks:Start", f"notebook/{name}")
    if route.state in ("stopped", "failed"):
        def start() -> None:
            principal.require("notebooks:Start", f"notebook/{name}", owner=route.owner,
                              project=route.project)
            with running.sessions() as session:
                service.start(session, running.storage, principal, name)
        await run_in_threadpool(start)
        running.compute.notify()
        forget(name)
    return RedirectResponse(f"/notebooks/{name}/lab", status_code=303)


@router.api_route("/{name}/{path:path}", methods=METHODS)
async def proxy(name: str, path: str, request: Request, running: Running) -> Response:
    if signed_in(request) is None:
        return RedirectResponse(login_url(request), status_code=303)
    _, route = await _caller_and_route(request, running, name)
    # Each of JupyterLab's requests is not an entry of the audit log (opening it is decided,
    # and refusals are written, as for any route).
    request.scope[PERMISSION_KEY] = (None, f"notebook/{name}")
    if route.address is None or route.secret is None:
        return _not_running(route, page=_wants_page(request))
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    headers["authorization"] = f"token {route.secret}"
    lift_body_limit(request)  # uploads of any size stream through to Jupyter
    query = f"?{request.url.query}" if request.url.query else ""
    http = _http()
    upstream = http.build_request(
        request.method, f"http://{route.address}/notebooks/{name}/{path}{query}",
        headers=headers,
        content=request.stream() if request.method in ("POST", "PUT", "PATCH", "DELETE")
        else None)
    try:
        response = await http.send(upstream, stream=True)
    except httpx.TransportError:
        # It stopped, or is being stopped: what its route says now, not a 502.
        fresh = await _route(running, name, fresh=True)
        if fresh is not None and fresh.address == route.address:
            fresh = service.Route(**{**fresh.__dict__, "address": None, "secret": None,
                                     "state": "starting" if fresh.state == "running"
                                     else fresh.state})
        return _not_running(fresh or route, page=_wants_page(request))
    return StreamingResponse(
        response.aiter_raw(), status_code=response.status_code,
        headers={k: v for k, v in response.headers.items() if k.lower() not in _NOT_RETURNED},
        background=BackgroundTask(response.aclose))


# --- WebSockets ---------------------------------------------------------------------------------

def _same_site(websocket: WebSocket) -> bool:
    """Whether the browser says the socket is opened by a page of this site (cross-site
    WebSocket hijacking: a page elsewhere would otherwise ride the login cookie). A client
    that is no browser sends no Origin, and signs in with a bearer token."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return "authorization" in websocket.headers
    return urlsplit(origin).netloc == websocket.headers.get("host")


async def _ws_caller(running: Services, websocket: WebSocket) -> Principal:
    auth = websocket.headers.get("authorization", "")
    secret = auth[7:].strip() if auth.lower().startswith("bearer ") else \
        websocket.cookies.get(_LOGIN_COOKIE, "")
    if not secret:
        raise Unauthorized("sign in first")
    known = running.tokens.cached(secret)
    if known is not None:
        return known
    return await run_in_threadpool(running.tokens.lookup, secret)


@sockets.websocket("/{name}/{path:path}")
async def socket(websocket: WebSocket, name: str, path: str) -> None:
    running: Services = websocket.app.state.services
    try:
        if not _same_site(websocket):
            raise Forbidden("a WebSocket to a notebook must come from this site's own pages")
        principal = await _ws_caller(running, websocket)
        route = await _route(running, name)
        if route is None:
            raise NotFound(f"no notebook {name!r}")
        await _require_open(principal, route)
        if route.address is None or route.secret is None:
            raise NotFound(f"notebook {name!r} is {route.state}")
    except CumuloError as exc:
        # Said before the handshake completes: the browser sees it refused (403).
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    if not _SOCKETS.take():
        await websocket.close(code=1013, reason=f"{MAX_SOCKETS} notebook connections are open "
                                                "already; try again in a moment")
        return
    try:
        await _carry(websocket, route, path)
    finally:
        _SOCKETS.give_back()


async def _carry(websocket: WebSocket, route: service.Route, path: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.typing import Subprotocol

    query = websocket.url.query
    url = f"ws://{route.address}/notebooks/{route.name}/{path}" + (f"?{query}" if query else "")
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(url, subprotocols=offered or None, max_size=MAX_MESSAGE,
                                 open_timeout=10,
                                 compression=None,
                                 additional_headers={"Authorization": f"token {route.secret}"})
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        await websocket.close(code=1011, reason=f"the notebook did not answer: {exc}"[:120])
        return
    await websocket.accept(subprotocol=upstream.subprotocol)

    async def to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text") or "")

    async def to_browser() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, bytes):
                    await websocket.send_bytes(data)
                else:
                    await websocket.send_text(data)

    tasks = [asyncio.ensure_future(to_upstream()), asyncio.ensure_future(to_browser())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
        with contextlib.suppress(Exception):
            await websocket.close()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
