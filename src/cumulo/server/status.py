"""``GET /api/v1/status``: what this server is, where its state lives, and what it holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import cumulo
from cumulo.access.models import Token, User
from cumulo.compute.models import ACTIVE, Cluster, Job
from cumulo.db import get_session, redact_url
from cumulo.permissions import any_caller
from cumulo.services import services
from cumulo.storage import service as storage

__all__ = ["router"]

router = APIRouter(tags=["status"])


class DatabaseStatus(BaseModel):
    url: str
    dialect: str
    users: int
    tokens: int


class StorageStatus(BaseModel):
    url: str
    kind: str
    buckets: int
    objects: int
    bytes: int


class ComputeStatus(BaseModel):
    clusters: int
    running: int
    queued: int


class Status(BaseModel):
    version: str
    url: str
    database: DatabaseStatus
    storage: StorageStatus
    compute: ComputeStatus


@router.get("/status",
            dependencies=[any_caller()],
            response_model=Status, summary="Server version, state and contents")
def status(request: Request, session: Annotated[Session, Depends(get_session)]) -> Status:
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
        storage=StorageStatus(url=server.storage.url, kind=server.storage.kind, **use),
        compute=ComputeStatus(clusters=session.scalar(select(func.count()).select_from(Cluster))
                              or 0, **jobs),
    )
