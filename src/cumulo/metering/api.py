"""``/api/v1/costs``: usage and cost, summed by day, cluster, user, project, tag or kind."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from cumulo.db import get_session
from cumulo.metering import usage
from cumulo.permissions import allow, query_project
from cumulo.services import services

__all__ = ["router"]

router = APIRouter(prefix="/costs", tags=["costs"])
DbSession = Annotated[Session, Depends(get_session)]


@router.get("", dependencies=[allow("costs:Read", project=query_project)],
            summary="Usage and cost, grouped (of one project's work with ?project=NAME: what "
                    "a project's members may read)")
def costs(session: DbSession, request: Request, by: str = "day", since: str | None = None,
          until: str | None = None, kind: str | None = None,
          project: str | None = None) -> dict[str, Any]:
    summary = usage.summarize(session, by=by, since=since, until=until, kind=kind,
                              project=project)
    prices = services(request).settings.prices
    summary["prices"] = {"vcpu_hour": prices.vcpu_hour, "gb_hour": prices.gb_hour,
                         "gpu_hour": prices.gpu_hour, "shard_hour": prices.shard_hour,
                         "million_put_units": prices.million_put_units, "currency": "USD"}
    return summary
