"""``/mlflow/...``: MLflow's REST API and web UI, behind Cumulo's token check.

The standard MLflow client works as it is: ``MLFLOW_TRACKING_URI=http://host:8080/mlflow`` and
``MLFLOW_TRACKING_TOKEN=<a Cumulo token>``. A browser opening the UI without a token is sent to
``/login`` and comes back with a cookie. Requests and responses are streamed through, so
artifacts of any size pass in bounded memory.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cumulo.auth import login_url, signed_in
from cumulo.db import get_session
from cumulo.errors import Unavailable
from cumulo.httplimits import lift_body_limit
from cumulo.logs import request_id
from cumulo.ml.registry import APPROVAL_TAG, Registry
from cumulo.ml.tracking import PREFIX
from cumulo.permissions import PERMISSION_KEY, Permission, allow
from cumulo.principal import Principal, current_principal
from cumulo.services import Running, services

__all__ = ["models_router", "router"]

router = APIRouter(prefix=PREFIX, tags=["mlflow"])
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "authorization"}
# Cumulo's login cookie is not MLflow's business, and Cumulo has checked the Origin already:
# MLflow's own check would refuse any Origin but loopback, the UI's requests included.
_NOT_FORWARDED = _HOP | {"cookie", "origin"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


_REGISTRY_BODY = 1 << 20  # a registry call's JSON; more is not a registry call's


class _TrackingPermission(Permission):
    """MLflow's API through /mlflow: its registry's calls are the registry's actions (so
    that nobody approves or moves an alias through MLflow's own API without the right), the
    rest reads or writes tracking. A browser not signed in yet is sent to /login by the
    route, before any of this is asked."""

    def action_for(self, request: Request) -> str | None:
        path = request.path_params.get("path", "")
        method = request.method
        if "registered-models" in path or "model-versions" in path:
            if method in ("GET", "HEAD") or path.endswith(("/search", "/get")):
                return "models:Read"
            if method == "DELETE" or "/delete" in path:
                return "models:Delete"
            return "models:Register" if path.endswith("/create") else "models:Update"
        if method in ("GET", "HEAD", "OPTIONS") or path.endswith(("/search", "/get",
                                                                  "/get-history")):
            return "tracking:Read"
        return "tracking:Write"

    def resource_for(self, path_params: dict[str, Any]) -> str:
        path = path_params.get("path", "")
        registry = "registered-models" in path or "model-versions" in path
        return "model/*" if registry else "experiment/*"

    async def __call__(self, request: Request) -> None:
        principal = signed_in(request)
        if principal is None:
            return
        path = request.path_params.get("path", "")
        registry = "registered-models" in path or "model-versions" in path
        if not registry or request.method in ("GET", "HEAD", "OPTIONS") \
                or path.endswith(("/search", "/get")):
            await super().__call__(request)
            return
        # A registry change: decided on the model it names (in its JSON body, small), and
        # an approval set through MLflow's own tag or stage calls is models:Approve.
        body: Any = {}
        if int(request.headers.get("content-length") or 0) <= _REGISTRY_BODY:
            with contextlib.suppress(ValueError):
                body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            body = {}
        name = body.get("name") or request.query_params.get("name")
        action = self.action_for(request) or "models:Update"
        if path.endswith("/transition-stage") or (
                path.endswith("/set-tag") and body.get("key") == APPROVAL_TAG):
            action = "models:Approve"
        resource = f"model/{name}" if isinstance(name, str) and name else "model/*"
        request.scope[PERMISSION_KEY] = (action, resource)
        await run_in_threadpool(principal.require, action, resource)


@router.api_route("/{path:path}", methods=METHODS, include_in_schema=False,
                  dependencies=[Depends(_TrackingPermission(None, "experiment/*"))])
async def proxy(path: str, request: Request, running: Running) -> Any:
    # The server mounts this router behind its token check, which lets a browser's request for
    # a page through without a caller: that browser logs in first.
    if signed_in(request) is None:
        return RedirectResponse(login_url(request), status_code=303)
    base = await run_in_threadpool(running.tracking.ensure)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    rid = request_id.get()
    if rid:  # the id this request was given (server/middleware.py), for MLflow's log too
        headers["x-request-id"] = rid
    has_body = request.method in ("POST", "PUT", "PATCH", "DELETE")
    lift_body_limit(request)  # artifacts (models) stream through to MLflow
    query = f"?{request.url.query}" if request.url.query else ""
    upstream = running.mlflow_http.build_request(
        request.method, f"{base}/{path}{query}", headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        response = await running.mlflow_http.send(upstream, stream=True)
    except httpx.TransportError as exc:
        raise Unavailable(f"MLflow's tracking server did not answer: {exc}") from exc
    return StreamingResponse(
        response.aiter_raw(), status_code=response.status_code,
        headers={k: v for k, v in response.headers.items() if k.lower() not in _HOP},
        background=BackgroundTask(response.aclose),
    )


# --- /api/v1/models: the registry ----------------------------------------------------------

models_router = APIRouter(prefix="/models", tags=["models"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


def _registry(request: Request) -> Registry:
    return Registry(services(request).tracking)


class AliasIn(BaseModel):
    version: str


class ApprovalIn(BaseModel):
    status: str = Field(description="pending, approved or rejected")


class TagIn(BaseModel):
    key: str
    value: str
    version: str | None = None


class DescriptionIn(BaseModel):
    description: str
    version: str | None = None


@models_router.get("", dependencies=[allow("models:List", "model/*")], summary="Registered models")
def list_models(request: Request) -> list[dict[str, Any]]:
    return _registry(request).list()


@models_router.get("/{name}",
                   dependencies=[allow("models:Read", "model/{name}")],
                   summary="A model: aliases, tags, latest version")
def show_model(name: str, request: Request) -> dict[str, Any]:
    return _registry(request).get(name)


@models_router.get("/{name}/versions",
                   dependencies=[allow("models:Read", "model/{name}")],
                   summary="A model's versions, with approval status")
def model_versions(name: str, request: Request) -> list[dict[str, Any]]:
    return _registry(request).versions(name)


@models_router.get("/{name}/versions/{version}",
                   dependencies=[allow("models:Read", "model/{name}")],
                   summary="One version, with its lineage")
def model_version(name: str, version: str, request: Request) -> dict[str, Any]:
    return _registry(request).version(name, version)


@models_router.put("/{name}/aliases/{alias}",
                   dependencies=[allow("models:Update", "model/{name}")],
                   summary="Point an alias at a version")
def set_alias(name: str, alias: str, body: AliasIn, request: Request, session: DbSession,
              caller: Caller) -> dict[str, Any]:
    return _registry(request).set_alias(session, caller, name, alias, body.version)


@models_router.delete("/{name}/aliases/{alias}",
    dependencies=[allow("models:Update", "model/{name}")],
    summary="Remove an alias")
def remove_alias(name: str, alias: str, request: Request, session: DbSession,
                 caller: Caller) -> dict[str, Any]:
    return _registry(request).remove_alias(session, caller, name, alias)


@models_router.get("/{name}/aliases/history",
                   dependencies=[allow("models:Read", "model/{name}")],
                   summary="Every alias move, oldest first")
def alias_history(name: str, request: Request, session: DbSession) -> list[dict[str, Any]]:
    return _registry(request).history(session, name)


@models_router.put("/{name}/versions/{version}/approval",
                   dependencies=[allow("models:Approve", "model/{name}")],
                   summary="Approve or reject a version")
def set_approval(name: str, version: str, body: ApprovalIn,
                 request: Request) -> dict[str, Any]:
    return _registry(request).set_approval(name, version, body.status)


@models_router.post("/{name}/tags",
    dependencies=[allow("models:Update", "model/{name}")],
    summary="Tag a model or one of its versions")
def set_tag(name: str, body: TagIn, request: Request) -> dict[str, str]:
    _registry(request).set_tag(name, body.key, body.value, version=body.version)
    return {"tagged": name}


@models_router.patch("/{name}",
    dependencies=[allow("models:Update", "model/{name}")],
    summary="Describe a model or one of its versions")
def describe(name: str, body: DescriptionIn, request: Request) -> dict[str, str]:
    _registry(request).describe(name, body.description, version=body.version)
    return {"described": name}
