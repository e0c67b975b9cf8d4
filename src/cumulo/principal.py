"""Who is calling: set by the server's auth dependency, read by every service's routes."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cumulo.errors import Unauthorized

__all__ = ["Principal", "current_principal"]


@dataclass(frozen=True)
class Principal:
    user_id: int
    user_name: str
    is_admin: bool
    token_id: int
    via_job: bool = False  # the caller is a job, with the token made for it


def current_principal(request: Request) -> Principal:
    """FastAPI dependency for routes that need to know the caller."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route mounted outside the authenticated router: a bug
        raise Unauthorized("this route needs a token: send 'Authorization: Bearer <token>'")
    return principal  # type: ignore[no-any-return]
