"""Who is calling: set by the server's auth dependency, read by every service's routes."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cumulo.errors import Forbidden, Unauthorized

__all__ = ["Principal", "current_principal"]

# What a job's own token never does, whatever its user may: it acts for one job while that job
# runs, on the job's data, models and tracking; managing credentials and buckets is for people.
_NOT_FOR_JOBS = {"tokens:manage": "manage tokens", "buckets:manage": "create or delete buckets"}


@dataclass(frozen=True)
class Principal:
    user_id: int
    user_name: str
    is_admin: bool
    token_id: int
    via_job: bool = False  # the caller is a job, with the token made for it
    token_name: str = ""

    def require(self, action: str) -> None:
        """Refuse ``action`` (``tokens:manage``, ``buckets:manage``) to a caller that may not
        take it: the one place this is decided."""
        if self.via_job and action in _NOT_FOR_JOBS:
            raise Forbidden(f"a job's token cannot {_NOT_FOR_JOBS[action]}; it acts only for "
                            "its job, while the job runs", details={"action": action})


def current_principal(request: Request) -> Principal:
    """FastAPI dependency for routes that need to know the caller."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route mounted outside the authenticated router: a bug
        raise Unauthorized("this route needs a token: send 'Authorization: Bearer <token>'")
    return principal  # type: ignore[no-any-return]
