"""``GET /api/v1/status``: what this server is, where its state lives, and what it holds.

What storage holds is counted by area: bucket objects from the database (their sizes are kept
there), and the tables, MLflow's artifact store and jobs' files by listing their prefixes of the
storage root, at most every ``USE_TTL`` seconds (Home asks every 5 s; a listing of a big root
is not free).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import cumulo
from cumulo.access.models import Token, User
from cumulo.compute.models import ACTIVE, Cluster, Job
from cumulo.db import get_session, redact_url
from cumulo.dr.models import BackupRun, BackupSchedule
from cumulo.dr.schedules import failing, run_doc
from cumulo.leases import ControlPlane, db_now
from cumulo.metering.alerts import open_alerts
from cumulo.permissions import any_caller
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.serving.models import Endpoint
from cumulo.storage import service as storage
from cumulo.storage.backends import Backend

__all__ = ["router"]

router = APIRouter(tags=["status"])


class DatabaseStatus(BaseModel):
    url: str
    dialect: str
    users: int
    tokens: int


class StorageUse(BaseModel):
    """Bytes stored, by what holds them; an area is None when its prefix could not be listed."""

    buckets: int  # bucket objects (the Files page)
    tables: int | None  # managed lake tables (lake/), every version their files still hold
    models: int | None  # MLflow's artifact store (mlflow/): models and runs' files
    jobs: int | None  # jobs' code snapshots, logs, outputs and checkpoints (jobs/)
    total: int  # the sum of what was counted
    counted_at: datetime  # when the listed areas were counted


class StorageStatus(BaseModel):
    url: str
    kind: str
    buckets: int
    objects: int
    bytes: int  # what bucket objects hold; ``used`` counts the rest too
    used: StorageUse


class ComputeStatus(BaseModel):
    clusters: int
    running: int
    queued: int


class BackupFailure(BaseModel):
    schedule: str
    kind: str  # backup | drill
    error: str
    at: datetime


class BackupsStatus(BaseModel):
    schedules: int
    last_backup_at: datetime | None  # the latest backup that succeeded
    last_drill: dict[str, Any] | None  # the latest drill, as GET /backups/runs gives it
    failing: list[BackupFailure]  # schedules whose latest backup or drill failed


class ControlPlaneStatus(BaseModel):
    id: str
    host: str
    url: str
    version: str
    started_at: datetime
    renewed_at: datetime
    lease_expires_at: datetime
    live: bool  # its lease is current: it runs what it owns
    this: bool  # the control plane that answered
    jobs: int  # starting or running jobs it owns
    endpoints: int = 0  # endpoints it runs


class AlertStatus(BaseModel):
    id: int
    source: str  # budget | anomaly | monitor
    subject: str
    severity: str
    message: str
    at: datetime
    delivery: str  # its webhook's: none | pending | sent | failed


class Status(BaseModel):
    version: str
    url: str
    database: DatabaseStatus
    storage: StorageStatus
    compute: ComputeStatus
    backups: BackupsStatus | None  # None for callers who may not list backups
    control_planes: list[ControlPlaneStatus]  # those that share this database, live or lately
    # Alerts not dismissed (budgets, cost anomalies, monitors), newest first; None for callers
    # who may not list them.
    alerts: list[AlertStatus] | None = None


@router.get("/status",
            dependencies=[any_caller()],
            response_model=Status, summary="Server version, state and contents")
def status(request: Request, session: Annotated[Session, Depends(get_session)],
           caller: Annotated[Principal, Depends(current_principal)]) -> Status:
    server = services(request)
    use = storage.usage(session)
    counts = dict(session.execute(select(Job.state, func.count()).where(
        Job.state.in_(ACTIVE)).group_by(Job.state)).all())
    jobs = {"running": counts.get("running", 0) + counts.get("starting", 0),
            "queued": counts.get("queued", 0)}
    return Status(
        version=cumulo.__version__,
        url=server.settings.url,
        database=DatabaseStatus(
            url=redact_url(server.settings.database_url),
            dialect=session.get_bind().dialect.name,
            users=session.scalar(select(func.count()).select_from(User)) or 0,
            tokens=session.scalar(
                select(func.count()).select_from(Token)
                .where(Token.revoked_at.is_(None), Token.kind == "user")
            ) or 0,
        ),
        storage=StorageStatus(url=server.storage.url, kind=server.storage.kind, **use,
                              used=_used(server.storage, use["bytes"])),
        compute=ComputeStatus(clusters=session.scalar(select(func.count()).select_from(Cluster))
                              or 0, **jobs),
        backups=_backups(session) if caller.can("backups:List", "backup/*") else None,
        control_planes=_planes(session, server.plane.id),
        alerts=[AlertStatus(id=a.id, source=a.source, subject=a.subject, severity=a.severity,
                            message=a.message, at=a.created_at, delivery=a.delivery)
                for a in open_alerts(session, limit=10)]
        if caller.can("alerts:List", "alert/*") else None,
    )


def _planes(session: Session, me: str) -> list[ControlPlaneStatus]:
    now = db_now(session)
    owned = dict(session.execute(select(Job.owner, func.count()).where(
        Job.state.in_(("starting", "running"))).group_by(Job.owner)).all())
    served = dict(session.execute(select(Endpoint.owner, func.count())
                                  .group_by(Endpoint.owner)).all())
    return [ControlPlaneStatus(
        id=p.id, host=p.host, url=p.url, version=p.version, started_at=p.started_at,
        renewed_at=p.renewed_at, lease_expires_at=p.lease_expires_at,
        live=p.lease_expires_at > now, this=p.id == me, jobs=owned.get(p.id, 0),
        endpoints=served.get(p.id, 0))
        for p in session.scalars(select(ControlPlane).order_by(ControlPlane.started_at))]


def _backups(session: Session) -> BackupsStatus:
    last = session.scalar(select(BackupRun.finished_at).where(
        BackupRun.kind == "backup", BackupRun.state == "succeeded")
        .order_by(BackupRun.id.desc()).limit(1))
    drill = session.scalar(select(BackupRun).where(BackupRun.kind == "drill",
                                                   BackupRun.state != "running")
                           .order_by(BackupRun.id.desc()).limit(1))
    return BackupsStatus(
        schedules=session.scalar(select(func.count()).select_from(BackupSchedule)) or 0,
        last_backup_at=last, last_drill=run_doc(drill) if drill else None,
        failing=[BackupFailure(schedule=r.schedule or "", kind=r.kind, error=r.error or "",
                               at=r.finished_at or r.started_at) for r in failing(session)])


# --- what the storage root's areas hold -------------------------------------------------------

USE_TTL = 30.0  # seconds a count of the listed areas is reused
AREAS = {"tables": "lake", "models": "mlflow", "jobs": "jobs"}
_counted: dict[str, tuple[float, datetime, dict[str, int | None]]] = {}  # by storage URL
_counting = threading.Lock()  # one count at a time; the others wait for it and reuse it


def _used(backend: Backend, buckets: int) -> StorageUse:
    with _counting:
        found = _counted.get(backend.url)
        if found is None or time.monotonic() - found[0] > USE_TTL:
            areas = {area: _size(backend, prefix) for area, prefix in AREAS.items()}
            found = _counted[backend.url] = (time.monotonic(), datetime.now(UTC), areas)
    _, at, areas = found
    total = buckets + sum(n for n in areas.values() if n is not None)
    return StorageUse(buckets=buckets, **areas, total=total, counted_at=at)


def _size(backend: Backend, prefix: str) -> int | None:
    """What the blobs under ``prefix/`` hold: a walk of the folder when the backend keeps
    files, else a listing of the prefix (S3). None when it cannot be listed."""
    try:
        folder = backend.local_path(prefix)
        if folder is not None:
            return _folder_size(folder)
        from pyarrow import fs  # S3's listing: pyarrow comes with the lake, loaded on use

        filesystem, path = backend.arrow_path(prefix)
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True,
                                                         allow_not_found=True))
        return sum(i.size or 0 for i in infos if i.type == fs.FileType.File)
    except (OSError, ValueError, ImportError):  # unreachable, refused, or no pyarrow here
        return None


def _folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed: nothing counted twice)."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except (FileNotFoundError, NotADirectoryError):
            continue  # not made yet, or removed while counted
    return total
