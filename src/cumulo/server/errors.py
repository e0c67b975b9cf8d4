"""The one place where exceptions become HTTP answers."""

from __future__ import annotations

import logging
import math
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

__all__ = ["RETRY_AFTER_S", "error_response", "install_error_handlers", "unexpected_response"]

log = logging.getLogger("cumulo.server")
# What a 503 says to wait: what is away (storage, a cluster, MLflow) or busy (the SQL
# connections) is back, or not, within seconds, and a client that waits less only adds load.
RETRY_AFTER_S = 5
_BY_STATUS: dict[int, type[CumuloError]] = {
    400: Invalid, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: TooLarge,
    429: TooManyRequests,
}


def error_response(exc: CumuloError) -> Response:
    """The HTTP answer for one of Cumulo's errors: its status and ``{"error": ...}`` body."""
    # Unavailable's and TooManyRequests' own wait, if given; rounded up, so that a client
    # that waits what it is told is let through
    wait = getattr(exc, "retry_after", None) or RETRY_AFTER_S
    headers = ({"www-authenticate": "Bearer"} if exc.status == 401
               else {"retry-after": str(max(1, math.ceil(wait)))} if exc.status in (429, 503)
               else None)
    return Response(orjson.dumps(exc.to_payload()), status_code=exc.status, headers=headers,
                    media_type="application/json")


async def _cumulo_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CumuloError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return error_response(Invalid(f"the request is not valid: {text}",
                                  details={"fields": problems}))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: CumuloError = NotFound(f"no route {request.method} {request.url.path}; "
                                      "the API is described at /docs")
    elif exc.status_code == 405:
        error = Invalid(f"{request.method} is not allowed on {request.url.path}")
    else:
        error = _BY_STATUS.get(exc.status_code, CumuloError)(str(exc.detail))
    response = error_response(error)
    response.status_code = exc.status_code
    return response


def unexpected_response(exc: BaseException, path: str) -> Response:
    """The answer for an exception no route meant to raise: 503 when the database is saturated
    (every pooled connection in use past the pool's timeout, or SQLite's writer lock held past
    its busy timeout: not a bug), else a 500 that names an id the server log has the trace
    under. For a caller that handles exceptions itself (server/fastpath.py); the routes' are
    answered the same way through the handlers below."""
    if isinstance(exc, PoolTimeout) or (
            isinstance(exc, OperationalError) and "locked" in str(exc.orig or exc)):
        log.warning("database saturated: %s", type(exc).__name__, extra={"path": path})
        return error_response(Unavailable(
            "the server is busy: every database connection is in use; retry after the time in "
            "Retry-After", retry_after=1))
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s", error_id, extra={"error_id": error_id, "path": path},
              exc_info=exc)
    return error_response(CumuloError(
        f"internal error {error_id}: {type(exc).__name__}; the server log has the details",
        details={"error_id": error_id},
    ))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_response(exc, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CumuloError, _cumulo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _unexpected)
    app.add_exception_handler(OperationalError, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
