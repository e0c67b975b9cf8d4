"""Pipelines' stored definitions: create (a new version when the definition changed), read,
list, delete."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.db import utcnow
from cumulo.errors import Conflict, Forbidden, Invalid, NotFound
from cumulo.pipelines.definition import check
from cumulo.pipelines.models import Pipeline, PipelineVersion
from cumulo.principal import Principal

__all__ = ["check_environments", "create_pipeline", "delete_pipeline", "digest", "get_pipeline",
           "get_version", "list_pipelines", "list_versions", "may_change", "project_of"]


def digest(definition: dict[str, Any]) -> str:
    """The definition's digest, whatever the order of its keys. Where the designer drew the
    nodes counts: a saved layout is a new version (runs reuse the steps' outputs anyway)."""
    bare = {k: v for k, v in definition.items() if k != "version"}
    return hashlib.sha256(orjson.dumps(bare, option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_pipeline(session: Session, principal: Principal, doc: Any, *,
                    source: str = "json",
                    project: str | None = None) -> tuple[Pipeline, PipelineVersion, bool]:
    """Store a definition: a new pipeline in ``project``, or a new version of one when it
    changed (it stays in its project). Returns the pipeline, the version, and whether the
    version is new."""
    if source not in ("json", "python"):
        raise Invalid(f"source {source!r}: json or python")
    definition = check(doc)
    check_environments(session, definition)
    name = definition["name"]
    key = digest(definition)
    project_id = projects.project_id_for(session, project)  # NotFound names it
    pipeline = session.scalar(select(Pipeline).where(Pipeline.name == name))
    if pipeline is not None:
        may_change(pipeline, principal)
        _same_project(session, pipeline, project_id)
        latest = get_version(session, pipeline)
        if latest.digest == key:
            return pipeline, latest, False
        version = pipeline.latest_version + 1
    else:
        pipeline = Pipeline(name=name, latest_version=1, description="", project_id=project_id,
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


def check_environments(session: Session, definition: dict[str, Any], *,
                       parameters: dict[str, Any] | None = None, when: str = "stored") -> None:
    """Refuse a definition whose steps name an environment that does not exist, or one a step
    cannot run in, naming each such step: when it is stored (the environments written in it),
    and again when it runs (``parameters``: the run's values, for an environment given by a
    pipeline parameter; one may have been removed since). A step runs Cumulo's own step code
    (pandas, the lake), so its environment must be a layer over the server's packages."""
    import sys

    from cumulo.compute.environments.service import get_by_name

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    problems: list[tuple[str, str]] = []
    for i, node in enumerate(definition["nodes"]):
        name = node.get("params", {}).get("environment")
        if isinstance(name, dict) and set(name) == {"$param"}:
            name = (parameters or {}).get(name["$param"])
        if not isinstance(name, str) or not name:
            continue
        path = f"nodes[{i}] ({node['id']}).params.environment"
        try:
            env = get_by_name(session, name)
        except NotFound as exc:
            problems.append((path, exc.message))
            continue
        if env.isolated or env.python != here:
            kind = "isolated" if env.isolated else f"on Python {env.python}"
            problems.append((path, f"environment {name!r} is {kind}, and a step runs "
                             "Cumulo's own step code (pandas, the lake) in it, which needs "
                             f"the server's packages and Python {here}: name a layered "
                             "environment (made without --isolated and --python), or give "
                             "the step requirements"))
    if problems:
        lines = [f"{path}: {message}" for path, message in problems]
        raise Invalid(f"pipeline {definition['name']!r} cannot be {when}: " + "; ".join(lines),
                      details={"problems": [{"path": p, "message": m} for p, m in problems]})


def _same_project(session: Session, pipeline: Pipeline, project_id: int | None) -> None:
    """A new version names the pipeline's own project, or none (it keeps its own): a
    pipeline does not move between projects."""
    if project_id is not None and project_id != pipeline.project_id:
        held = projects.name_of(session, pipeline.project_id)
        raise Conflict(f"pipeline {pipeline.name!r} belongs to "
                       + (f"project {held}" if held else "no project")
                       + "; a new version stays there (name another pipeline to make one in "
                       "another project)", details={"pipeline": pipeline.name, "project": held})


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


def list_pipelines(session: Session, *, project: str | None = None) -> list[Pipeline]:
    """Every pipeline, or one project's (an unknown project is NotFound)."""
    query = select(Pipeline).order_by(Pipeline.name)
    if project:
        query = query.where(Pipeline.project_id == projects.project_id_for(session, project))
    return list(session.scalars(query))


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


def project_of(session: Session, name: str) -> str | None:
    """The project of the pipeline named (None: none, or no such pipeline), for rights bound
    in a project: ``pipeline/NAME``, its runs and schedules, its steps' jobs."""
    project_id = session.scalar(select(Pipeline.project_id).where(Pipeline.name == name))
    return projects.name_of(session, project_id)


holders.register("pipeline", project_of)
