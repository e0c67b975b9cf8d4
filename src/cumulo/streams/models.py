"""Streams and their shards (Kinesis Data Streams'), consumer groups' members and shard leases
(the Kinesis Client Library's lease table), deliveries into lake tables (Firehose's) and
scorers (records through an endpoint, as they come). The
records are not rows: they live in each shard's log (:mod:`cumulo.streams.log`) under
``<home>/streams``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime

__all__ = ["Consumer", "Delivery", "GroupMember", "Lease", "Scorer", "Shard", "Stream"]


class Stream(Created, InProject, Base):
    __tablename__ = "streams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")  # ACTIVE|DELETING
    retention_hours: Mapped[int] = mapped_column(Integer, default=24)
    # Up to when its shard-hours are in usage records (cumulo.streams.metering); None: none yet.
    metered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Shard(Base):
    """A shard: the hash keys it takes (decimal, 128-bit), and its lineage after a reshard.
    A closed shard takes no more records; its records stay readable until retention ends."""

    __tablename__ = "stream_shards"
    __table_args__ = (UniqueConstraint("stream_id", "shard_id", name="uq_stream_shards"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    shard_id: Mapped[str] = mapped_column(String(32))  # shardId-000000000000
    number: Mapped[int] = mapped_column(Integer)  # the 000000000000 part
    start_hash: Mapped[str] = mapped_column(String(40))
    end_hash: Mapped[str] = mapped_column(String(40))
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    adjacent_parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class GroupMember(Base):
    """A live member of a consumer group: a ``consume()`` that renews itself (and its leases)
    until ``alive_until``. Fair shares are counted over the live members."""

    __tablename__ = "stream_group_members"
    __table_args__ = (UniqueConstraint("stream_id", "group_name", "member",
                                       name="uq_stream_group_members"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    group_name: Mapped[str] = mapped_column(String(128))
    member: Mapped[str] = mapped_column(String(64))  # the consumer's own random id
    label: Mapped[str] = mapped_column(String(255))  # host:pid, for people
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    alive_until: Mapped[datetime] = mapped_column(UTCDateTime())


class Lease(Base):
    """One shard of a stream, for one consumer group: who holds it until when, and how far the
    group got (its checkpoint). ``counter`` grows with each change of holder: a checkpoint or a
    renewal that names an older counter is refused (fencing)."""

    __tablename__ = "stream_leases"
    __table_args__ = (UniqueConstraint("stream_id", "group_name", "shard_id",
                                       name="uq_stream_leases"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    group_name: Mapped[str] = mapped_column(String(128))
    shard_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a member
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    counter: Mapped[int] = mapped_column(Integer, default=0)
    # The sequence number (as the API shows it) of the last record the group is done with,
    # SHARD_END once a closed shard is done, None before the first.
    checkpoint: Mapped[str | None] = mapped_column(String(48), nullable=True)
    checkpointed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Delivery(Created, Base):
    """A stream delivered into a lake table in batches (Firehose). Where each shard is read to
    is not here: it is committed in the table itself, with each batch (Delta app transactions
    named after ``uid`` and the shard), which is what makes the delivery exactly once."""

    __tablename__ = "stream_deliveries"
    __table_args__ = (UniqueConstraint("stream_id", "name", name="uq_stream_deliveries"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(300))  # database.table
    buffer_bytes: Mapped[int] = mapped_column(BigInteger)
    buffer_seconds: Mapped[float] = mapped_column(Float)
    partition_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # day
    transform: Mapped[str | None] = mapped_column(String(300), nullable=True)  # module:func
    transform_source: Mapped[str | None] = mapped_column(Text, nullable=True)  # a file's text
    # Where each shard open when the delivery was made starts: {shard_id: sequence}.
    start: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running|stopped|failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a control plane
    records: Mapped[int] = mapped_column(BigInteger, default=0)  # rows written
    failed: Mapped[int] = mapped_column(BigInteger, default=0)  # rows to the error table
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    table_version: Mapped[int | None] = mapped_column(Integer, nullable=True)



class Consumer(Base):
    """A consumer registered with a stream (Kinesis's enhanced fan-out consumer,
    RegisterStreamConsumer): the name a push subscription (SubscribeToShard) reads under, one
    subscription per shard at a time. Its ARN ends in its creation time: a consumer registered
    again after a deregistration has a new one."""

    __tablename__ = "stream_consumers"
    __table_args__ = (UniqueConstraint("stream_id", "name", name="uq_stream_consumers"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Scorer(Created, Base):
    """A stream scored through an endpoint as its records come (``cumulo streams score``):
    each record, with its prediction, goes to another stream (same partition key) or a lake
    table. ``positions`` is where each shard is read to (the next sequence), moved once a
    batch is written: into a stream at least once; into a table exactly once, as each commit
    also records its shards' last sequences (Delta app transactions named after ``uid``)."""

    __tablename__ = "stream_scorers"
    __table_args__ = (UniqueConstraint("stream_id", "name", name="uq_stream_scorers"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(64))
    to_stream: Mapped[str | None] = mapped_column(String(128), nullable=True)
    to_table: Mapped[str | None] = mapped_column(String(300), nullable=True)  # database.table
    batch: Mapped[int] = mapped_column(Integer)  # records a request, at most
    positions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # shard: next seq
    # running | paused (the endpoint does not answer: nothing is dropped, it tries again)
    # | stopped | failed (a right taken away, the output gone: start it once fixed)
    state: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why paused or failed
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a control plane
    records: Mapped[int] = mapped_column(BigInteger, default=0)  # scored and written
    failed: Mapped[int] = mapped_column(BigInteger, default=0)  # bad JSON, refused by the model
    last_failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


state.declare("streams", tables=("streams", "stream_shards", "stream_group_members",
                                 "stream_leases", "stream_deliveries", "stream_consumers",
                                 "stream_scorers"),
              # the embedded log's segments (records), one machine's, and its archived
              # segments (streams/archive.py): in storage, and a cache of those read back
              prefixes=("streams/",), caches=("streams", "streams-cache"))
