"""Streams' consumer groups (members, shard leases with checkpoints) and deliveries into lake
tables.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_group_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("stream_id", sa.Integer(), sa.ForeignKey("streams.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("member", sa.String(64), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("joined_at", UTCDateTime(), nullable=False),
        sa.Column("alive_until", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("stream_id", "group_name", "member",
                            name="uq_stream_group_members"),
    )
    op.create_table(
        "stream_leases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("stream_id", sa.Integer(), sa.ForeignKey("streams.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("shard_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("counter", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.String(48), nullable=True),
        sa.Column("checkpointed_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("stream_id", "group_name", "shard_id", name="uq_stream_leases"),
    )
    op.create_table(
        "stream_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("stream_id", sa.Integer(), sa.ForeignKey("streams.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("buffer_bytes", sa.BigInteger(), nullable=False),
        sa.Column("buffer_seconds", sa.Float(), nullable=False),
        sa.Column("partition_by", sa.String(16), nullable=True),
        sa.Column("transform", sa.String(300), nullable=True),
        sa.Column("transform_source", sa.Text(), nullable=True),
        sa.Column("start", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(32), nullable=True),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("table_version", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.UniqueConstraint("stream_id", "name", name="uq_stream_deliveries"),
    )


def downgrade() -> None:
    op.drop_table("stream_deliveries")
    op.drop_table("stream_leases")
    op.drop_table("stream_group_members")
