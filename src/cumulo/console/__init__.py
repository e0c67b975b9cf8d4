"""The web console (the AWS console, SageMaker Studio): a React app that the control plane serves.

Its source is ``console/`` at the top of the repository; ``make up`` (or ``make console``) builds
it into ``cumulo/console/dist``, and ``CUMULO_CONSOLE_DIR`` may point at another build. The app
talks to nothing but the public REST API of the server that served it: its Content-Security-Policy
forbids requests to any other host.

Pages live at ``/``, ``/files``, ``/tables``, ``/sql``, ``/jobs``, ``/models``, ``/endpoints``,
``/pipelines``, ``/streams``, ``/costs``, ``/backups``, and for identity and access ``/users``,
``/groups``, ``/roles``, ``/policies``, ``/access``, ``/projects`` and ``/audit`` (and paths below
them): each answers the app's ``index.html``, and the app's router shows the page; so does
``/notebooks``, but not the paths below it, which are the notebooks themselves. Built files
are under ``/assets``, named by their content, so a browser may keep them for good.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["SECTIONS", "built_dir", "mount"]

SECTIONS = ("files", "tables", "sql", "jobs", "models", "endpoints", "pipelines", "streams",
            "costs", "users", "groups", "roles", "policies", "access", "projects", "audit",
            "backups")
# Pages with no pages below them: "/notebooks/NAME/" is a notebook server, behind its proxy.
SINGLE_PAGES = ("notebooks",)
BUILT = Path(__file__).parent / "dist"
# Scripts and styles from this server only, requests to this server only, never framed.
# Inline styles are allowed: the pipeline designer's canvas positions its nodes with them.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
_PAGE_HEADERS = {"content-security-policy": CSP, "cache-control": "no-cache",
                 "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}
_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cumulo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}
</style></head><body><h1>Cumulo</h1>
<p>The web console is not built: <code>{where}</code> has no <code>index.html</code>.</p>
<p>Build it with <code>make console</code> (which <code>make up</code> also runs; it needs
Node.js 20 or newer), then reload this page. The API works without it: see
<a href="/docs">/docs</a>.</p></body></html>
"""


class _Assets(StaticFiles):
    """Built files: their names change with their content, so they never go stale."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        response.headers["x-content-type-options"] = "nosniff"
        return response


def built_dir(configured: str | None = None) -> Path:
    return Path(configured).expanduser() if configured else BUILT


def mount(app: FastAPI, configured: str | None = None) -> None:
    """Serve the console at ``/`` and its sections; a page that says how to build it if not."""
    root = built_dir(configured)
    index = root / "index.html"
    app.mount("/assets", _Assets(directory=root / "assets", check_dir=False), name="console-assets")

    def page() -> Response:
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT.format(where=root), status_code=503,
                                headers={"cache-control": "no-store"})
        return FileResponse(index, media_type="text/html", headers=_PAGE_HEADERS)

    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    for section in SECTIONS:
        app.add_api_route(f"/{section}", page, methods=["GET", "HEAD"], include_in_schema=False)
        app.add_api_route(f"/{section}/{{rest:path}}", page, methods=["GET", "HEAD"],
                          include_in_schema=False)
    for single in SINGLE_PAGES:
        app.add_api_route(f"/{single}", page, methods=["GET", "HEAD"], include_in_schema=False)
