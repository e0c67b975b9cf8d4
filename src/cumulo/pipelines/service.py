"""Pipelines' stored definitions: create (a new version when the definition changed), read,
list, delete."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.pipelines.definition import check
from cumulo.pipelines.models import Pipeline, PipelineVersion
from cumulo.principal import Principal

__all__ = ["create_pipeline", "delete_pipeline", "digest", "get_pipeline", "get_version",
           "list_pipelines", "list_versions", "may_change"]


def digest(definition: dict[str, Any]) -> str:
    """The definition's digest, whatever the order of its keys. Where the designer drew the
    nodes counts: a saved layout is a new version (runs reuse the steps' outputs anyway)."""
    bare = {k: v for k, v in definition.items() if k != "version"}
    return hashlib.sha256(orjson.dumps(bare, option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_pipeline(session: Session, principal: Principal, doc: Any, *,
                    source: str = "json") -> tuple[Pipeline, PipelineVersion, bool]:
    """Store a definition: a new pipeline, or a new version of one when it changed. Returns
    the pipeline, the version, and whether the version is new."""
    if source not in ("json", "python"):
        raise Invalid(f"source {source!r}: json or python")
    definition = check(doc)
    name = definition["name"]
    key = digest(definition)
    pipeline = session.scalar(select(Pipeline).where(Pipeline.name == name))
    if pipeline is not None:
        may_change(pipeline, principal)
        latest = get_version(session, pipeline)
        if latest.digest == key:
            return pipeline, latest, False
        version = pipeline.latest_version + 1
    else:
        pipeline = Pipeline(name=name, latest_version=1, description="",
                            created_by=principal.user_id, created_at=utcnow())
        session.add(pipeline)
        version = 1
    pipeline.latest_version = version
    pipeline.description = definition["description"]
    pipeline.updated_at = utcnow()
    try:
        session.flush()
        row = PipelineVersion(pipeline_id=pipeline.id, version=version,
                              definition={**definition, "version": version}, digest=key,
                              source=source, created_by=principal.user_id, created_at=utcnow())
        session.add(row)
        session.commit()
    except IntegrityError as exc:  # another request stored the same name or version first
        session.rollback()
        raise Conflict(f"pipeline {name!r} was changed by another request at the same time; "
                       "try again") from exc
    return pipeline, row, True


def may_change(pipeline: Pipeline, principal: Principal) -> None:
    if not principal.is_admin and pipeline.created_by not in (None, principal.user_id):
        raise Forbidden(f"pipeline {pipeline.name!r} is another user's; only they or an "
                        "admin may change or delete it")


def get_pipeline(session: Session, name: str) -> Pipeline:
    pipeline = session.scalar(select(Pipeline).where(Pipeline.name == name))
    if pipeline is None:
        raise NotFound(f"no pipeline {name!r}; 'cumulo pipelines ls' lists them",
                       details={"pipeline": name})
    return pipeline


def get_version(session: Session, pipeline: Pipeline,
                version: int | None = None) -> PipelineVersion:
    wanted = version if version is not None else pipeline.latest_version
    row = session.scalar(select(PipelineVersion).where(
        PipelineVersion.pipeline_id == pipeline.id, PipelineVersion.version == wanted))
    if row is None:
        raise NotFound(f"pipeline {pipeline.name!r} has no version {wanted}; it has 1 to "
                       f"{pipeline.latest_version}")
    return row


def list_pipelines(session: Session) -> list[Pipeline]:
    return list(session.scalars(select(Pipeline).order_by(Pipeline.name)))


def list_versions(session: Session, pipeline: Pipeline) -> list[PipelineVersion]:
    return list(session.scalars(select(PipelineVersion).where(
        PipelineVersion.pipeline_id == pipeline.id).order_by(PipelineVersion.version.desc())))


def delete_pipeline(session: Session, principal: Principal, name: str) -> None:
    """Delete a pipeline, its versions and its schedules; its runs stay, as history."""
    from cumulo.pipelines.models import RUN_ACTIVE, PipelineRun, PipelineSchedule

    pipeline = get_pipeline(session, name)
    may_change(pipeline, principal)
    active = session.scalar(select(PipelineRun.id).where(
        PipelineRun.pipeline == name, PipelineRun.state.in_(RUN_ACTIVE)).limit(1))
    if active is not None:
        raise Conflict(f"pipeline {name!r} has a run going ({active}); cancel it first: "
                       f"cumulo pipelines cancel {active}")
    for schedule in session.scalars(select(PipelineSchedule).where(
            PipelineSchedule.pipeline == name)):
        session.delete(schedule)
    for row in list_versions(session, pipeline):
        session.delete(row)
    session.delete(pipeline)
    session.commit()
