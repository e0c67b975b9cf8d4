"""REST routes of pipelines: ``/api/v1/pipelines``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cumulo.access.users import user_names
from cumulo.db import get_session
from cumulo.pipelines import service
from cumulo.pipelines.components import COMPONENTS, component_doc
from cumulo.pipelines.definition import check, schema
from cumulo.pipelines.models import Pipeline, PipelineVersion
from cumulo.principal import Principal, current_principal

__all__ = ["router"]

router = APIRouter(prefix="/pipelines", tags=["pipelines"])
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
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class PipelineRow(BaseModel):
    name: str
    latest_version: int
    description: str
    nodes: int
    created_by: str | None
    updated_at: datetime


def _out(session: Session, pipeline: Pipeline, row: PipelineVersion,
         created: bool = False) -> PipelineOut:
    names = user_names(session, [pipeline.created_by])
    return PipelineOut(name=pipeline.name, version=row.version,
                       latest_version=pipeline.latest_version,
                       description=pipeline.description, source=row.source,
                       definition=row.definition, created=created,
                       created_by=names.get(pipeline.created_by),
                       created_at=pipeline.created_at, updated_at=pipeline.updated_at)


@router.get("/schema", summary="The JSON Schema of a pipeline definition")
def definition_schema() -> dict[str, Any]:
    return schema()


@router.get("/components", summary="The component library")
def components() -> list[dict[str, Any]]:
    """Each component's typed inputs, outputs and parameters: the designer's palette."""
    return [component_doc(c) for c in COMPONENTS.values()]


@router.post("/-/validate", summary="Check a definition without storing it")
def validate(doc: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """The definition in its canonical form (defaults filled in), or 400 listing each problem
    with its path in the document (``details.problems``)."""
    return check(doc)


@router.post("", response_model=PipelineOut, status_code=201,
             summary="Create a pipeline, or a new version of one")
def create(doc: Annotated[dict[str, Any], Body()], session: DbSession, caller: Caller,
           response: Response, source: str = "json") -> PipelineOut:
    """A definition whose name exists becomes that pipeline's next version, unless it is the
    same as the latest (then the latest is returned, with 200 and ``created`` false)."""
    pipeline, row, created = service.create_pipeline(session, caller, doc, source=source)
    if not created:
        response.status_code = 200
    return _out(session, pipeline, row, created)


@router.get("", response_model=list[PipelineRow], summary="List pipelines")
def list_all(session: DbSession) -> list[PipelineRow]:
    rows = service.list_pipelines(session)
    names = user_names(session, [p.created_by for p in rows])
    out = []
    for p in rows:
        latest = service.get_version(session, p)
        out.append(PipelineRow(name=p.name, latest_version=p.latest_version,
                               description=p.description,
                               nodes=len(latest.definition.get("nodes", [])),
                               created_by=names.get(p.created_by), updated_at=p.updated_at))
    return out


@router.get("/{name}", response_model=PipelineOut, summary="Show a pipeline")
def show(name: str, session: DbSession, version: int | None = None) -> PipelineOut:
    pipeline = service.get_pipeline(session, name)
    return _out(session, pipeline, service.get_version(session, pipeline, version))


@router.get("/{name}/versions", summary="A pipeline's versions, newest first")
def versions(name: str, session: DbSession) -> list[dict[str, Any]]:
    pipeline = service.get_pipeline(session, name)
    rows = service.list_versions(session, pipeline)
    names = user_names(session, [r.created_by for r in rows])
    return [{"version": r.version, "source": r.source, "digest": r.digest,
             "nodes": len(r.definition.get("nodes", [])),
             "created_by": names.get(r.created_by), "created_at": r.created_at}
            for r in rows]


@router.delete("/{name}", status_code=204, summary="Delete a pipeline and its versions")
def delete(name: str, session: DbSession, caller: Caller) -> Response:
    service.delete_pipeline(session, caller, name)
    return Response(status_code=204)
