"""REST routes of pipelines: ``/api/v1/pipelines``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.access.users import user_names
from cumulo.db import get_session, utcnow
from cumulo.permissions import Holder, allow, query_project
from cumulo.pipelines import runs, schedules, service
from cumulo.pipelines.components import COMPONENTS, component_doc
from cumulo.pipelines.definition import check, schema
from cumulo.pipelines.models import Pipeline, PipelineRun, PipelineSchedule, PipelineVersion
from cumulo.principal import Principal, current_principal
from cumulo.services import services

__all__ = ["lineage_router", "router"]

router = APIRouter(prefix="/pipelines", tags=["pipelines"])
# A version is a 32-bit integer column (PostgreSQL's): one past it, asked for, was an
# OverflowError (a 500) instead of a 400.
_MAX_VERSION = 2**31 - 1
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


class PipelineOut(BaseModel):
    name: str
    version: int = Field(description="the version shown (the latest, unless asked)")
    latest_version: int
    description: str
    source: str = Field(description="json (a document, or the designer) or python")
    definition: dict[str, Any]
    created: bool = Field(False, description="on create: whether this is a new version")
    project: str | None = Field(None, description="the project it belongs to, or none")
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class PipelineRow(BaseModel):
    name: str
    latest_version: int
    description: str
    nodes: int
    project: str | None
    created_by: str | None
    updated_at: datetime


def _out(session: Session, pipeline: Pipeline, row: PipelineVersion,
         created: bool = False) -> PipelineOut:
    names = user_names(session, [pipeline.created_by])
    return PipelineOut(name=pipeline.name, version=row.version,
                       latest_version=pipeline.latest_version,
                       description=pipeline.description, source=row.source,
                       definition=row.definition, created=created,
                       project=projects.name_of(session, pipeline.project_id),
                       created_by=names.get(pipeline.created_by),
                       created_at=pipeline.created_at, updated_at=pipeline.updated_at)


@router.get("/schema",
            dependencies=[allow("pipelines:List", "pipeline/*")],
            summary="The JSON Schema of a pipeline definition")
def definition_schema() -> dict[str, Any]:
    return schema()


@router.get("/components",
            dependencies=[allow("pipelines:List", "pipeline/*")], summary="The component library")
def components() -> list[dict[str, Any]]:
    """Each component's typed inputs, outputs and parameters: the designer's palette."""
    return [component_doc(c) for c in COMPONENTS.values()]


@router.post("/-/validate",
             dependencies=[allow("pipelines:List", "pipeline/*")],
             summary="Check a definition without storing it")
def validate(doc: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """The definition in its canonical form (defaults filled in), or 400 listing each problem
    with its path in the document (``details.problems``)."""
    return check(doc)


@router.post("",
             dependencies=[allow("pipelines:Create", "pipeline/*", project=query_project)],
             response_model=PipelineOut, status_code=201,
             summary="Create a pipeline, or a new version of one")
def create(doc: Annotated[dict[str, Any], Body()], session: DbSession, caller: Caller,
           response: Response, source: str = "json",
           project: str | None = None) -> PipelineOut:
    """A definition whose name exists becomes that pipeline's next version, unless it is the
    same as the latest (then the latest is returned, with 200 and ``created`` false). The body
    is the definition itself: a new pipeline's project is named by ``?project=NAME``."""
    pipeline, row, created = service.create_pipeline(session, caller, doc, source=source,
                                                     project=project)
    if not created:
        response.status_code = 200
    return _out(session, pipeline, row, created)


@router.get("",
            dependencies=[allow("pipelines:List", "pipeline/*", project=query_project)],
            response_model=list[PipelineRow], summary="List pipelines")
def list_all(session: DbSession, project: str | None = None) -> list[PipelineRow]:
    """Every pipeline, or one project's (``?project=NAME``)."""
    rows = service.list_pipelines(session, project=project)
    names = user_names(session, [p.created_by for p in rows])
    held = projects.names_of(session, (p.project_id for p in rows))
    out = []
    for p in rows:
        latest = service.get_version(session, p)
        out.append(PipelineRow(name=p.name, latest_version=p.latest_version,
                               description=p.description,
                               nodes=len(latest.definition.get("nodes", [])),
                               project=held.get(p.project_id) if p.project_id else None,
                               created_by=names.get(p.created_by), updated_at=p.updated_at))
    return out


# --- runs (declared before /{name} routes: "-" is not a pipeline name) ----------------------------

