"""REST routes of streams, under ``/api/v1/streams`` (the CLI's and SDK's; AWS's clients use
the Kinesis API, :mod:`cumulo.streams.kinesis`)."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.db import get_session
from cumulo.errors import CumuloError, Invalid, NotFound
from cumulo.permissions import allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.streams import consumers, delivery, groups, push, scoring, service
from cumulo.streams.models import Shard
from cumulo.streams.service import Iterator, StreamEngine
from cumulo.units import parse_duration, parse_time

__all__ = ["router"]

router = APIRouter(prefix="/streams", tags=["streams"])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]
MAX_WAIT = 20.0  # seconds a read waits for records (a tail's long poll)


def _engine(request: Request) -> StreamEngine:
    engine: StreamEngine = services(request).streams
    return engine


class StreamIn(BaseModel):
    name: str
    shards: int = Field(1, description="shards: each takes a part of the partition keys")
    retention: str = Field("24h", description="how long records are kept: 24h to 365d")
    project: str | None = None


class RecordIn(BaseModel):
    partition_key: str
    data: str | None = Field(None, description="the record, as text (UTF-8)")
    data_base64: str | None = Field(None, description="or as base64, for bytes")
    explicit_hash_key: str | None = None


class RecordsIn(BaseModel):
    records: list[RecordIn]


def _retention_hours(text: str) -> int:
    seconds = parse_duration(text, what="--retention")
    if seconds % 3600:
        raise Invalid(f"retention {text!r} must be whole hours (24h to 365d)")
    return int(seconds // 3600)


@router.post("", dependencies=[allow("streams:Create", "stream/*", project=body_project)],
             status_code=201, summary="Create a stream")
def create_stream(body: StreamIn, request: Request, session: DbSession,
                  caller: Caller) -> dict[str, Any]:
    stream = service.create_stream(session, caller, body.name, shards=body.shards,
                                   retention_hours=_retention_hours(body.retention),
                                   project=body.project)
    return service.stream_doc(session, _engine(request), stream)


@router.get("", dependencies=[allow("streams:List", "stream/*", project=query_project)],
            summary="List streams")
def list_streams(request: Request, session: DbSession, caller: Caller,
                 project: str | None = None) -> list[dict[str, Any]]:
    engine = _engine(request)
    return [service.stream_doc(session, engine, s)
            for s in service.list_streams(session, project=project)
            if caller.can("streams:List", f"stream/{s.name}")]


@router.get("/{name}", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A stream: its shards, hash-key ranges, sequence numbers, records, bytes; "
                    "its consumer groups and deliveries, with their lag")
def show_stream(name: str, request: Request, session: DbSession) -> dict[str, Any]:
    stream = service.get_stream(session, name)
    return {**service.stream_doc(session, _engine(request), stream),
            "groups": groups.group_docs(session, _engine(request), stream),
            "consumers": consumers.consumer_docs(session, _engine(request), stream),
            "deliveries": _deliveries(request, session, name),
            "scorers": scoring.scorer_docs(session, _engine(request), stream)}


@router.delete("/{name}", dependencies=[allow("streams:Delete", "stream/{name}")],
               summary="Delete a stream and its records")
def delete_stream(name: str, request: Request, session: DbSession) -> dict[str, Any]:
    service.delete_stream(session, _engine(request), name)
    return {"name": name, "deleted": True}


class SplitIn(BaseModel):
    shard: str
    at: str | None = Field(None, description="the first hash key of the second child "
                                             "(default: the middle of the shard's range)")


class MergeIn(BaseModel):
    shard: str
    adjacent: str


@router.post("/{name}/split", dependencies=[allow("streams:Write", "stream/{name}")],
             summary="Split a shard in two (its records stay readable; new records go to "
                     "its children)")
def split(name: str, body: SplitIn, request: Request, session: DbSession) -> dict[str, Any]:
    service.split_shard(session, _engine(request), name, body.shard, body.at)
    return service.stream_doc(session, _engine(request), service.get_stream(session, name))


@router.post("/{name}/merge", dependencies=[allow("streams:Write", "stream/{name}")],
             summary="Merge two shards whose hash keys are adjacent")
def merge(name: str, body: MergeIn, request: Request, session: DbSession) -> dict[str, Any]:
    service.merge_shards(session, _engine(request), name, body.shard, body.adjacent)
    return service.stream_doc(session, _engine(request), service.get_stream(session, name))


def _record_bytes(i: int, record: RecordIn) -> bytes:
    if (record.data is None) == (record.data_base64 is None):
        raise Invalid(f"record {i}: give data (text) or data_base64, one of them")
    if record.data is not None:
        return record.data.encode()
    try:
        return base64.b64decode(record.data_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"record {i}: data_base64 is not base64") from None


@router.post("/{name}/records", dependencies=[allow("streams:Write", "stream/{name}")],
             summary="Put records (up to 500, 1 MiB each); a bad one fails alone")
def put_records(name: str, body: RecordsIn, request: Request,
                session: DbSession) -> dict[str, Any]:
    if not body.records or len(body.records) > service.MAX_BATCH:
        raise Invalid(f"put 1 to {service.MAX_BATCH} records at once, not {len(body.records)}")
    stream = _engine(request).writable(session, name)
    results: list[dict[str, Any] | None] = [None] * len(body.records)
    good: list[tuple[int, tuple[str, bytes, int]]] = []
    total = 0
    for i, record in enumerate(body.records):
        try:
            data = _record_bytes(i, record)
            total += len(data)
            if len(data) > service.MAX_RECORD:
                raise Invalid(f"record {i} is {len(data)} bytes; a record is at most "
                              f"{service.MAX_RECORD} (1 MiB)")
            if total > service.MAX_BATCH_BYTES:
                raise Invalid(f"record {i} takes the batch past {service.MAX_BATCH_BYTES} "
                              "bytes (5 MiB)")
            good.append((i, (record.partition_key, data, service.hash_key_of(
                record.partition_key, record.explicit_hash_key))))
        except Invalid as exc:
            results[i] = {"error": exc.message}
    if good:
        written = _engine(request).put(session, stream, [r for _, r in good], refuse=True)
        for (i, _), done in zip(good, written, strict=True):
            if isinstance(done, service.ShardBusy):
                results[i] = {"error": done.message, "retry": True}
                continue
            shard, seq, _ = done
            results[i] = {"shard_id": shard.shard_id,
                          "sequence_number": service.external_seq(shard, seq)}
    return {"failed": sum(1 for r in results if r and "error" in r), "records": results}


@router.get("/{name}/records", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="Read records of one shard (from=TRIM_HORIZON|LATEST|AT_TIMESTAMP|"
                    "AT_SEQUENCE_NUMBER|AFTER_SEQUENCE_NUMBER, or iterator=); wait= seconds "
                    "for records to come (a tail's long poll)")
async def get_records(name: str, request: Request, shard: str | None = None,
                      start: Annotated[str, Query(alias="from")] = "TRIM_HORIZON",
                      sequence: str | None = None, at: str | None = None,
                      iterator: str | None = None, limit: int = 1000,
                      wait: float = 0.0) -> dict[str, Any]:
    engine = _engine(request)
    if not 1 <= limit <= 10_000:
        raise Invalid(f"limit is 1 to 10000, not {limit}")
    wait = min(max(wait, 0.0), MAX_WAIT)
    timestamp = parse_time(at, what="--at").timestamp() if at is not None else None

    def position(session: Session) -> tuple[Any, Any, int]:
        stream = service.get_stream(session, name)
        shards = service.shards_of(session, stream)
        if iterator:
            it = engine.open_iterator(iterator)
            if it.stream != name:
                raise Invalid("the iterator is of another stream")
            chosen = next((s for s in shards if s.shard_id == it.shard), None)
            if chosen is None:
                raise Invalid("the iterator's shard is gone")
            return stream, chosen, it.next_seq
        wanted = shard or shards[0].shard_id
        chosen = next((s for s in shards if s.shard_id == wanted), None)
        if chosen is None:
            raise Invalid(f"stream {name!r} has no shard {wanted!r}; 'cumulo streams show "
                          f"{name}' lists them")
        return stream, chosen, engine.start_seq(stream, chosen, start.upper(),
                                                sequence=sequence, timestamp=timestamp)

    def read(from_seq: int | None) -> tuple[dict[str, Any], int]:
        with services(request).sessions() as session:
            stream, chosen, next_seq = position(session)
            if from_seq is not None:
                next_seq = from_seq
            records, following, behind = engine.read(stream, chosen, next_seq, limit=limit)
            drained = (chosen.closed_at is not None
                       and following >= engine.logs.shard(name, chosen.shard_id).next_seq)
            return {"shard_id": chosen.shard_id, "records": [
                {"sequence_number": service.external_seq(chosen, r.seq),
                 "arrived": r.arrived, "partition_key": r.key,
                 "data_base64": base64.b64encode(r.data).decode()} for r in records],
                "millis_behind": behind,
                # A closed shard read to its end has no next page: its children go on.
                "iterator": None if drained else engine.seal(
                    Iterator(name, chosen.shard_id, following, time.time())),
                "child_shards": [c.shard_id for c in service.children_of(
                    service.shards_of(session, stream), chosen.shard_id)] if drained else []}, \
                following

    doc, following = await run_in_threadpool(read, None)
    if not doc["records"] and wait > 0 and doc["iterator"] is not None:
        # Waits on the event loop (push.wait), not on a thread: many tails may wait at once.
        log = await run_in_threadpool(engine.logs.shard, name, doc["shard_id"])
        if await push.wait(log, following - 1, wait):
            doc, _ = await run_in_threadpool(read, following)
    return doc


# --- push subscriptions ---------------------------------------------------------------------


@router.get("/{name}/subscribe", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="Push: one shard's records as they are written, a line of JSON a batch "
                    "(an empty one at least every 5 s), for up to 5 minutes (seconds=)",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {"schema": {
                "type": "string"}}}}})
async def subscribe(name: str, request: Request, shard: str,
                    start: Annotated[str, Query(alias="from")] = "LATEST",
                    sequence: str | None = None, at: str | None = None,
                    seconds: Annotated[float, Query(gt=0, le=push.SESSION_SECONDS)]
                    = push.SESSION_SECONDS) -> push.PushResponse:
    engine = _engine(request)
    sessions = services(request).sessions
    timestamp = parse_time(at, what="--at").timestamp() if at is not None else None

    def position() -> tuple[Shard, int, Any]:
        with sessions() as session:
            stream = service.get_stream(session, name)
            chosen = next((s for s in service.shards_of(session, stream)
                           if s.shard_id == shard), None)
            if chosen is None:
                raise NotFound(f"stream {name!r} has no shard {shard!r}; 'cumulo streams show "
                               f"{name}' lists them", details={"shard": shard})
            first = engine.start_seq(stream, chosen, start.upper(), sequence=sequence,
                                     timestamp=timestamp)
            return chosen, first, engine.logs.shard(name, chosen.shard_id)

    chosen, first, shard_log = await run_in_threadpool(position)
    children: list[str] = []

    def closed() -> bool:
        with sessions() as session:
            row = session.get(Shard, chosen.id)
            if row is None:
                raise NotFound(f"stream {name!r} was deleted")
            if row.closed_at is None:
                return False
            children[:] = [c.shard_id for c in service.children_of(
                service.shards_of(session, service.get_stream(session, name)), shard)]
            return True

    def page(each: push.Page) -> bytes:
        return orjson.dumps({
            "shard_id": shard, "records": [
                {"sequence_number": service.external_seq(chosen, r.seq), "arrived": r.arrived,
                 "partition_key": r.key, "data_base64": base64.b64encode(r.data).decode()}
                for r in each.records],
            "continuation": service.external_seq(chosen, each.next_seq - 1),
            "millis_behind": each.millis_behind, "end": each.ended,
            "child_shards": list(children) if each.ended else []}) + b"\n"

    def fail(exc: Exception) -> bytes:
        error = exc if isinstance(exc, CumuloError) else CumuloError(
            "the subscription failed on the server: subscribe again from the last "
            "continuation")
        return orjson.dumps(error.to_payload()) + b"\n"

    release = engine.subscriptions.acquire()
    return push.PushResponse(
        push.Follower(shard_log, first, closed=closed, seconds=seconds,
                      readers=engine.subscriptions.readers()),
        release, content_type="application/x-ndjson", page=page, fail=fail)


# --- consumer groups -----------------------------------------------------------------------------


class HeartbeatIn(BaseModel):
    member: str = Field(description="the member's own id (random), the same at each call")
    label: str = Field("", description="who it is, for people: host:pid")
    lease_seconds: float = Field(groups.LEASE_SECONDS,
                                 description="how long its leases last past each call")
    start: str = Field("TRIM_HORIZON", description="where a new group starts: TRIM_HORIZON "
                                                   "(the oldest record kept) or LATEST")


class CheckpointIn(BaseModel):
    member: str
    shard_id: str
    counter: int = Field(description="the lease's counter, as the member's heartbeat gave it")
    sequence_number: str = Field(description="the last record the group is done with")


@router.get("/{name}/groups", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A stream's consumer groups: members, and per shard holder, checkpoint, lag")
def list_groups(name: str, request: Request, session: DbSession) -> list[dict[str, Any]]:
    return groups.group_docs(session, _engine(request), service.get_stream(session, name))


@router.get("/{name}/groups/{group}", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A consumer group: members, and per shard holder, checkpoint, lag")
def show_group(name: str, group: str, request: Request, session: DbSession) -> dict[str, Any]:
    return groups.group_docs(session, _engine(request), service.get_stream(session, name),
                             group)[0]


@router.delete("/{name}/groups/{group}", dependencies=[allow("streams:Read", "stream/{name}")],
               summary="Forget a consumer group: its members and checkpoints")
def delete_group(name: str, group: str, session: DbSession) -> dict[str, Any]:
    groups.delete_group(session, name, group)
    return {"stream": name, "group": group, "deleted": True}


@router.post("/{name}/groups/{group}/heartbeat",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="A member's call, every few seconds: renew it and its leases, take its "
                     "fair share of the shards; answers the shards it holds")
def heartbeat(name: str, group: str, body: HeartbeatIn, request: Request,
              session: DbSession) -> dict[str, Any]:
    return groups.heartbeat(session, _engine(request), name, group, member=body.member,
                            label=body.label, lease_seconds=body.lease_seconds,
                            start=body.start)


@router.post("/{name}/groups/{group}/checkpoint",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="Record how far the group got in a shard (409 if the member lost it)")
def checkpoint(name: str, group: str, body: CheckpointIn, request: Request,
               session: DbSession) -> dict[str, Any]:
    return groups.checkpoint(session, _engine(request), name, group, member=body.member,
                             shard_id=body.shard_id, counter=body.counter,
                             sequence_number=body.sequence_number)


@router.delete("/{name}/groups/{group}/members/{member}",
               dependencies=[allow("streams:Read", "stream/{name}")],
               summary="A member leaves: its shards go to the others at once")
def leave_group(name: str, group: str, member: str, session: DbSession) -> dict[str, Any]:
    return {"member": member, "released": groups.release(session, name, group, member)}


# --- deliveries ----------------------------------------------------------------------------------


class DeliveryIn(BaseModel):
    table: str = Field(description="the lake table records go to: DATABASE.TABLE")
    buffer: str = Field(delivery.DEFAULT_BUFFER,
                        description="write a batch at this size or after this long: 5MB/60s")
    partition_by: str | None = Field(None, description="day: the day each record arrived")
    transform: str | None = Field(None, description="MODULE:FUNCTION or FILE.py:FUNCTION, "
                                                    "called on each record")
    transform_source: str | None = Field(None, description="FILE.py's text, for FILE.py:FUNCTION")
    start: str = Field("LATEST", description="LATEST (records put from now on) or TRIM_HORIZON")
    name: str | None = Field(None, description="default: the table's name")


def _deliveries(request: Request, session: Session, name: str) -> list[dict[str, Any]]:
    running = services(request)
    return delivery.delivery_docs(session, running.streams, running.storage, running.deliveries,
                                  service.get_stream(session, name))


def _delivery_doc(request: Request, session: Session, name: str,
                  delivery_name: str) -> dict[str, Any]:
    found = [d for d in _deliveries(request, session, name) if d["name"] == delivery_name]
    if not found:
        raise NotFound(f"stream {name!r} has no delivery {delivery_name!r}",
                       details={"delivery": delivery_name})
    return found[0]


@router.post("/{name}/deliveries", dependencies=[allow("streams:Read", "stream/{name}")],
             status_code=201,
             summary="Deliver a stream into a lake table in batches, exactly once (needs "
                     "tables:Write on the table and its _errors table)")
def create_delivery(name: str, body: DeliveryIn, request: Request, session: DbSession,
                    caller: Caller) -> dict[str, Any]:
    running = services(request)
    made = delivery.create_delivery(
        session, running.streams, running.storage, caller, name, table=body.table,
        buffer=body.buffer, partition_by=body.partition_by, transform=body.transform,
        transform_source=body.transform_source, start=body.start, name=body.name)
    running.deliveries.wake()
    return _delivery_doc(request, session, name, made.name)


@router.get("/{name}/deliveries", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A stream's deliveries, with their lag")
def list_deliveries(name: str, request: Request, session: DbSession) -> list[dict[str, Any]]:
    return _deliveries(request, session, name)


@router.get("/{name}/deliveries/{delivery_name}",
            dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A delivery, with its lag")
def show_delivery(name: str, delivery_name: str, request: Request,
                  session: DbSession) -> dict[str, Any]:
    return _delivery_doc(request, session, name, delivery_name)


@router.post("/{name}/deliveries/{delivery_name}/stop",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="Stop a delivery (it starts again where the table says)")
def stop_delivery(name: str, delivery_name: str, request: Request, session: DbSession,
                  caller: Caller) -> dict[str, Any]:
    delivery.set_state(session, caller, name, delivery_name, "stopped")
    services(request).deliveries.wake()
    return _delivery_doc(request, session, name, delivery_name)


@router.post("/{name}/deliveries/{delivery_name}/start",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="Start a stopped or failed delivery again, where the table says")
def start_delivery(name: str, delivery_name: str, request: Request, session: DbSession,
                   caller: Caller) -> dict[str, Any]:
    delivery.set_state(session, caller, name, delivery_name, "running")
    services(request).deliveries.wake()
    return _delivery_doc(request, session, name, delivery_name)


@router.delete("/{name}/deliveries/{delivery_name}",
               dependencies=[allow("streams:Read", "stream/{name}")],
               summary="Remove a delivery (what it wrote stays in the table)")
def delete_delivery(name: str, delivery_name: str, request: Request, session: DbSession,
                    caller: Caller) -> dict[str, Any]:
    delivery.delete_delivery(session, caller, name, delivery_name)
    services(request).deliveries.wake()
    return {"stream": name, "delivery": delivery_name, "deleted": True}


# --- scorers -------------------------------------------------------------------------------------


class ScorerIn(BaseModel):
    endpoint: str = Field(description="the endpoint that scores the records (JSON objects)")
    to_stream: str | None = Field(None, description="a stream each record goes to, with its "
                                                    "prediction, under its partition key")
    to_table: str | None = Field(None, description="or a lake table (DATABASE.TABLE) with the "
                                                   "records' columns and 'prediction'")
    batch: int = Field(scoring.DEFAULT_BATCH, description="records a request, at most")
    start: str = Field("LATEST", description="LATEST (records put from now on) or TRIM_HORIZON")
    name: str | None = Field(None, description="default: the endpoint's name")


def _scorer_doc(request: Request, session: Session, name: str,
                scorer_name: str) -> dict[str, Any]:
    stream = service.get_stream(session, name)
    scoring.get_scorer(session, stream, scorer_name)  # NotFound names the way to list them
    return next(d for d in scoring.scorer_docs(session, _engine(request), stream)
                if d["name"] == scorer_name)


@router.post("/{name}/scorers", dependencies=[allow("streams:Read", "stream/{name}")],
             status_code=201,
             summary="Score a stream's records through an endpoint as they come, into a stream "
                     "or a table (needs endpoints:Invoke, and streams:Write or tables:Write on "
                     "the output)")
def create_scorer(name: str, body: ScorerIn, request: Request, session: DbSession,
                  caller: Caller) -> dict[str, Any]:
    running = services(request)
    made = scoring.create_scorer(session, running.streams, running.storage, caller, name,
                                 endpoint=body.endpoint, to_stream=body.to_stream,
                                 to_table=body.to_table, batch=body.batch,
                                 start=body.start.upper(), name=body.name)
    running.scorers.wake()
    return _scorer_doc(request, session, name, made.name)


@router.get("/{name}/scorers", dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A stream's scorers: state, records scored and failed, lag")
def list_scorers(name: str, request: Request, session: DbSession) -> list[dict[str, Any]]:
    return scoring.scorer_docs(session, _engine(request), service.get_stream(session, name))


@router.get("/{name}/scorers/{scorer_name}",
            dependencies=[allow("streams:Read", "stream/{name}")],
            summary="A scorer: state (and why paused or failed), records scored and failed, "
                    "the last failure, lag")
def show_scorer(name: str, scorer_name: str, request: Request,
                session: DbSession) -> dict[str, Any]:
    return _scorer_doc(request, session, name, scorer_name)


@router.post("/{name}/scorers/{scorer_name}/stop",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="Stop a scorer (it starts again where it was)")
def stop_scorer(name: str, scorer_name: str, request: Request, session: DbSession,
                caller: Caller) -> dict[str, Any]:
    scoring.set_state(session, caller, name, scorer_name, "stopped")
    services(request).scorers.wake()
    return _scorer_doc(request, session, name, scorer_name)


@router.post("/{name}/scorers/{scorer_name}/start",
             dependencies=[allow("streams:Read", "stream/{name}")],
             summary="Start a stopped or failed scorer again, where it was")
def start_scorer(name: str, scorer_name: str, request: Request, session: DbSession,
                 caller: Caller) -> dict[str, Any]:
    scoring.set_state(session, caller, name, scorer_name, "running")
    services(request).scorers.wake()
    return _scorer_doc(request, session, name, scorer_name)


@router.delete("/{name}/scorers/{scorer_name}",
               dependencies=[allow("streams:Read", "stream/{name}")],
               summary="Remove a scorer (what it wrote stays)")
def delete_scorer(name: str, scorer_name: str, request: Request, session: DbSession,
                  caller: Caller) -> dict[str, Any]:
    scoring.delete_scorer(session, caller, name, scorer_name)
    services(request).scorers.wake()
    return {"stream": name, "scorer": scorer_name, "deleted": True}
