"""Buckets and the objects in them. The bytes live in the storage backend; these rows say what
exists, so that listing, paging and ``cumulo status`` never walk the storage root."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, binary_text, utcnow

__all__ = ["Bucket", "StoredObject", "Upload", "UploadPart"]


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
    # S3's view of it (cumulo.storage.s3api): its ETag (the MD5 of its bytes, or of its parts'
    # MD5s and "-N" for a multipart upload; None for objects stored before MD5s were kept,
    # whose ETag is their SHA-256), the headers it was stored with (x-amz-meta-*, Cache-Control,
    # Content-Disposition, ...), its tags, and the checksums its writer sent (CRC32, CRC32C,
    # SHA256 as base64).
    etag: Mapped[str | None] = mapped_column(String(48), nullable=True)
    meta: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    checksums: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Upload(Base):
    """An S3 multipart upload under way: its parts are blobs under ``s3uploads/ID/`` until it
    is completed (then one object) or aborted."""

    __tablename__ = "s3_uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id", ondelete="CASCADE"),
                                           index=True)
    key: Mapped[str] = mapped_column(binary_text(1024))
    content_type: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    checksum: Mapped[str | None] = mapped_column(String(16), nullable=True)  # its algorithm
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class UploadPart(Base):
    __tablename__ = "s3_upload_parts"

    upload_id: Mapped[str] = mapped_column(ForeignKey("s3_uploads.id", ondelete="CASCADE"),
                                           primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(32))  # its MD5
    checksum: Mapped[str | None] = mapped_column(String(64), nullable=True)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


state.declare("storage", tables=("buckets", "objects", "s3_uploads", "s3_upload_parts"),
              prefixes=("buckets/", "s3uploads/"),
              # uploads in flight: S3 storage's spool in the home, local storage's in its root
              caches=("tmp", "storage/.tmp"))
