"""Streams and their shards (Kinesis Data Streams'). The records are not rows: they live in
each shard's log (:mod:`cumulo.streams.log`) under ``<home>/streams``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime

__all__ = ["Shard", "Stream"]


class Stream(Created, InProject, Base):
    __tablename__ = "streams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")  # ACTIVE|DELETING
    retention_hours: Mapped[int] = mapped_column(Integer, default=24)


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


state.declare("streams", tables=("streams", "stream_shards"),
              caches=("streams",))  # the embedded log's segments (records), one machine's
