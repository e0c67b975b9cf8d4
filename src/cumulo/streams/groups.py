"""Consumer groups: each shard of a stream is read by one member of a group at a time, and the
group's progress (a checkpoint per shard) is kept in the database, as the Kinesis Client
Library keeps it in its lease table.

A member (one ``client.streams.consume(name, group=...)``) calls :func:`heartbeat` every few
seconds. Each call renews the member and the leases it holds, and may take more:

- a lease is *free* when no one holds it or its holder stopped renewing it (``lease_until``
  passed): a member that died loses its shards after one lease time;
- each member aims at a fair share, ``ceil(ready shards / live members)``: it takes free
  leases up to its share and, when none is free, steals one a call from the member holding
  the most (only from one over the share, or at the share while the taker needs two or more,
  so shares never swing back and forth), as the KCL's lease taker does;
- a shard is *ready* once its parents are done: after a split or merge a group finishes the
  parents (read to their end, checkpoint ``SHARD_END``) before any member takes a child;
- every change of holder adds one to the lease's ``counter``; a checkpoint that names an older
  counter is refused, so a member that lost a shard cannot move the group's checkpoint.

Delivery is at least once: a member that dies (or loses a shard) after reading records and
before checkpointing them has them read again by the next holder, from the last checkpoint.

The decisions (:func:`plan`) are pure functions of the leases, the members and the time; the
rest applies them to the rows, with conditional updates so that two members never both take
one lease.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.leases import db_now
from cumulo.streams import service
from cumulo.streams.models import GroupMember, Lease, Shard, Stream
from cumulo.streams.service import StreamEngine

__all__ = ["LEASE_SECONDS", "SHARD_END", "LeaseView", "Take", "check_group_name", "checkpoint",
           "delete_group", "expired", "fair_share", "group_docs", "heartbeat", "plan", "ready",
           "release"]

SHARD_END = "SHARD_END"  # the checkpoint of a closed shard the group has read to its end
LEASE_SECONDS = 15.0  # how long a lease lasts past its last renewal, unless a member says
MAX_LEASE_SECONDS = 300.0
STARTS = ("TRIM_HORIZON", "LATEST")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


# --- decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseView:
    """What a decision needs to know of a lease."""

    shard: str
    owner: str | None
    until: datetime | None
    counter: int
    done: bool = False  # its checkpoint is SHARD_END
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Take:
    """Take ``shard``'s lease if its counter is still ``counter``; ``stolen_from`` a member
    that still renews it (None: the lease was free)."""

    shard: str
    counter: int
    stolen_from: str | None = None


def expired(lease: LeaseView, now: datetime) -> bool:
    return lease.owner is None or lease.until is None or lease.until <= now


def ready(leases: Sequence[LeaseView]) -> list[LeaseView]:
    """The leases a member may hold: shards not done whose parents are all done."""
    done = {lease.shard for lease in leases if lease.done}
    known = {lease.shard for lease in leases}
    return [lease for lease in leases if not lease.done
            and all(p in done or p not in known for p in lease.parents)]


def fair_share(shards: int, members: int) -> int:
    return math.ceil(shards / max(members, 1))


def _order(member: str, shard: str) -> str:
    """Each member goes through free leases in its own order, so that members joining at
    once mostly reach for different ones."""
    return hashlib.sha256(f"{member}/{shard}".encode()).hexdigest()


def plan(leases: Sequence[LeaseView], members: Sequence[str], me: str,
         now: datetime) -> list[Take]:
    """The leases ``me`` should take now: free ones up to its fair share, else one stolen
    from the member holding the most."""
    live = ready(leases)
    holding: dict[str, list[LeaseView]] = {}
    for lease in live:
        if not expired(lease, now):
            holding.setdefault(lease.owner or "", []).append(lease)
    # A holder whose membership lapsed but whose lease did not still counts: it holds shards.
    workers = set(members) | set(holding) | {me}
    target = fair_share(len(live), len(workers))
    need = target - len(holding.get(me, []))
    if need <= 0:
        return []
    free = sorted((lease for lease in live if expired(lease, now)),
                  key=lambda lease: _order(me, lease.shard))
    if free:
        return [Take(lease.shard, lease.counter) for lease in free[:need]]
    others = [(len(held), owner) for owner, held in holding.items() if owner != me]
    if not others:
        return []
    most, victim = max(others)
    if most > target or (most == target and need > 1):
        lease = min(holding[victim], key=lambda lease: _order(me, lease.shard))
        return [Take(lease.shard, lease.counter, stolen_from=victim)]
    return []


# --- the rows ------------------------------------------------------------------------------------


def check_group_name(group: str) -> None:
    if not _NAME.match(group):
        raise Invalid(f"group name {group[:140]!r} is not allowed: use 1-128 of letters, "
                      "digits, '_', '.' and '-'", details={"group": group[:140]})


def _lease_seconds(value: float) -> float:
    if not 1.0 <= value <= MAX_LEASE_SECONDS:
        raise Invalid(f"a lease lasts 1 to {MAX_LEASE_SECONDS:.0f} seconds, not {value:g}",
                      details={"field": "lease_seconds"})
    return value


def _parents(shard: Shard) -> tuple[str, ...]:
    return tuple(p for p in (shard.parent, shard.adjacent_parent) if p)


def _leases(session: Session, stream: Stream, group: str) -> list[Lease]:
    return list(session.scalars(select(Lease).where(
        Lease.stream_id == stream.id, Lease.group_name == group)
        .order_by(Lease.shard_id).execution_options(populate_existing=True)))


def _ensure_leases(session: Session, engine: StreamEngine, stream: Stream, group: str,
                   shards: list[Shard], start: str) -> list[Lease]:
    """The group's leases, one per shard, made for the shards that have none. A new group
    starts where ``start`` says; a shard made later (a split's children) from its first
    record."""
    rows = _leases(session, stream, group)
    have = {row.shard_id for row in rows}
    missing = [s for s in shards if s.shard_id not in have]
    if not missing:
        return rows
    new_group = not rows
    for shard in missing:
        mark: str | None = None
        if new_group and start == "LATEST":
            if shard.closed_at is not None:
                mark = SHARD_END
            else:
                log = engine.logs.shard(stream.name, shard.shard_id)
                mark = service.external_seq(shard, log.next_seq - 1)
        session.add(Lease(stream_id=stream.id, group_name=group, shard_id=shard.shard_id,
                          counter=0, checkpoint=mark))
    try:
        session.commit()
    except IntegrityError:  # another member made them at the same time
        session.rollback()
    return _leases(session, stream, group)


def _checkpoint_seq(shard: Shard, mark: str | None) -> int | None:
    """The shard's sequence (in the log) a checkpoint names; None for none."""
    if mark is None or mark == SHARD_END:
        return None
    return int(mark) & ((1 << 64) - 1)


def _finished(engine: StreamEngine, stream: Stream, shard: Shard, mark: str | None) -> bool:
    """Whether a closed shard has nothing left to read after ``mark``."""
    if mark == SHARD_END:
        return True
    if shard.closed_at is None:
        return False
    log = engine.logs.shard(stream.name, shard.shard_id)
    after = _checkpoint_seq(shard, mark)
    position = max(log.first_seq, after + 1 if after is not None else 0)
    return position >= log.next_seq


def _view(row: Lease, shard: Shard | None) -> LeaseView:
    return LeaseView(row.shard_id, row.owner, row.lease_until, row.counter,
                     done=row.checkpoint == SHARD_END,
                     parents=_parents(shard) if shard is not None else ())


def heartbeat(session: Session, engine: StreamEngine, name: str, group: str, *, member: str,
              label: str = "", lease_seconds: float = LEASE_SECONDS,
              start: str = "TRIM_HORIZON") -> dict[str, Any]:
    """One call of a member: renew it and its leases, take what :func:`plan` says, and tell
    it the shards it holds (with their counters and checkpoints). Commits."""
    check_group_name(group)
    ttl = timedelta(seconds=_lease_seconds(lease_seconds))
    if start not in STARTS:
        raise Invalid(f"a group starts at {' or '.join(STARTS)}, not {start!r}",
                      details={"field": "start"})
    if not 1 <= len(member) <= 64:
        raise Invalid("a member id is 1 to 64 characters", details={"field": "member"})
    stream = service.get_stream(session, name)
    now = db_now(session)
    _renew_member(session, stream, group, member, label, now, ttl)
    shards = {s.shard_id: s for s in service.shards_of(session, stream)}
    rows = _ensure_leases(session, engine, stream, group, list(shards.values()), start)
    now = db_now(session)
    for row in rows:
        # A closed shard read to its end by the group: done, and no one's any more.
        if row.checkpoint != SHARD_END and row.shard_id in shards and _finished(
                engine, stream, shards[row.shard_id], row.checkpoint):
            row.checkpoint, row.owner, row.lease_until = SHARD_END, None, None
        elif row.owner == member:
            row.lease_until = now + ttl
    session.commit()
    members = list(session.scalars(select(GroupMember.member).where(
        GroupMember.stream_id == stream.id, GroupMember.group_name == group,
        GroupMember.alive_until > now)))
    views = [_view(row, shards.get(row.shard_id)) for row in rows]
    for take in plan(views, members, member, now):
        session.execute(update(Lease).where(
            Lease.stream_id == stream.id, Lease.group_name == group,
            Lease.shard_id == take.shard, Lease.counter == take.counter)
            .values(owner=member, counter=take.counter + 1, lease_until=now + ttl))
    session.commit()
    held = [row for row in _leases(session, stream, group) if row.owner == member]
    return {"stream": name, "group": group, "member": member, "members": len(members),
            "lease_seconds": ttl.total_seconds(),
            "leases": [{"shard_id": row.shard_id, "counter": row.counter,
                        "checkpoint": row.checkpoint} for row in held]}


def _renew_member(session: Session, stream: Stream, group: str, member: str, label: str,
                  now: datetime, ttl: timedelta) -> None:
    session.execute(delete(GroupMember).where(
        GroupMember.stream_id == stream.id, GroupMember.group_name == group,
        GroupMember.alive_until < now - ttl))
    renewed = session.execute(update(GroupMember).where(
        GroupMember.stream_id == stream.id, GroupMember.group_name == group,
        GroupMember.member == member).values(alive_until=now + ttl)).rowcount  # type: ignore[attr-defined]
    if not renewed:
        session.add(GroupMember(stream_id=stream.id, group_name=group, member=member,
                                label=label[:255] or member, joined_at=now,
                                alive_until=now + ttl))
    try:
        session.commit()
    except IntegrityError:  # the same member, twice at once: the other call made the row
        session.rollback()


def _held(session: Session, stream: Stream, group: str, shard_id: str, member: str,
          counter: int) -> Lease:
    row = session.scalar(select(Lease).where(
        Lease.stream_id == stream.id, Lease.group_name == group, Lease.shard_id == shard_id)
        .execution_options(populate_existing=True))
    if row is None:
        raise NotFound(f"group {group!r} of stream {stream.name!r} has no lease of shard "
                       f"{shard_id!r}", details={"group": group, "shard": shard_id})
    if row.owner != member or row.counter != counter:
        raise Conflict(f"shard {shard_id} of group {group!r} is no longer this member's (it "
                       "was taken over: its new holder goes on from the last checkpoint)",
                       details={"group": group, "shard": shard_id, "lost": True})
    return row


def checkpoint(session: Session, engine: StreamEngine, name: str, group: str, *, member: str,
               shard_id: str, counter: int, sequence_number: str) -> dict[str, Any]:
    """Record that the group is done with ``shard_id`` up to ``sequence_number`` (included),
    if ``member`` still holds the shard's lease under ``counter``. At the end of a closed
    shard the checkpoint becomes SHARD_END and the lease is let go. Commits."""
    check_group_name(group)
    stream = service.get_stream(session, name)
    shard = next((s for s in service.shards_of(session, stream) if s.shard_id == shard_id),
                 None)
    if shard is None:
        raise NotFound(f"stream {name!r} has no shard {shard_id!r}", details={"shard": shard_id})
    row = _held(session, stream, group, shard_id, member, counter)
    seq = service.internal_seq(shard, sequence_number)
    log = engine.logs.shard(name, shard_id)
    if seq >= log.next_seq:
        raise Invalid(f"sequence number {sequence_number} is past shard {shard_id}'s newest "
                      "record: checkpoint one that was read", details={"field": "sequence_number"})
    before = _checkpoint_seq(shard, row.checkpoint)
    if row.checkpoint == SHARD_END or (before is not None and seq < before):
        raise Invalid(f"sequence number {sequence_number} is before group {group!r}'s "
                      f"checkpoint in shard {shard_id} ({row.checkpoint}): a checkpoint only "
                      "moves forward", details={"field": "sequence_number"})
    row.checkpoint = sequence_number
    row.checkpointed_at = db_now(session)
    if _finished(engine, stream, shard, row.checkpoint):
        row.checkpoint, row.owner, row.lease_until = SHARD_END, None, None
    session.commit()
    return {"shard_id": shard_id, "checkpoint": row.checkpoint,
            "shard_end": row.checkpoint == SHARD_END}


def release(session: Session, name: str, group: str, member: str) -> int:
    """Let go of every lease ``member`` holds, and of its membership: the others take its
    shards at their next call, from its checkpoints. Commits."""
    stream = service.get_stream(session, name)
    done = session.execute(update(Lease).where(
        Lease.stream_id == stream.id, Lease.group_name == group, Lease.owner == member)
        .values(owner=None, lease_until=None)).rowcount  # type: ignore[attr-defined]
    session.execute(delete(GroupMember).where(
        GroupMember.stream_id == stream.id, GroupMember.group_name == group,
        GroupMember.member == member))
    session.commit()
    return int(done)


def delete_group(session: Session, name: str, group: str) -> None:
    """Forget a group: its members and checkpoints. Commits."""
    stream = service.get_stream(session, name)
    if not _leases(session, stream, group):
        raise NotFound(f"stream {name!r} has no consumer group {group!r}",
                       details={"group": group})
    for model in (Lease, GroupMember):
        session.execute(delete(model).where(model.stream_id == stream.id,
                                            model.group_name == group))
    session.commit()


def group_docs(session: Session, engine: StreamEngine, stream: Stream,
               group: str | None = None) -> list[dict[str, Any]]:
    """Each consumer group of the stream (or ``group``): its live members, and per shard its
    holder, checkpoint and lag (records not checkpointed yet, and how old the oldest is)."""
    now = db_now(session)
    query = select(Lease).where(Lease.stream_id == stream.id)
    if group is not None:
        query = query.where(Lease.group_name == group)
    rows = list(session.scalars(query.order_by(Lease.group_name, Lease.shard_id)))
    if group is not None and not rows:
        raise NotFound(f"stream {stream.name!r} has no consumer group {group!r}; 'cumulo "
                       f"streams groups {stream.name}' lists its groups", details={"group": group})
    members: dict[str, list[GroupMember]] = {}
    for m in session.scalars(select(GroupMember).where(
            GroupMember.stream_id == stream.id, GroupMember.alive_until > now)
            .order_by(GroupMember.joined_at)):
        members.setdefault(m.group_name, []).append(m)
    shards = {s.shard_id: s for s in service.shards_of(session, stream)}
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        doc = groups.setdefault(row.group_name, {
            "group": row.group_name, "members": [
                {"member": m.member, "label": m.label, "joined_at": m.joined_at.isoformat()}
                for m in members.get(row.group_name, [])],
            "shards": [], "behind": 0})
        shard = shards.get(row.shard_id)
        lag = _lag(engine, stream, shard, row.checkpoint, now) if shard else (0, 0)
        holder = row.owner if row.owner and row.lease_until and row.lease_until > now else None
        doc["shards"].append({"shard_id": row.shard_id, "owner": holder,
                              "checkpoint": row.checkpoint, "behind": lag[0],
                              "millis_behind": lag[1]})
        doc["behind"] += lag[0]
    for doc in groups.values():
        owned: dict[str, list[str]] = {}
        for s in doc["shards"]:
            if s["owner"]:
                owned.setdefault(s["owner"], []).append(s["shard_id"])
        for m in doc["members"]:
            m["shards"] = owned.get(m["member"], [])
    return list(groups.values())


def _lag(engine: StreamEngine, stream: Stream, shard: Shard, mark: str | None,
         now: datetime) -> tuple[int, int]:
    """Records after the checkpoint, and milliseconds since the first of them arrived."""
    if mark == SHARD_END:
        return 0, 0
    log = engine.logs.shard(stream.name, shard.shard_id)
    after = _checkpoint_seq(shard, mark)
    position = max(log.first_seq, after + 1 if after is not None else 0)
    behind = max(0, log.next_seq - position)
    if not behind:
        return 0, 0
    first = log.read(position, limit=1)
    age = int((now.timestamp() - first[0].arrived) * 1000) if first else 0
    return behind, max(0, age)
