"""REST routes of the audit log: ``/api/v1/audit/events`` (list) and ``/api/v1/audit/verify``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cumulo.access import audit
from cumulo.access.models import AuditEvent
from cumulo.db import get_session
from cumulo.permissions import allow
from cumulo.storage.backends import Backend, request_backend
from cumulo.units import parse_time

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])
DbSession = Annotated[Session, Depends(get_session)]
Storage = Annotated[Backend, Depends(request_backend)]
_TIME = "an ISO date or time (2026-11-01, 2026-11-01T12:00:00Z) or a span back from now (1h, 7d)"


class EventOut(BaseModel):
    seq: int = Field(description="the entry's place in the log; grows with every entry")
    at: datetime
    user: str | None = Field(description="who acted; none for the platform or an unknown caller")
    action: str = Field(description="what was attempted, e.g. tables:Write")
    resource: str = Field(description="what it was attempted on, e.g. table/sales/orders")
    outcome: str = Field(description="allowed, denied or failed")
    source: str | None = Field(description="the client's address")
    request_id: str | None = Field(description="the X-Request-ID of the request")
    details: dict[str, Any]
    prev_hash: str = Field(description="the hash of the entry before (64 zeros for the first)")
    hash: str = Field(description="sha256 of prev_hash and the entry's fields")


class EventPage(BaseModel):
    events: list[EventOut] = Field(description="newest first")
    next: int | None = Field(description="pass as before= for the next, older page; none: no "
                             "more")


class VerifyOut(BaseModel):
    ok: bool = Field(description="the chain is whole, and audit.events agrees with it")
    entries: int = Field(description="entries checked")
    first_bad: int | None = Field(description="seq of the first entry that fails its check")
    problem: str | None = Field(description="what is wrong there")
    where: Literal["database", "lake"] | None = Field(
        description="which copy is wrong: the database's chain, or the lake's audit.events")
    lake_entries: int | None = Field(description="entries compared with audit.events")


def _out(event: AuditEvent) -> EventOut:
    return EventOut(seq=event.seq, at=event.at, user=event.user, action=event.action,
                    resource=event.resource, outcome=event.outcome, source=event.source,
                    request_id=event.request_id, details=event.details,
                    prev_hash=event.prev_hash, hash=event.hash)


@router.get("/events", dependencies=[allow("audit:Read", "audit")], response_model=EventPage,
            summary="List audit entries, newest first")
def list_events(
    session: DbSession,
    user: str | None = None,
    action: Annotated[str | None, Query(
        description="an action, or a glob: tables:*; in any case")] = None,
    outcome: Literal["allowed", "denied", "failed"] | None = None,
    since: Annotated[str | None, Query(description=f"from this time on: {_TIME}")] = None,
    until: Annotated[str | None, Query(description=f"before this time: {_TIME}")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(description="entries older than this seq (the "
                                        "previous page's next)")] = None,
) -> EventPage:
    page = audit.list_events(
        session, user=user, action=action, outcome=outcome,
        since=parse_time(since, what="since") if since else None,
        until=parse_time(until, what="until") if until else None,
        limit=limit, before_seq=before)
    return EventPage(events=[_out(e) for e in page.events], next=page.next)


@router.post("/verify", dependencies=[allow("audit:Verify", "audit")],
             response_model=VerifyOut,
             summary="Check the hash chain, and the copy in audit.events")
def verify(session: DbSession, storage: Storage) -> VerifyOut:
    report = audit.verify(session, storage=storage)
    return VerifyOut(ok=report.ok, entries=report.entries, first_bad=report.first_bad,
                     problem=report.problem, where=report.where,
                     lake_entries=report.lake_entries)
