"""Schedules and triggers: a pipeline run on a cron schedule (EventBridge's schedules), or
when a table gets a new version (like an S3 event rule), checked by the orchestrator on each
of its steps.

- ``cron``: five fields (minute hour day month weekday), or six with seconds last, in UTC;
  cron times missed while the control plane was down, or while the schedule's previous run
  was still going, follow ``missed`` (:mod:`cumulo.cron`: ``skip``, ``latest``, ``all``).
- ``table``: each new version of the table starts a run, once: versions written while one
  was going, or while the control plane was down, start one run for the newest. Versions
  written before the trigger was made do not count.

A schedule's run has the trigger ``schedule NAME at TIME`` or ``table DB.T@vN``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.cron import MISSED, check_cron, due_times
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid
from cumulo.pipelines.models import RUN_ACTIVE, Pipeline, PipelineRun, PipelineSchedule
from cumulo.pipelines.runs import parse_parameters, start_run
from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = ["create_schedule", "delete_schedule", "fire",
           "list_schedules", "schedule_doc"]

log = logging.getLogger("cumulo.pipelines")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def create_schedule(session: Session, storage: Backend, principal: Principal, pipeline: str, *,
                    name: str | None = None, cron: str | None = None,
                    table: str | None = None, parameters: dict[str, Any] | None = None,
                    cluster: str = "local", missed: str = "latest") -> PipelineSchedule:
    from cumulo.compute.clusters import get_cluster
    from cumulo.pipelines.service import get_pipeline, get_version, may_change

    if (cron is None) == (table is None):
        raise Invalid("give a schedule either --cron or --on-table, not both")
    if missed not in MISSED:
        raise Invalid(f"--missed {missed!r}: one of {', '.join(MISSED)}")
    row = get_pipeline(session, pipeline)
    # A schedule runs each new version as its maker: only the pipeline's owner may make one.
    may_change(row, principal)
    definition = get_version(session, row).definition
    values = parse_parameters(definition.get("parameters", {}), parameters or {})
    get_cluster(session, cluster)
    name = name or f"{pipeline}-{'cron' if cron else 'table'}"
    if not _NAME.match(name):
        raise Invalid(f"schedule name {name!r}: 1-63 lower-case letters, digits or '-'")
    if session.scalar(select(PipelineSchedule).where(PipelineSchedule.name == name)):
        raise Conflict(f"schedule {name!r} exists; remove it first, or pick another --name")
    version = None
    if cron is not None:
        check_cron(cron)
    else:
        assert table is not None
        version = _table_version(session, storage, table)  # NotFound: no such table
    schedule = PipelineSchedule(
        name=name, pipeline=pipeline, cron=cron, table=table, parameters=values,
        cluster=cluster, missed=missed, enabled=True, last_at=utcnow(), last_version=version,
        created_by=principal.user_id, created_at=utcnow())
    session.add(schedule)
    session.commit()
    return schedule


def _table_version(session: Session, storage: Backend, table: str) -> int:
    from cumulo.lake import catalog
    from cumulo.lake.refs import parse_ref

    ref = parse_ref(table)
    if ref.version is not None or ref.as_of is not None:
        raise Invalid(f"--on-table {table!r}: name a table, not one of its versions")
    return catalog.current_version(session, storage, ref)


def list_schedules(session: Session, pipeline: str | None = None, *,
                   project: str | None = None) -> list[PipelineSchedule]:
    """Schedules, of one pipeline or of one project's pipelines."""
    query = select(PipelineSchedule).order_by(PipelineSchedule.name)
    if pipeline:
        query = query.where(PipelineSchedule.pipeline == pipeline)
    if project:
        query = query.where(PipelineSchedule.pipeline.in_(select(Pipeline.name).where(
            Pipeline.project_id == projects.project_id_for(session, project))))
    return list(session.scalars(query))


def delete_schedule(session: Session, principal: Principal, name: str) -> None:
    from cumulo.errors import Forbidden, NotFound

    schedule = session.scalar(select(PipelineSchedule).where(PipelineSchedule.name == name))
    if schedule is None:
        raise NotFound(f"no schedule {name!r}; 'cumulo pipelines schedules ls' lists them")
    if not principal.is_admin and schedule.created_by not in (None, principal.user_id):
        raise Forbidden(f"schedule {name!r} is another user's")
    session.delete(schedule)
    session.commit()


def schedule_doc(schedule: PipelineSchedule) -> dict[str, Any]:
    from croniter import croniter

    next_at = None
    if schedule.cron and schedule.enabled:
        next_at = croniter(schedule.cron, max(schedule.last_at, utcnow())).get_next(datetime)
    return {"name": schedule.name, "pipeline": schedule.pipeline, "cron": schedule.cron,
            "table": schedule.table, "parameters": schedule.parameters,
            "cluster": schedule.cluster, "missed": schedule.missed,
            "enabled": schedule.enabled, "last_at": schedule.last_at,
            "last_version": schedule.last_version, "last_run": schedule.last_run,
            "next_at": next_at, "message": schedule.message,
            "created_at": schedule.created_at}


def fire(session: Session, storage: Backend, now: datetime | None = None) -> list[str]:
    """Start the runs the schedules owe now; the runs' ids."""
    from cumulo.access.users import acting_as

    now = now or utcnow()
    started = []
    for schedule in list_schedules(session):
        if not schedule.enabled:
            continue
        if schedule.last_run is not None:
            previous = session.get(PipelineRun, schedule.last_run)
            if previous is not None and previous.state in RUN_ACTIVE:
                continue  # one run of a schedule at a time; missed times wait for it
        triggers: list[str] = []
        if schedule.cron:
            times = due_times(schedule.cron, schedule.last_at, now, schedule.missed)
            if not times and schedule.missed == "skip":
                schedule.last_at = max(schedule.last_at, now)  # the missed ones are dropped
            triggers = [f"schedule {schedule.name} at {t.isoformat()}" for t in times[:1]]
            if times:
                schedule.last_at = times[0]  # the rest (missed=all) run after this one
        elif schedule.table:
            try:
                version = _table_version(session, storage, schedule.table)
            except CumuloError as exc:
                schedule.message = f"cannot read table {schedule.table}: {exc.message}"
                continue
            if schedule.last_version is None or version > schedule.last_version:
                triggers = [f"table {schedule.table}@v{version}"]
                schedule.last_version = version
        session.commit()  # the times or version handled: not fired again, whatever follows
        if not triggers:
            continue
        try:
            owner = acting_as(session, schedule.created_by, what="this schedule")
            run = start_run(session, owner, schedule.pipeline, parameters=schedule.parameters,
                            cluster=schedule.cluster, trigger=triggers[0])
        except CumuloError as exc:
            session.rollback()
            schedule = session.get(PipelineSchedule, schedule.id)  # type: ignore[assignment]
            schedule.message = f"{triggers[0]}: not started: {exc.message}"
            log.warning("schedule %s: %s", schedule.name, schedule.message)
            session.commit()
            continue
        schedule.last_run, schedule.message = run.id, f"{triggers[0]}: started {run.id}"
        session.commit()
        started.append(run.id)
    return started
