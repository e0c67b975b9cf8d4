"""REST routes of streams, under ``/api/v1/streams`` (the CLI's and SDK's; AWS's clients use
the Kinesis API, :mod:`cumulo.streams.kinesis`)."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.db import get_session
from cumulo.errors import Invalid
from cumulo.permissions import allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.streams import service
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
            summary="A stream: its shards, hash-key ranges, sequence numbers, records, bytes")
def show_stream(name: str, request: Request, session: DbSession) -> dict[str, Any]:
    return service.stream_doc(session, _engine(request), service.get_stream(session, name))


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
    stream = service.get_stream(session, name)
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
        written = _engine(request).put(stream, lambda: service.shards_of(session, stream),
                                       [r for _, r in good])
        for (i, _), (shard, seq, _) in zip(good, written, strict=True):
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
        log = engine.logs.shard(name, doc["shard_id"])
        if await run_in_threadpool(log.wait, following - 1, wait):
            doc, _ = await run_in_threadpool(read, following)
    return doc
