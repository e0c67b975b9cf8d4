"""Schedules and triggers: a pipeline run on a cron schedule (EventBridge's schedules), or
when a table gets a new version (like an S3 event rule), checked by the orchestrator on each
of its steps.

- ``cron``: five fields (minute hour day month weekday), or six with seconds last, in UTC;
  cron times missed while the control plane was down, or while the schedule's previous run
  was still going, follow ``missed`` (:mod:`cumulo.cron`: ``skip``, ``latest``, ``all``).
- ``table``: each new version of the table starts a run, once: versions written while one
  was going, or while the control plane was down, start one run for the newest. Versions
  written before the trigger was made do not count.

A schedule's run has the trigger ``schedule NAME at TIME`` or ``table DB.T@vN``. Several
control planes on one database look at the same schedules; each firing is claimed in the
database (a compare-and-set of what was read), so exactly one of them starts the run, and it
owns that run.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.cron import MISSED, check_cron, due_times
from cumulo.db import utcnow
from cumulo.errors import Conflict, CumuloError, Invalid
from cumulo.pipelines.models import (
    RUN_ACTIVE,
    Pipeline,
    PipelineRun,
    PipelineSchedule,
    StepRun,
)
from cumulo.pipelines.runs import new_run, parse_parameters
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


def fire(session: Session, storage: Backend, now: datetime | None = None, *,
         owner: str | None = None) -> list[str]:
    """Start the runs the schedules owe now, owned by control plane ``owner``; the runs' ids.

    Each firing is claimed: the schedule's ``last_at`` (or ``last_version``) and ``last_run``
    are moved on where they still hold what was read, in the transaction that makes the run.
    Of control planes that look at the same moment exactly one starts it, and one that read
    the schedule before another's run was made cannot start a second beside it."""
    now = now or utcnow()
    started = []
    for schedule in list_schedules(session):
        if not schedule.enabled:
            continue
        if schedule.last_run is not None and session.scalar(select(PipelineRun.state).where(
                PipelineRun.id == schedule.last_run)) in RUN_ACTIVE:
            continue  # one run of a schedule at a time; missed times wait for it
        last_at, last_version, trigger = schedule.last_at, schedule.last_version, None
        if schedule.cron:
            times = due_times(schedule.cron, schedule.last_at, now, schedule.missed)
            if times:
                last_at = times[0]  # the rest (missed=all) run after this one
                trigger = f"schedule {schedule.name} at {times[0].isoformat()}"
            elif schedule.missed == "skip" and _next_time(schedule, schedule.last_at) <= now:
                last_at = now  # the missed ones are dropped
        elif schedule.table:
            try:
                version = _table_version(session, storage, schedule.table)
            except CumuloError as exc:
                _note(session, schedule, f"cannot read table {schedule.table}: {exc.message}")
                continue
            if schedule.last_version is None or version > schedule.last_version:
                last_version, trigger = version, f"table {schedule.table}@v{version}"
        if (last_at, last_version) == (schedule.last_at, schedule.last_version):
            continue
        run_id = _claim(session, schedule, last_at=last_at, last_version=last_version,
                        trigger=trigger, owner=owner)
        if run_id is not None:
            started.append(run_id)
    return started


def _claim(session: Session, schedule: PipelineSchedule, *, last_at: datetime,
           last_version: int | None, trigger: str | None, owner: str | None) -> str | None:
    """Move the schedule on from what was read, starting the run it owes (when ``trigger``)
    in the same transaction; the run's id, or None (not claimed, or it could not start:
    the schedule's message says why, and the time or version is not fired again)."""
    from cumulo.access.users import acting_as

    run: PipelineRun | None = None
    steps: list[StepRun] = []
    message: str | None = None
    if trigger is not None:
        try:
            maker = acting_as(session, schedule.created_by, what="this schedule")
            run, steps = new_run(session, maker, schedule.pipeline,
                                 parameters=schedule.parameters, cluster=schedule.cluster,
                                 trigger=trigger, owner=owner)
            message = f"{trigger}: started {run.id}"
        except CumuloError as exc:
            message = f"{trigger}: not started: {exc.message}"
    values: dict[str, Any] = {"last_at": last_at, "last_version": last_version}
    if message is not None:
        values["message"] = message
    if run is not None:
        values["last_run"] = run.id
    claimed = session.execute(update(PipelineSchedule).where(
        PipelineSchedule.id == schedule.id,
        PipelineSchedule.last_at == schedule.last_at,
        PipelineSchedule.last_version.is_not_distinct_from(schedule.last_version),
        PipelineSchedule.last_run.is_not_distinct_from(schedule.last_run),
    ).values(**values)).rowcount  # type: ignore[attr-defined]
    if claimed and run is not None:
        session.add(run)
        session.add_all(steps)
    session.commit()
    if not claimed:
        return None  # another control plane fired it (or it was removed)
    if run is None and message is not None:
        log.warning("schedule %s: %s", schedule.name, message)
    return run.id if run is not None else None


def _next_time(schedule: PipelineSchedule, after: datetime) -> datetime:
    from croniter import croniter

    assert schedule.cron is not None
    found: datetime = croniter(schedule.cron, after).get_next(datetime)
    return found


def _note(session: Session, schedule: PipelineSchedule, message: str) -> None:
    session.execute(update(PipelineSchedule).where(PipelineSchedule.id == schedule.id)
                    .values(message=message))
    session.commit()
