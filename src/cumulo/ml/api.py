"""``/mlflow/...``: MLflow's REST API (and UI), behind Cumulo's token check.

The standard MLflow client works as it is: ``MLFLOW_TRACKING_URI=http://host:8080/mlflow`` and
``MLFLOW_TRACKING_TOKEN=<a Cumulo token>``. Requests and responses are streamed through, so
artifacts of any size pass in bounded memory.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cumulo.errors import Unavailable
from cumulo.ml.tracking import PREFIX
from cumulo.server.auth import require_token

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["mlflow"], dependencies=[Depends(require_token)])
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "authorization"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _client(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(request.app.state, "mlflow_http", None)
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
        request.app.state.mlflow_http = client
    return client


@router.api_route("/{path:path}", methods=METHODS, include_in_schema=False)
async def proxy(path: str, request: Request) -> Any:
    base = await run_in_threadpool(request.app.state.tracking.ensure)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    has_body = request.method in ("POST", "PUT", "PATCH", "DELETE")
    query = f"?{request.url.query}" if request.url.query else ""
    upstream = _client(request).build_request(
        request.method, f"{base}/{path}{query}", headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        response = await _client(request).send(upstream, stream=True)
    except httpx.TransportError as exc:
        raise Unavailable(f"MLflow's tracking server did not answer: {exc}") from exc
    return StreamingResponse(
        response.aiter_raw(), status_code=response.status_code,
        headers={k: v for k, v in response.headers.items() if k.lower() not in _HOP},
        background=BackgroundTask(response.aclose),
    )
