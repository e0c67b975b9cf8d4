"""Streams (cumulo.streams): Kinesis-style data streams and their shards.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retention_hours", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True, index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )
    op.create_table(
        "stream_shards",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("stream_id", sa.Integer(), sa.ForeignKey("streams.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("shard_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("start_hash", sa.String(40), nullable=False),
        sa.Column("end_hash", sa.String(40), nullable=False),
        sa.Column("parent", sa.String(32), nullable=True),
        sa.Column("adjacent_parent", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("stream_id", "shard_id", name="uq_stream_shards"),
    )


def downgrade() -> None:
    op.drop_table("stream_shards")
    op.drop_table("streams")
