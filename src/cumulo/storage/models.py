"""Buckets and the objects in them. The bytes live in the storage backend; these rows say what
exists, so that listing, paging and ``cumulo status`` never walk the storage root."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, binary_text, utcnow

__all__ = ["Bucket", "StoredObject"]


class Bucket(Created, InProject, Base):
    __tablename__ = "buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)


class StoredObject(Created, Base):
    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("bucket_id", "key", name="uq_objects_bucket_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(binary_text(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(255))
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


state.declare("storage", tables=("buckets", "objects"), prefixes=("buckets/",),
              # uploads in flight: S3 storage's spool in the home, local storage's in its root
              caches=("tmp", "storage/.tmp"))
