"""Schedules and triggers: a pipeline run on a cron schedule (EventBridge's schedules), when a
table gets a new version (like an S3 event rule), or when a stream has received so many
records or bytes since the last run, checked by the orchestrator on each of its steps.

- ``cron``: five fields (minute hour day month weekday), or six with seconds last, in UTC;
  cron times missed while the control plane was down, or while the schedule's previous run
  was still going, follow ``missed`` (:mod:`cumulo.cron`: ``skip``, ``latest``, ``all``).
- ``table``: each new version of the table starts a run, once: versions written while one
  was going, or while the control plane was down, start one run for the newest. Versions
  written before the trigger was made do not count.
- ``stream``: once ``every`` records (``1000``) or bytes (``5MB``) came to the stream since
  the last run (or since the trigger was made), a run starts; records that come while it
  goes count toward the next one. The count is kept on the schedule (``stream_state``),
  so a restart neither loses nor counts again what came. The run's parameters ``stream``,
  ``stream_range`` (JSON: per shard, the first and last sequence numbers it covers) and
  ``stream_records`` are filled in where the pipeline declares them.

A schedule's run has the trigger ``schedule NAME at TIME``, ``table DB.T@vN`` or ``stream S: N
new records``. Several control planes on one database look at the same schedules; each firing
is claimed in the database (a compare-and-set of what was read), so exactly one of them starts
the run, and it owns that run.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

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
from cumulo.units import parse_size

if TYPE_CHECKING:
    from cumulo.streams.service import StreamEngine

__all__ = ["create_schedule", "delete_schedule", "fire", "list_schedules", "parse_every",
           "schedule_doc"]

_EVERY_FORMS = "a number of records (1000) or a size (5MB)"
MAX_EVERY_RECORDS = 10**15

log = logging.getLogger("cumulo.pipelines")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def parse_every(text: str | int) -> tuple[int | None, int | None]:
    """``--every``: records (a whole number, ``1000``) or bytes (a size, ``5MB``), as
    (records, None) or (None, bytes)."""
    if isinstance(text, bool):
        raise Invalid(f"--every {text!r}: give {_EVERY_FORMS}", details={"field": "every"})
    if isinstance(text, int) or re.fullmatch(r"\s*[-+]?\d+\s*", text):
        records = int(text)
        if not 1 <= records <= MAX_EVERY_RECORDS:
            raise Invalid(f"--every {text!r}: a trigger waits for 1 to {MAX_EVERY_RECORDS:,} "
                          f"records; give {_EVERY_FORMS}", details={"field": "every"})
        return records, None
    try:
        return None, parse_size(text, what="--every")
    except Invalid as exc:
        raise Invalid(f"{exc.message} (or give a number of records: 1000)",
                      details={"field": "every"}) from None


def create_schedule(session: Session, storage: Backend, principal: Principal, pipeline: str, *,
                    name: str | None = None, cron: str | None = None,
                    table: str | None = None, parameters: dict[str, Any] | None = None,
                    cluster: str = "local", missed: str = "latest",
                    stream: str | None = None, every: str | int | None = None,
                    streams: StreamEngine | None = None) -> PipelineSchedule:
    from cumulo.compute.clusters import get_cluster
    from cumulo.pipelines.service import get_pipeline, get_version, may_change

    if sum(x is not None for x in (cron, table, stream)) != 1:
        raise Invalid("give a schedule either --cron or --on-table or --on-stream: one of them")
    if (every is None) != (stream is None):
        raise Invalid("--on-stream needs --every: " + _EVERY_FORMS if every is None else
                      "--every counts a stream's records: give it with --on-stream STREAM",
                      details={"field": "every"})
    every_records, every_bytes = parse_every(every) if every is not None else (None, None)
    if missed not in MISSED:
        raise Invalid(f"--missed {missed!r}: one of {', '.join(MISSED)}")
    row = get_pipeline(session, pipeline)
    # A schedule runs each new version as its maker: only the pipeline's owner may make one.
    may_change(row, principal)
    definition = get_version(session, row).definition
    values = parse_parameters(definition.get("parameters", {}), parameters or {})
    get_cluster(session, cluster)
    name = name or f"{pipeline}-{'cron' if cron else 'table' if table else 'stream'}"
    if not _NAME.match(name):
        raise Invalid(f"schedule name {name!r}: 1-63 lower-case letters, digits or '-'")
    if session.scalar(select(PipelineSchedule).where(PipelineSchedule.name == name)):
        raise Conflict(f"schedule {name!r} exists; remove it first, or pick another --name")
    version, stream_state = None, None
    if cron is not None:
        check_cron(cron)
    elif table is not None:
        version = _table_version(session, storage, table)  # NotFound: no such table
    else:
        assert stream is not None
        stream_state = _stream_start(session, principal, streams, stream)
    schedule = PipelineSchedule(
        name=name, pipeline=pipeline, cron=cron, table=table, parameters=values,
        cluster=cluster, missed=missed, enabled=True, last_at=utcnow(), last_version=version,
        stream=stream, every_records=every_records, every_bytes=every_bytes,
        stream_state=stream_state, created_by=principal.user_id, created_at=utcnow())
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


def _stream_start(session: Session, principal: Principal, streams: StreamEngine | None,
                  stream: str) -> dict[str, Any]:
    """A stream trigger's first count: from what the stream holds now (records put before
    the trigger was made do not count). Its maker must be able to read the stream."""
    from cumulo.errors import Unavailable
    from cumulo.streams import volume

    if streams is None:
        raise Unavailable("this server runs no streams: a trigger on a stream cannot be made")
    newest = volume.newest(session, streams, stream)  # NotFound: no such stream
    principal.require("streams:Read", f"stream/{stream}")
    return {"from": newest, "counted": newest, "records": 0, "bytes": 0}


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
    counted = schedule.stream_state or {}
    return {"name": schedule.name, "pipeline": schedule.pipeline, "cron": schedule.cron,
            "table": schedule.table, "stream": schedule.stream,
            "every_records": schedule.every_records, "every_bytes": schedule.every_bytes,
            "pending_records": counted.get("records") if schedule.stream else None,
            "pending_bytes": counted.get("bytes") if schedule.stream else None,
            "parameters": schedule.parameters,
            "cluster": schedule.cluster, "missed": schedule.missed,
            "enabled": schedule.enabled, "last_at": schedule.last_at,
            "last_version": schedule.last_version, "last_run": schedule.last_run,
            "next_at": next_at, "message": schedule.message,
            "created_at": schedule.created_at}


def fire(session: Session, storage: Backend, now: datetime | None = None, *,
         owner: str | None = None, streams: StreamEngine | None = None) -> list[str]:
    """Start the runs the schedules owe now, owned by control plane ``owner``; the runs' ids.
    Triggers on streams are counted in ``streams``' logs (without it, they wait).

    Each firing is claimed: the schedule's ``last_at`` (or ``last_version``) and ``last_run``
    are moved on where they still hold what was read, in the transaction that makes the run.
    Of control planes that look at the same moment exactly one starts it, and one that read
    the schedule before another's run was made cannot start a second beside it. A stream
    trigger's count moves ``last_at`` on too, so it is claimed the same way."""
    now = now or utcnow()
    started = []
    for schedule in list_schedules(session):
        if not schedule.enabled:
            continue
        if schedule.last_run is not None and session.scalar(select(PipelineRun.state).where(
                PipelineRun.id == schedule.last_run)) in RUN_ACTIVE:
            continue  # one run of a schedule at a time; missed times wait for it
        last_at, last_version, trigger = schedule.last_at, schedule.last_version, None
        stream_state: dict[str, Any] | None = None
        if schedule.stream:
            if streams is None:
                continue
            try:
                stream_state, trigger = _stream_count(session, streams, schedule)
            except CumuloError as exc:
                _note(session, schedule, f"cannot read stream {schedule.stream}: {exc.message}")
                continue
            if stream_state is None:
                continue  # nothing came
            # Each count moves last_at on: the claim below compares it, so two control
            # planes never both count (or fire) what came.
            last_at = max(now, schedule.last_at + timedelta(microseconds=1))
        elif schedule.cron:
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
                        trigger=trigger, owner=owner, stream_state=stream_state)
        if run_id is not None:
            started.append(run_id)
    return started


