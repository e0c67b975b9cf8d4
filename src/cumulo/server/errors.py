"""The one place where exceptions become HTTP answers."""

from __future__ import annotations

import logging
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthorized,
)

__all__ = ["install_error_handlers"]

log = logging.getLogger("cumulo.server")
_BY_STATUS: dict[int, type[CumuloError]] = {
    400: Invalid, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: TooLarge,
}


def _answer(exc: CumuloError) -> Response:
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    return Response(orjson.dumps(exc.to_payload()), status_code=exc.status, headers=headers,
                    media_type="application/json")


async def _cumulo_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CumuloError)
    return _answer(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return _answer(Invalid(f"the request is not valid: {text}", details={"fields": problems}))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: CumuloError = NotFound(f"no route {request.method} {request.url.path}; "
                                      "the API is described at /docs")
    elif exc.status_code == 405:
        error = Invalid(f"{request.method} is not allowed on {request.url.path}")
    else:
        error = _BY_STATUS.get(exc.status_code, CumuloError)(str(exc.detail))
    response = _answer(error)
    response.status_code = exc.status_code
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error %s", error_id, extra={"error_id": error_id})
    return _answer(CumuloError(
        f"internal error {error_id}: {type(exc).__name__}; the server log has the details",
        details={"error_id": error_id},
    ))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CumuloError, _cumulo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
