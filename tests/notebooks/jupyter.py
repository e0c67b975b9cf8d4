"""Opening a notebook through Cumulo, as a browser does: the login cookie, its pages, and a
kernel's WebSocket carrying Jupyter's messages."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.services import Cumulo

__all__ = ["LOGIN_COOKIE", "browser", "eventually", "execute", "wait_lab", "wait_state"]

LOGIN_COOKIE = "cumulo_token"


def browser(server: Cumulo, token: str) -> httpx.Client:
    """A browser signed in to Cumulo: the login cookie, pages asked for as pages."""
    page = httpx.Client(base_url=server.url, cookies={LOGIN_COOKIE: token}, timeout=30,
                        headers={"accept": "text/html,*/*", "origin": server.url})
    server.clients.append(page)  # closed with the server
    return page


def eventually(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """Poll ``check`` until it holds, or fail saying ``what`` never happened. For what the proxy
    reads again once a second (a notebook's route, a user's rights): it shows within about a
    second, rather than a fixed sleep past it."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {timeout:g} s")
        time.sleep(0.05)


def wait_state(server: Cumulo, name: str, states: tuple[str, ...],
               timeout: float = 60) -> dict[str, Any]:
    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        nb: dict[str, Any] = client.notebooks.get(name)
        if nb["state"] in states:
            return nb
        if time.monotonic() > deadline:
            raise AssertionError(f"notebook {name} stayed {nb['state']}: {nb}")
        time.sleep(0.1)


def wait_lab(page: httpx.Client, name: str, timeout: float = 60) -> float:
    """Seconds until the notebook's JupyterLab page answers through the proxy."""
    start = time.monotonic()
    while True:
        r = page.get(f"/notebooks/{name}/lab")
        if r.status_code == 200 and "JupyterLab" in r.text:
            return time.monotonic() - start
        assert r.status_code in (200, 503), r.text[:500]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{name}'s JupyterLab did not answer: {r.status_code} "
                                 f"{r.text[:500]}")
        time.sleep(0.05)


def execute(server: Cumulo, name: str, kernel: str, code: str, *, token: str,
            origin: str | None) -> dict[str, Any]:
    """Run ``code`` in the kernel over its WebSocket, through the proxy; its execute_result."""
    url = (server.url.replace("http://", "ws://")
           + f"/notebooks/{name}/api/kernels/{kernel}/channels")
    headers = {"Cookie": f"{LOGIN_COOKIE}={token}"}
    msg_id = uuid.uuid4().hex

    async def run() -> dict[str, Any]:
        async with connect(url, additional_headers=headers, origin=origin,  # type: ignore[arg-type]
                           open_timeout=20) as ws:
            await ws.send(json.dumps({
                "channel": "shell", "buffers": [], "metadata": {}, "parent_header": {},
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "version": "5.3",
                           "session": uuid.uuid4().hex, "username": "test", "date": ""},
                "content": {"code": code, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False,
                            "stop_on_error": True}}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] in ("execute_result", "error"):
                    return msg  # type: ignore[no-any-return]

    return asyncio.run(run())