class RunIn(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="values of the pipeline's parameters; "
                                       "strings are converted to their declared types")
    cluster: str = Field("local", description="where the steps' jobs run")
    version: int | None = Field(None, ge=1, le=_MAX_VERSION,
                                description="the pipeline version; default the latest")


def run_holder(request: Request) -> Holder | None:
    """Who started the route's run and its pipeline's project (rights bound there hold on
    its runs); None: no such run."""
    with services(request).sessions() as session:
        run = session.get(PipelineRun, request.path_params["run_id"])
        if run is None:
            return None
        return Holder(user_names(session, {run.created_by}).get(run.created_by, ""),
                      service.project_of(session, run.pipeline))


def schedule_holder(request: Request) -> Holder | None:
    """Who made the route's schedule and its pipeline's project; None: no such schedule."""
    with services(request).sessions() as session:
        schedule = session.scalar(select(PipelineSchedule).where(
            PipelineSchedule.name == request.path_params["schedule"]))
        if schedule is None:
            return None
        return Holder(user_names(session, {schedule.created_by}).get(schedule.created_by, ""),
                      service.project_of(session, schedule.pipeline))


def _run_out(session: Session, run: PipelineRun, with_steps: bool = True) -> dict[str, Any]:
    names = user_names(session, [run.created_by])
    end = run.finished_at or (utcnow() if run.started_at else None)
    out: dict[str, Any] = {
        "id": run.id, "pipeline": run.pipeline, "version": run.version, "state": run.state,
        "parameters": run.parameters, "cluster": run.cluster, "trigger": run.trigger,
        "retry_of": run.retry_of, "message": run.message,
        "owner": run.owner,  # the control plane that moves it on
        "created_by": names.get(run.created_by), "created_at": run.created_at,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "duration_s": (end - run.started_at).total_seconds() if end and run.started_at
        else None}
    if with_steps:
        out["definition"] = run.definition
        out["steps"] = [{
            "node": s.node, "component": s.component, "state": s.state, "job_id": s.job_id,
            "inputs": s.inputs, "outputs": s.outputs, "message": s.message,
            "log_tail": s.log_tail, "cached_from": s.cached_from, "seconds": s.seconds,
            "started_at": s.started_at, "finished_at": s.finished_at}
            for s in runs.steps_of(session, run)]
    return out


@router.get("/-/runs",
            dependencies=[allow("pipelines:List", "pipeline/*", project=query_project)],
            summary="List pipeline runs, newest first")
