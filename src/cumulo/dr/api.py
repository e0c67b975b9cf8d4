"""REST routes of backups: ``/api/v1/backups``, what the Backups page and ``cumulo backup
schedule`` use.

Schedules are run by the control plane (:mod:`cumulo.dr.schedules`), so their targets are
places the *server* reaches: a folder of its machine, or ``s3://``. A folder target belongs to
the machine whose control plane made the schedule: control planes of other machines (several
on one database) neither run it nor read its backups. Backups are listed and read through a
schedule (its target and key file), never from a path the caller names: what a caller may
reach is what an administrator scheduled. A one-thing restore runs as the caller,
through the server's own API with the caller's credential, so their rights decide and the audit
log records what they put back.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access.users import user_names
from cumulo.db import get_session
from cumulo.dr import partial
from cumulo.dr.models import BackupRun, BackupSchedule
from cumulo.dr.schedules import (
    BackupScheduler,
    check_here,
    create_schedule,
    delete_schedule,
    get_schedule,
    last_runs,
    next_time,
    run_doc,
)
from cumulo.errors import Invalid
from cumulo.permissions import allow
from cumulo.principal import Principal, current_principal
from cumulo.services import services

__all__ = ["router"]

router = APIRouter(prefix="/backups", tags=["backups"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]
_CONTENTS_LOCK = threading.Semaphore(2)  # a backup's catalog read at a time, twice at most


def _scheduler(request: Request) -> BackupScheduler:
    return services(request).backups


class RunOut(BaseModel):
    id: int
    kind: str  # backup | drill
    schedule: str | None
    trigger: str
    target: str
    state: str  # running | succeeded | failed
    backup_id: str | None
    files: int | None
    bytes: int | None
    stored_bytes: int | None  # new in the target
    pruned: int | None
    rpo_seconds: float | None
    rto_seconds: float | None
    checked: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    host: str


class ScheduleIn(BaseModel):
    name: str
    target: str = Field(description="an absolute folder of the server's machine, or "
                        "s3://bucket/prefix")
    key_file: str | None = Field(None, description="encrypt with this key file (a path on "
                                 "the server)")
    cron: str = Field(description="five fields, UTC, like '0 2 * * *'")
    missed: str = "latest"
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    drill: bool = Field(False, description="restore each new backup into a scratch home and "
                        "check it")


class ScheduleOut(BaseModel):
    name: str
    target: str
    host: str | None  # the machine whose folder the target is (None for s3://): it runs there
    encrypted: bool
    cron: str
    missed: str
    keep_last: int
    keep_daily: int
    keep_weekly: int
    drill: bool
    enabled: bool
    next_at: datetime | None
    last_backup: RunOut | None
    last_drill: RunOut | None
    failing: bool  # its latest finished backup or drill failed
    created_at: datetime
    created_by: str | None


class RunIn(BaseModel):
    drill: bool = False


class BackupOut(BaseModel):
    id: str
    created_at: datetime
    files: int
    bytes: int
    stored_bytes: int  # new in the target when it was made
    seconds: float


class PrefixUse(BaseModel):
    files: int
    bytes: int


class BackupDetail(BackupOut):
    databases: dict[str, int]
    prefixes: dict[str, PrefixUse]
    contents: dict[str, list[dict[str, Any]]]


class RestoreIn(BaseModel):
    schedule: str
    backup: str = "latest"
    bucket: str | None = None
    table: str | None = Field(None, description="database.table")
    model: str | None = None
    pipeline: str | None = None
    version: int | None = Field(None, description="a table's or a model's version")
    as_: str | None = Field(None, alias="as", description="the name to restore it as")
    replace: bool = Field(False, description="a table: overwrite the live one")


def _schedules_out(session: Session, rows: list[BackupSchedule]) -> list[ScheduleOut]:
    latest = last_runs(session, [s.name for s in rows])
    users = user_names(session, (s.created_by for s in rows))
    out = []
    for s in rows:
        backup, drill = latest.get((s.name, "backup")), latest.get((s.name, "drill"))
        finished = [r for r in (backup, drill) if r is not None and r.state != "running"]
        out.append(ScheduleOut(
            name=s.name, target=s.target, host=s.host, encrypted=s.key_file is not None,
            cron=s.cron, missed=s.missed, keep_last=s.keep_last, keep_daily=s.keep_daily,
            keep_weekly=s.keep_weekly, drill=s.drill, enabled=s.enabled,
            next_at=next_time(s), failing=any(r.state == "failed" for r in finished),
            last_backup=RunOut(**run_doc(backup)) if backup else None,
            last_drill=RunOut(**run_doc(drill)) if drill else None,
            created_at=s.created_at, created_by=users.get(s.created_by)))
    return out


@router.get("/schedules", dependencies=[allow("backups:List", "backup/*")],
            summary="Backup schedules, with their latest backup and drill")
def list_schedules(session: DbSession) -> list[ScheduleOut]:
    rows = list(session.scalars(select(BackupSchedule).order_by(BackupSchedule.name)))
    return _schedules_out(session, rows)


@router.post("/schedules", status_code=201,
             dependencies=[allow("backups:Schedule", "backup/*")],
             summary="Back the platform up on a cron schedule")
def add_schedule(body: ScheduleIn, request: Request, session: DbSession,
                 caller: Caller) -> ScheduleOut:
    schedule = create_schedule(
        session, name=body.name, target=body.target, cron=body.cron, key_file=body.key_file,
        missed=body.missed, keep_last=body.keep_last, keep_daily=body.keep_daily,
        keep_weekly=body.keep_weekly, drill=body.drill, created_by=caller.user_id,
        host=_scheduler(request).host)
    return _schedules_out(session, [schedule])[0]


@router.delete("/schedules/{name}", status_code=204,
               dependencies=[allow("backups:Schedule", "backup/{name}")],
               summary="Remove a schedule (its backups stay in the target)")
def remove_schedule(name: str, session: DbSession) -> Response:
    delete_schedule(session, name)
    return Response(status_code=204)


@router.post("/schedules/{name}/run", status_code=202,
             dependencies=[allow("backups:Run", "backup/{name}")],
             summary="Back up now (then drill, if asked); follow it in the runs")
def run_now(name: str, body: RunIn, request: Request, caller: Caller) -> RunOut:
    run = _scheduler(request).run_now(name, drill=body.drill, by=caller.user_name,
                                      user_id=caller.user_id)
    return RunOut(**run_doc(run))


@router.get("/runs", dependencies=[allow("backups:List", "backup/*")],
            summary="Backups and drills as they ran, newest first")
def list_runs(session: DbSession, schedule: str | None = None,
              limit: int = 50) -> list[RunOut]:
    query = select(BackupRun).order_by(BackupRun.id.desc()).limit(max(1, min(limit, 500)))
    if schedule is not None:
        query = query.where(BackupRun.schedule == schedule)
    return [RunOut(**run_doc(r)) for r in session.scalars(query)]


def _repository(request: Request, session: Session, name: str) -> Any:
    from cumulo.dr.repo import open_repository

    schedule = get_schedule(session, name)
    check_here(schedule, _scheduler(request).host, doing="read its backups")
    return open_repository(schedule.target, key_file=schedule.key_file)


def _backup_out(m: dict[str, Any]) -> dict[str, Any]:
    t = m["totals"]
    return {"id": m["id"], "created_at": m["created_at"], "files": t["files"],
            "bytes": t["bytes"], "stored_bytes": t["stored_bytes"], "seconds": t["seconds"]}


@router.get("/schedules/{name}/backups", dependencies=[allow("backups:List", "backup/{name}")],
            summary="The complete backups in a schedule's target, newest first")
def list_backups(name: str, request: Request, session: DbSession) -> list[BackupOut]:
    repo = _repository(request, session, name)
    return [BackupOut(**_backup_out(repo.snapshot(i))) for i in reversed(repo.snapshot_ids())]


@router.get("/schedules/{name}/backups/{backup}",
            dependencies=[allow("backups:Read", "backup/{name}")],
            summary="What a backup holds: sizes by area, and the things it can put back")
def show_backup(name: str, backup: str, request: Request,
                session: DbSession) -> BackupDetail:
    repo = _repository(request, session, name)
    m = repo.snapshot(backup)
    prefixes: dict[str, PrefixUse] = {}
    for f in m["files"]:
        top = f["path"].split("/", 1)[0] + "/"
        use = prefixes.setdefault(top, PrefixUse(files=0, bytes=0))
        use.files += 1
        use.bytes += f["size"]
    with _CONTENTS_LOCK:
        held = partial.contents(repo, m["id"])
    return BackupDetail(**_backup_out(m), prefixes=prefixes, contents=held,
                        databases={k: v["size"] for k, v in m["databases"].items()})


def _caller_secret(request: Request) -> str:
    """The credential the caller signed in with (server/auth.py keeps it for the request):
    a one-thing restore calls the server's API as them."""
    secret: str | None = getattr(request.state, "credential", None)
    if not secret:
        raise Invalid("this restore needs the caller's own token or sign-in")
    return secret


@router.post("/restore", dependencies=[allow("backups:Restore", "backup/*")],
             summary="Put one bucket, table, model version or pipeline back, as the caller")
def restore_one(body: RestoreIn, request: Request, session: DbSession) -> dict[str, Any]:
    from cumulo.client import Client

    named = [k for k in ("bucket", "table", "model", "pipeline") if getattr(body, k)]
    if len(named) != 1:
        raise Invalid("name one thing to restore: bucket, table, model or pipeline")
    repo = _repository(request, session, body.schedule)
    settings = services(request).settings
    with Client(settings.url, token=_caller_secret(request)) as client:
        if body.bucket:
            return partial.restore_bucket(repo, body.backup, client, body.bucket,
                                          into=body.as_)
        if body.table:
            return partial.restore_table(repo, body.backup, client, body.table,
                                         version=body.version, into=body.as_,
                                         replace=body.replace)
        if body.model:
            return partial.restore_model(repo, body.backup, client, body.model,
                                         version=body.version, into=body.as_)
        assert body.pipeline is not None
        return partial.restore_pipeline(repo, body.backup, client, body.pipeline,
                                        into=body.as_)
