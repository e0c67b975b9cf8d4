"""The OpenAPI document at ``/openapi.json``: FastAPI's, with the error answers Cumulo gives.

FastAPI describes every route as answering 422 with its ``HTTPValidationError``; Cumulo answers
a bad request 400 instead (:mod:`cumulo.server.errors`), and every error with one body,
``{"error": {"code", "message", "details"}}`` (:meth:`cumulo.errors.CumuloError.to_payload`).
Here, once for every operation, the 422s are taken out and the statuses an operation can give
are declared with that body, from what the operation is:

=====  ==========================================================================
400    it takes input (parameters or a body): a value that is not valid
401    it needs a token (every route under /api/v1, MLflow, invocations, metrics)
403    it needs a token: one that may not do this (a login cookie from another
       site, another user's thing)
404    it takes input: what it names does not exist
409    it changes something (POST, PUT, PATCH, DELETE)
413    it takes a body read whole (JSON), within ``MAX_BODY``; bodies streamed to
       storage have no such limit
503    it needs a token: the database behind the check can be saturated, and
       what the route reaches (storage, a Ray cluster, MLflow, a replica, the SQL
       connections) away or busy; Retry-After says when to try again
=====  ==========================================================================

A route may declare more of its own (``GET .../objects/{key}``: 206 and 416 for a Range).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from cumulo.server.errors import RETRY_AFTER_S

__all__ = ["ERROR_SCHEMA", "install_openapi", "with_error_answers"]

ERROR_SCHEMA = "Error"
_ERRORS: tuple[type[CumuloError], ...] = (Invalid, Unauthorized, Forbidden, NotFound, Conflict,
                                          TooLarge, Unavailable)
_WHAT = {
    Invalid: "the request is not valid: fix the input",
    Unauthorized: "no token, or a wrong, expired or revoked one",
    Forbidden: "the token is fine but may not do this",
    NotFound: "what the request names does not exist",
    Conflict: "it exists already, or its state forbids this",
    TooLarge: "the request body is over the limit",
    Unavailable: "the server is saturated, or what it asks (storage, a cluster, MLflow) is "
                 "away or busy: try again after Retry-After",
}
_CHANGES = {"post", "put", "patch", "delete"}
_METHODS = _CHANGES | {"get", "head", "options", "trace"}
_VALIDATION = ("HTTPValidationError", "ValidationError")


def _error_schemas() -> dict[str, Any]:
    codes = ", ".join(cls.code for cls in _ERRORS)
    return {
        ERROR_SCHEMA: {
            "title": ERROR_SCHEMA,
            "description": "What every error answer holds (the SDK raises the same class "
                           "again from it: cumulo.errors)",
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
        },
        "ErrorBody": {
            "title": "ErrorBody",
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string",
                         "description": f"the class of the error, one per status: {codes}, "
                                        f"{CumuloError.code} (500: a bug); a route may name "
                                        "its own (416: range_not_satisfiable)"},
                "message": {"type": "string", "description": "what went wrong, and what to do"},
                "details": {"type": "object", "additionalProperties": True,
                            "description": "more about it, e.g. 'fields' for a 400"},
            },
        },
    }


def _answer(cls: type[CumuloError]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": f"{cls.code}: {_WHAT[cls]}",
        "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
    }
    if cls is Unauthorized:
        answer["headers"] = {"WWW-Authenticate": {
            "description": "Bearer", "schema": {"type": "string"}}}
    elif cls is Unavailable:
        answer["headers"] = {"Retry-After": {
            "description": "seconds to wait before trying again (most often "
                           f"{RETRY_AFTER_S})",
            "schema": {"type": "integer", "minimum": 0}}}
    return answer


def _errors_of(method: str, operation: dict[str, Any]) -> list[type[CumuloError]]:
    takes_input = bool(operation.get("parameters")) or "requestBody" in operation
    content = operation.get("requestBody", {}).get("content", {})
    read_whole = any(kind == "application/json" or kind.endswith("+json") for kind in content)
    secured = bool(operation.get("security"))  # behind the token check
    applies = {Invalid: takes_input, Unauthorized: secured, Forbidden: secured,
               NotFound: takes_input, Conflict: method in _CHANGES, TooLarge: read_whole,
               Unavailable: secured}
    return [cls for cls in _ERRORS if applies[cls]]


def with_error_answers(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (FastAPI's document, changed in place) without 422s, with Cumulo's error
    answers on each operation, as the module's docstring says."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_error_schemas())
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for cls in _errors_of(method, operation):
                responses.setdefault(str(cls.status), _answer(cls))
    for name in _VALIDATION:
        schemas.pop(name, None)
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`with_error_answers` of FastAPI's document, made once."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_answers(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
