"""The one exception tree of Cumulo.

::

    CumuloError                 500  internal    a bug, or something we did not foresee
     ├── Invalid                400  invalid     the request is wrong: fix the input
     │    └── TooLarge          413  too_large   the body is over a limit
     ├── Unauthorized           401  unauthorized  no token, or a wrong, expired or revoked one
     ├── Forbidden              403  forbidden   the token is fine but may not do this
     ├── NotFound               404  not_found   the thing named does not exist
     ├── Conflict               409  conflict    the thing exists, or its state forbids this
     │    └── QuotaExceeded     409  quota_exceeded  a project's quota would be passed
     ├── TooManyRequests        429  too_many_requests  over a rate (sign-in attempts): wait
     └── Unavailable            503  unavailable a database, storage or cluster cannot be reached

The server maps each class to its HTTP status and sends ``{"error": {"code", "message",
"details"}}``; the SDK raises the same class again from that body; the CLI prints the message on
one line and exits with status 1.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "CumuloError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "QuotaExceeded",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "error_from_payload",
]


class CumuloError(Exception):
    """Root of every error Cumulo raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_payload(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Invalid(CumuloError):
    status = 400
    code = "invalid"


class TooLarge(Invalid):
    status = 413
    code = "too_large"


class Unauthorized(CumuloError):
    status = 401
    code = "unauthorized"


class Forbidden(CumuloError):
    status = 403
    code = "forbidden"


class NotFound(CumuloError):
    status = 404
    code = "not_found"


class Conflict(CumuloError):
    status = 409
    code = "conflict"


class QuotaExceeded(Conflict):
    """The work would take a project past one of its quotas (``cumulo projects show``):
    ``details`` names the project, the quota, its limit, what is in use and what was asked."""

    code = "quota_exceeded"


class TooManyRequests(CumuloError):
    """Over a rate (sign-in attempts from one address, say): ``retry_after`` (seconds) says
    when the next try is let through. The server sends it as ``Retry-After`` and in
    ``details``, so the SDK's copy has it too."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        details = dict(details or {})
        if retry_after is None and isinstance(details.get("retry_after"), int | float):
            retry_after = float(details["retry_after"])
        if retry_after is not None:
            details["retry_after"] = math.ceil(retry_after)
        super().__init__(message, details=details)
        self.retry_after = retry_after


class Unavailable(CumuloError):
    """Not now: a dependency is down, or the server is saturated. ``retry_after`` (seconds)
    says when to try again; the server sends it as ``Retry-After``."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


_BY_CODE: dict[str, type[CumuloError]] = {
    cls.code: cls
    for cls in (CumuloError, Invalid, TooLarge, Unauthorized, Forbidden, NotFound, Conflict,
                QuotaExceeded, TooManyRequests, Unavailable)
}


def error_from_payload(status: int, payload: Any) -> CumuloError:
    """Rebuild the exception a server sent; used by the SDK."""
    body = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(body, dict) and "message" in body:
        cls = _BY_CODE.get(str(body.get("code")), CumuloError)
        details = body.get("details") if isinstance(body.get("details"), dict) else None
        return cls(str(body["message"]), details=details)
    for cls in _BY_CODE.values():
        if cls.status == status and cls not in (TooLarge, QuotaExceeded):
            return cls(f"server answered {status}: {str(payload)[:200]}")
    return CumuloError(f"server answered {status}: {str(payload)[:200]}")
