"""REST routes of model monitoring: ``/api/v1/monitors``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.db import get_session
from cumulo.errors import NotFound
from cumulo.permissions import allow
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.serving.monitors import service
from cumulo.serving.monitors.models import MonitorRun
from cumulo.serving.monitors.runs import finish_runs, start_run

__all__ = ["monitors_router"]

monitors_router = APIRouter(prefix="/monitors", tags=["monitors"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


class MonitorIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    name: str
    endpoint: str = Field(description="the endpoint whose captured requests are compared")
    baseline: str = Field(description="DB.TABLE@vN: the data the model was trained on; "
                          "DB.TABLE pins its current version")
    schedule: str | None = Field(None, description="cron (UTC), e.g. '0 * * * *'; none: run "
                                 "by hand only")
    window: float | str | None = Field(None, description="each run covers this much (seconds "
                                       "or 1h, 1d); default: since the last run")
    thresholds: dict[str, float] | str | None = Field(
        None, description="alert past these: psi, ks, missing, out_of_range, unseen (above), "
        "accuracy (below), mae, rmse (above); default psi=0.2")
    labels: str | None = Field(None, description="DB.TABLE of true labels, joined by key")
    key: str | None = Field(None, description="the column requests and labels share")
    label_column: str | None = Field(None, description="the labels' column; default the one "
                                     "besides the key")
    prediction_column: str | None = Field(None, description="the baseline's predictions; "
                                          "default 'prediction' if it has one")
    webhook: str | None = Field(None, description="alerts are POSTed here too")


def _registry(request: Request) -> Any:
    from cumulo.ml.registry import Registry

    return Registry(services(request).tracking)


@monitors_router.post("", dependencies=[allow("monitors:Create", "monitor/*")],
                      status_code=201, summary="Create a monitor of an endpoint")
def create_monitor(body: MonitorIn, session: DbSession, caller: Caller,
                   request: Request) -> dict[str, Any]:
    monitor = service.create_monitor(session, services(request).storage, caller,
                                     service.MonitorSpec(**body.model_dump()),
                                     registry=lambda: _registry(request))
    return service.monitor_doc(session, monitor)


@monitors_router.get("", dependencies=[allow("monitors:List", "monitor/*")],
                     summary="List monitors (of one endpoint with ?endpoint=)")
def list_monitors(session: DbSession, endpoint: str | None = None) -> list[dict[str, Any]]:
    return service.monitors_docs(session, service.list_monitors(session, endpoint=endpoint))


@monitors_router.get("/{name}", dependencies=[allow("monitors:Read", "monitor/{name}")],
                     summary="Show a monitor, with its last run")
def show_monitor(name: str, session: DbSession) -> dict[str, Any]:
    return service.monitor_doc(session, service.get_monitor(session, name))


@monitors_router.delete("/{name}", dependencies=[allow("monitors:Delete", "monitor/{name}")],
                        status_code=204, summary="Remove a monitor (its report table stays)")
def delete_monitor(name: str, session: DbSession) -> Response:
    service.delete_monitor(session, name)
    return Response(status_code=204)


@monitors_router.post("/{name}/runs", dependencies=[allow("monitors:Run", "monitor/{name}")],
                      status_code=202, summary="Start a run of a monitor now")
def run_now(name: str, session: DbSession, caller: Caller,
            request: Request) -> dict[str, Any]:
    """Start comparing what was captured since the last run (or the monitor's window): the
    run, ``running`` while its job computes the figures (follow it at
    ``/monitors/NAME/runs/ID``), or ended already (nothing captured yet; or ``failed``, with
    ``message``, when its job could not be started)."""
    running = services(request)
    monitor = service.get_monitor(session, name)
    run = start_run(session, running.storage, monitor, trigger=f"by {caller.user_name}",
                    owner=running.plane.id)
    if run.job_id is not None and running.monitors is not None:
        running.monitors.started()
    return service.run_doc(run)


@monitors_router.get("/{name}/runs/{run_id}",
                     dependencies=[allow("monitors:Read", "monitor/{name}")],
                     summary="One run of a monitor, with its figures")
def show_run(name: str, run_id: int, session: DbSession, request: Request) -> dict[str, Any]:
    """The run; one whose job has just ended is recorded first, so that a caller waiting
    for it sees its figures at once."""
    running = services(request)
    monitor = service.get_monitor(session, name)
    run = session.get(MonitorRun, run_id)
    if run is None or run.monitor_id != monitor.id:
        raise NotFound(f"monitor {name!r} has no run {run_id} ('cumulo monitors reports "
                       f"{name}' lists its runs)")
    if run.state == "running" and run.job_id is not None and finish_runs(
            session, running.storage, run_id=run.id, owner=running.plane.id):
        session.expire_all()
        run = session.get(MonitorRun, run_id)
        assert run is not None
    return service.run_doc(run)


@monitors_router.get("/{name}/runs", dependencies=[allow("monitors:Read", "monitor/{name}")],
                     summary="A monitor's runs and their figures, newest first")
def list_runs(name: str, session: DbSession,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    monitor = service.get_monitor(session, name)
    runs = session.scalars(select(MonitorRun).where(MonitorRun.monitor_id == monitor.id)
                           .order_by(MonitorRun.id.desc()).limit(limit))
    return [service.run_doc(r) for r in runs]