def list_runs(session: DbSession, caller: Caller, pipeline: str | None = None,
              project: str | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """The caller's runs (everyone's for an admin), of one pipeline or one project's."""
    return [_run_out(session, r, with_steps=False)
            for r in runs.list_runs(session, caller, pipeline=pipeline, project=project,
                                    limit=limit)]


@router.get("/-/runs/{run_id}",
            dependencies=[allow("pipelines:Read", "pipeline/*", owner=run_holder)],
            summary="Show a run: each step's state, time and outputs")
def show_run(run_id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    return _run_out(session, runs.get_run(session, run_id, caller))


@router.post("/-/runs/{run_id}/retry",
             dependencies=[allow("pipelines:Run", "pipeline/*", owner=run_holder)],
             status_code=201, summary="Run again from the step that failed")
def retry_run(run_id: str, session: DbSession, caller: Caller,
              request: Request) -> dict[str, Any]:
    # Owned (moved on) by this control plane, whose orchestrator is woken now.
    run = runs.retry_run(session, caller, run_id, owner=services(request).plane.id)
    services(request).pipelines.notify()
    return _run_out(session, run)


@router.post("/-/runs/{run_id}/cancel",
             dependencies=[allow("pipelines:Run", "pipeline/*", owner=run_holder)],
             summary="Cancel a run")
def cancel_run(run_id: str, session: DbSession, caller: Caller,
               request: Request) -> dict[str, Any]:
    run = runs.cancel_run(session, caller, run_id)
    services(request).pipelines.notify()
    return _run_out(session, run)


class ScheduleIn(BaseModel):
    name: str | None = Field(None, description="default PIPELINE-cron, PIPELINE-table or "
                                               "PIPELINE-stream")
    cron: str | None = Field(None, description="5 fields (or 6, seconds last), UTC")
    table: str | None = Field(None, description="run when this table gets a new version")
    stream: str | None = Field(None, description="run when this stream has received "
                                                 "`every` records or bytes since the last run")
    every: str | int | None = Field(None, description="with stream: records (1000) or bytes "
                                                      "(5MB)")
    parameters: dict[str, Any] = Field(default_factory=dict)
    cluster: str = "local"
    missed: str = Field("latest", description="missed cron times: skip, latest or all")


@router.get("/-/schedules",
            dependencies=[allow("pipelines:List", "pipeline/*", project=query_project)],
            summary="List schedules and table triggers")
def list_schedules(session: DbSession, pipeline: str | None = None,
                   project: str | None = None) -> list[dict[str, Any]]:
    """Every schedule, of one pipeline or of one project's pipelines."""
    return [schedules.schedule_doc(s)
            for s in schedules.list_schedules(session, pipeline, project=project)]


@router.delete("/-/schedules/{schedule}",
               dependencies=[allow("pipelines:Schedule", "pipeline/*", owner=schedule_holder)],
               status_code=204, summary="Remove a schedule")
def delete_schedule(schedule: str, session: DbSession, caller: Caller) -> Response:
    schedules.delete_schedule(session, caller, schedule)
    return Response(status_code=204)


@router.post("/{name}/schedules",
             dependencies=[allow("pipelines:Schedule", "pipeline/{name}")], status_code=201,
             summary="Run a pipeline on a cron schedule, when a table changes, or when a "
                     "stream has received so many records")
def create_schedule(name: str, body: ScheduleIn, session: DbSession, caller: Caller,
                    request: Request) -> dict[str, Any]:
    row = schedules.create_schedule(
        session, services(request).storage, caller, name, name=body.name, cron=body.cron,
        table=body.table, parameters=body.parameters, cluster=body.cluster,
        missed=body.missed, stream=body.stream, every=body.every,
        streams=services(request).streams)
    services(request).pipelines.notify()
    return schedules.schedule_doc(row)


@router.post("/{name}/runs",
             dependencies=[allow("pipelines:Run", "pipeline/{name}")],
             status_code=201, summary="Run a pipeline")
def start_run(name: str, body: RunIn, session: DbSession, caller: Caller,
              request: Request) -> dict[str, Any]:
    # Owned (moved on) by this control plane, whose orchestrator is woken now.
    run = runs.start_run(session, caller, name, parameters=body.parameters,
                         cluster=body.cluster, version=body.version,
                         owner=services(request).plane.id)
    services(request).pipelines.notify()
    return _run_out(session, run)


@router.get("/{name}",
            dependencies=[allow("pipelines:Read", "pipeline/{name}")],
            response_model=PipelineOut, summary="Show a pipeline")
def show(name: str, session: DbSession,
         version: Annotated[int | None, Query(ge=1, le=_MAX_VERSION)] = None) -> PipelineOut:
    pipeline = service.get_pipeline(session, name)
    return _out(session, pipeline, service.get_version(session, pipeline, version))


@router.get("/{name}/versions",
            dependencies=[allow("pipelines:Read", "pipeline/{name}")],
            summary="A pipeline's versions, newest first")
def versions(name: str, session: DbSession) -> list[dict[str, Any]]:
    pipeline = service.get_pipeline(session, name)
    rows = service.list_versions(session, pipeline)
    names = user_names(session, [r.created_by for r in rows])
    return [{"version": r.version, "source": r.source, "digest": r.digest,
             "nodes": len(r.definition.get("nodes", [])),
             "created_by": names.get(r.created_by), "created_at": r.created_at}
            for r in rows]


@router.delete("/{name}",
               dependencies=[allow("pipelines:Delete", "pipeline/{name}")],
               status_code=204, summary="Delete a pipeline and its versions")
def delete(name: str, session: DbSession, caller: Caller) -> Response:
    service.delete_pipeline(session, caller, name)
    return Response(status_code=204)


lineage_router = APIRouter(prefix="/lineage", tags=["pipelines"])


@lineage_router.get("/{kind}/{ref}",
    dependencies=[allow("pipelines:Read", "pipeline/*")],
    summary="What produced a table, model or endpoint, and "
                    "what used it")
def lineage(kind: str, ref: str, session: DbSession) -> dict[str, Any]:
    """``/lineage/table/sales.orders`` (or ``sales.orders@v3``), ``/lineage/model/churn:3``,
    ``/lineage/endpoint/churn``: the pipeline steps that wrote it, with what they read, back
    to the raw data; the steps that read it; for a model, the endpoints serving it."""
    from cumulo.pipelines import lineage as trace

    what, name, version = trace.parse_thing(kind, ref)
    return trace.trace(session, what, name, version)
