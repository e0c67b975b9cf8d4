"""Streams' processing: scorers (records through an endpoint, into a stream or a table), and
pipeline triggers on a stream's volume.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_scorers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("stream_id", sa.Integer(), sa.ForeignKey("streams.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("to_stream", sa.String(128), nullable=True),
        sa.Column("to_table", sa.String(300), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("positions", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(32), nullable=True),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("last_failure", sa.Text(), nullable=True),
        sa.Column("scored_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.UniqueConstraint("stream_id", "name", name="uq_stream_scorers"),
    )
    with op.batch_alter_table("pipeline_schedules") as batch:
        batch.add_column(sa.Column("stream", sa.String(128), nullable=True))
        batch.add_column(sa.Column("every_records", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("every_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("stream_state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_schedules") as batch:
        for column in ("stream_state", "every_bytes", "every_records", "stream"):
            batch.drop_column(column)
    op.drop_table("stream_scorers")
