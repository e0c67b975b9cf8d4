"""Consumers registered with a stream, as Kinesis's enhanced fan-out has them: a name a reader
subscribes to shards under (SubscribeToShard), with an ARN that names the stream, the consumer
and when it was registered (``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CNAME:
EPOCH``), so that a consumer registered again after a deregistration is a new ARN.

A consumer is ACTIVE as soon as it is registered (Kinesis's takes seconds), and gone as soon
as it is deregistered (a subscription open under it ends at its next page).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.streams.models import Consumer, Stream

if TYPE_CHECKING:
    from cumulo.streams.service import StreamEngine

__all__ = ["MAX_CONSUMERS", "ConsumerLimit", "consumer_arn", "consumer_docs", "deregister",
           "find", "list_consumers", "parse_arn", "register", "stream_arn"]

MAX_CONSUMERS = 20  # on one stream, as Kinesis's
ARN_PREFIX = "arn:aws:kinesis:us-east-1:000000000000:stream/"
_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]*:\d{12}:stream/([A-Za-z0-9_.-]{1,128})"
                  r"/consumer/([A-Za-z0-9_.-]{1,128}):(\d{1,12})$")


class ConsumerLimit(Conflict):
    """The stream has as many registered consumers as it may (Kinesis's
    LimitExceededException)."""


def stream_arn(name: str) -> str:
    return ARN_PREFIX + name


def consumer_arn(stream: str, consumer: Consumer) -> str:
    return f"{stream_arn(stream)}/consumer/{consumer.name}:{_epoch(consumer.created_at)}"


def _epoch(at: datetime) -> int:
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


def parse_arn(arn: str) -> tuple[str, str, int]:
    """The stream, consumer name and registration time (epoch seconds) a consumer ARN names."""
    found = _ARN.match(arn)
    if found is None:
        raise Invalid(f"ConsumerARN {arn[:200]!r} is not a consumer ARN (arn:aws:kinesis:"
                      "REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:TIME, as "
                      "RegisterStreamConsumer gives it)", details={"field": "ConsumerARN"})
    return found[1], found[2], int(found[3])


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"consumer name {name[:140]!r} is not allowed: use 1-128 of letters, "
                      "digits, '_', '.' and '-'", details={"field": "ConsumerName"})


def register(session: Session, stream: Stream, name: str) -> Consumer:
    """A new consumer of ``stream``. Commits."""
    _check_name(name)
    count = len(list_consumers(session, stream))
    if count >= MAX_CONSUMERS:
        raise ConsumerLimit(f"stream {stream.name!r} has {count} registered consumers, as many "
                            f"as a stream may ({MAX_CONSUMERS}): deregister one first")
    consumer = Consumer(stream_id=stream.id, name=name, created_at=utcnow())
    session.add(consumer)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"stream {stream.name!r} has a consumer named {name!r} already",
                       details={"consumer": name}) from None
    return consumer


def list_consumers(session: Session, stream: Stream) -> list[Consumer]:
    return list(session.scalars(select(Consumer).where(Consumer.stream_id == stream.id)
                                .order_by(Consumer.name)))


def find(session: Session, stream: Stream, name: str, *, epoch: int | None = None) -> Consumer:
    """The consumer ``name`` of ``stream``; with ``epoch`` (from an ARN), only the one
    registered then (not one registered again since under the same name)."""
    consumer = session.scalar(select(Consumer).where(Consumer.stream_id == stream.id,
                                                     Consumer.name == name))
    if consumer is None or (epoch is not None and _epoch(consumer.created_at) != epoch):
        raise NotFound(f"stream {stream.name!r} has no consumer {name!r}"
                       + (" registered at that time (its ARN is an older one)"
                          if consumer is not None else ""),
                       details={"consumer": name})
    return consumer


def deregister(session: Session, consumer: Consumer) -> None:
    """Remove the consumer. Commits."""
    session.delete(consumer)
    session.commit()


def consumer_docs(session: Session, engine: StreamEngine, stream: Stream) -> list[dict[str, Any]]:
    """The stream's registered consumers as ``show`` tells them: each shard one of them is
    subscribed to now, how far it has read, and how far behind the shard's newest record."""
    from cumulo.streams.service import external_seq, shards_of

    shards = shards_of(session, stream)
    docs = []
    for consumer in list_consumers(session, stream):
        arn = consumer_arn(stream.name, consumer)
        reading = []
        for shard in shards:
            follower = engine.subscriptions.following((arn, shard.shard_id))
            if follower is None:
                continue
            newest = engine.logs.shard(stream.name, shard.shard_id).next_seq - 1
            read = follower.position
            reading.append({"shard_id": shard.shard_id,
                            "position": None if read is None else external_seq(shard, read),
                            "behind": max(0, newest - (follower.start - 1 if read is None
                                                       else read)),
                            "millis_behind": follower.millis_behind})
        docs.append({"name": consumer.name, "arn": arn,
                     "created_at": consumer.created_at.isoformat(), "subscriptions": reading})
    return docs
