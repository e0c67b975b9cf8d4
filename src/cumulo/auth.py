"""What a route that serves pages to a browser needs of the server's login, without the server.

The server mounts such a router (MLflow's web UI, at ``/mlflow``) behind a token check that
answers 401 to an API client without a token, but lets a browser's request for a page through
with no caller: the route then sends the browser to :func:`login_url`, and it comes back with
the login cookie.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request

from cumulo.principal import Principal

__all__ = ["login_url", "signed_in"]


def signed_in(request: Request) -> Principal | None:
    """The caller, or None for a browser that has yet to log in."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def login_url(request: Request) -> str:
    """Where to send a browser that asked for this page without a token."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(here, safe='')}"
