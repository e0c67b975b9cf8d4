"""Backups: schedules that back the platform up (and drill the backups), and each run's record.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_schedules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("key_file", sa.String(1024), nullable=True),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("missed", sa.String(8), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=False),
        sa.Column("keep_daily", sa.Integer(), nullable=False),
        sa.Column("keep_weekly", sa.Integer(), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )
    op.create_table(
        "backup_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("schedule", sa.String(64), nullable=True, index=True),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("backup_id", sa.String(64), nullable=True),
        sa.Column("files", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("pruned", sa.Integer(), nullable=True),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("checked", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("started_by", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("backup_runs")
    op.drop_table("backup_schedules")
