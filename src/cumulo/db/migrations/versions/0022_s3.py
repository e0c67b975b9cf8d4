"""The S3 API (cumulo.storage.s3api): access keys, multipart uploads and their parts, and
what S3 keeps of an object besides its bytes (ETag, stored headers, tags, checksums).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime, binary_text

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("access_key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("tokens.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("etag", sa.String(48), nullable=True))
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("checksums", sa.JSON(), nullable=True))
    op.create_table(
        "s3_uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("bucket_id", sa.Integer(), sa.ForeignKey("buckets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("key", binary_text(1024), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("checksum", sa.String(16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )
    op.create_table(
        "s3_upload_parts",
        sa.Column("upload_id", sa.String(64),
                  sa.ForeignKey("s3_uploads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(32), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("modified_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("s3_upload_parts")
    op.drop_table("s3_uploads")
    with op.batch_alter_table("objects") as batch:
        for column in ("checksums", "tags", "meta", "etag"):
            batch.drop_column(column)
    op.drop_table("access_keys")
