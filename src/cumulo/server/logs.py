"""``GET /api/v1/logs``: the control plane's own log (``<home>/logs/server.log``), for
administrators (``server:ReadLogs``), as ``cumulo logs [--service NAME] [--since] [-f]``
reads it. Each line is a JSON object with the request id it was written under, so a request's
lines can be found with ``grep`` on its id, here and in its endpoint's replicas' log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from cumulo.config import Settings
from cumulo.errors import Invalid
from cumulo.logfiles import stamp, stream_lines
from cumulo.permissions import allow
from cumulo.services import services
from cumulo.units import parse_time

__all__ = ["router", "server_log"]

router = APIRouter(prefix="/logs", tags=["status"])
_SERVICE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_TIME = "an ISO time or date (2026-11-01T12:00:00Z), or a span back from now (10m, 1h30m)"


def server_log(settings: Settings) -> Path:
    return settings.home / "logs" / "server.log"


def _service_filter(service: str) -> Any:
    """``compute`` keeps the lines of the logger ``cumulo.compute`` and those under it;
    ``uvicorn``, those of ``uvicorn`` (a name that starts with ``cumulo.`` is taken as it is)."""
    if not _SERVICE.match(service):
        raise Invalid(f"--service {service!r} is not a service's name: use one like compute, "
                      "serving, access (the HTTP requests), sql's lake, or uvicorn")
    name = service if service.startswith("cumulo.") or service == "uvicorn" \
        else f"cumulo.{service}"

    def keep(record: dict[str, Any]) -> bool:
        logger = str(record.get("logger", ""))
        return logger == name or logger.startswith(name + ".")

    return keep


@router.get("", dependencies=[allow("server:ReadLogs", "server")],
            summary="The control plane's own log (JSON lines); follow=true streams it live",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def control_plane_log(
    request: Request,
    service: Annotated[str | None, Query(description="only this service's lines: compute, "
                                         "serving, access (requests), lake...")] = None,
    since: Annotated[str | None, Query(description=f"from this time on: {_TIME}")] = None,
    follow: bool = False,
) -> StreamingResponse:
    keep = _service_filter(service) if service else None
    start = stamp(parse_time(since, what="--since")) if since else None
    path = server_log(services(request).settings)
    return StreamingResponse(stream_lines(path, keep=keep, since=start, follow=follow),
                             media_type="text/plain; charset=utf-8")