def _stream_count(session: Session, streams: StreamEngine,
                  schedule: PipelineSchedule) -> tuple[dict[str, Any] | None, str | None]:
    """A stream trigger's count moved on to what came since its last look: its new state
    (None: nothing came), and the run's trigger when the count reached ``every``."""
    from cumulo.streams import volume

    assert schedule.stream is not None
    state = schedule.stream_state or {"from": {}, "counted": {}, "records": 0, "bytes": 0}
    came = volume.count(session, streams, schedule.stream, state["counted"],
                        with_bytes=schedule.every_bytes is not None)
    if came.counted == state["counted"]:
        return None, None
    state = {**state, "counted": came.counted, "records": state["records"] + came.records,
             "bytes": state["bytes"] + came.bytes}
    if not ((schedule.every_records and state["records"] >= schedule.every_records)
            or (schedule.every_bytes and state["bytes"] >= schedule.every_bytes)):
        return state, None
    size = f", {state['bytes']} bytes" if schedule.every_bytes else ""
    return state, f"stream {schedule.stream}: {state['records']} new records{size}"


def _stream_parameters(session: Session, schedule: PipelineSchedule,
                       state: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters that say what it covers, those the pipeline declares."""
    from cumulo.pipelines.service import get_pipeline, get_version
    from cumulo.streams import volume

    assert schedule.stream is not None
    declared = get_version(session, get_pipeline(session, schedule.pipeline)).definition.get(
        "parameters", {})
    stream = schedule.stream
    values: dict[str, Callable[[], Any]] = {
        "stream": lambda: stream,
        "stream_records": lambda: state["records"],
        "stream_range": lambda: json.dumps(volume.sequence_ranges(
            session, stream, state["from"], state["counted"]))}
    return {name: value() for name, value in values.items() if name in declared}


def _claim(session: Session, schedule: PipelineSchedule, *, last_at: datetime,
           last_version: int | None, trigger: str | None, owner: str | None,
           stream_state: dict[str, Any] | None = None) -> str | None:
    """Move the schedule on from what was read, starting the run it owes (when ``trigger``)
    in the same transaction; the run's id, or None (not claimed, or it could not start:
    the schedule's message says why, and the time or version is not fired again). A stream
    trigger's count (``stream_state``) starts again from zero when it fires."""
    from cumulo.access.users import acting_as

    run: PipelineRun | None = None
    steps: list[StepRun] = []
    message: str | None = None
    if trigger is not None:
        try:
            maker = acting_as(session, schedule.created_by, what="this schedule")
            parameters = dict(schedule.parameters)
            if schedule.stream is not None and stream_state is not None:
                maker.require("streams:Read", f"stream/{schedule.stream}")
                parameters.update(_stream_parameters(session, schedule, stream_state))
            run, steps = new_run(session, maker, schedule.pipeline,
                                 parameters=parameters, cluster=schedule.cluster,
                                 trigger=trigger, owner=owner)
            message = f"{trigger}: started {run.id}"
        except CumuloError as exc:
            message = f"{trigger}: not started: {exc.message}"
    values: dict[str, Any] = {"last_at": last_at, "last_version": last_version}
    if stream_state is not None:
        values["stream_state"] = stream_state if trigger is None else {
            "from": stream_state["counted"], "counted": stream_state["counted"],
            "records": 0, "bytes": 0}
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
