"""Model monitors (issue 27): drift monitors of endpoints and their reports.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("endpoint", sa.String(64), nullable=False, index=True),
        sa.Column("baseline", sa.String(200), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("prediction_column", sa.String(200), nullable=True),
        sa.Column("schedule", sa.String(100), nullable=True),
        sa.Column("window_s", sa.Float(), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("labels_table", sa.String(200), nullable=True),
        sa.Column("label_key", sa.String(200), nullable=True),
        sa.Column("label_column", sa.String(200), nullable=True),
        sa.Column("report_table", sa.String(200), nullable=False),
        sa.Column("webhook", sa.String(2000), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.Column("watermark", UTCDateTime(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True, index=True),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("monitor_id", sa.Integer(), sa.ForeignKey("monitors.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(32), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("window_start", UTCDateTime(), nullable=True),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("report_version", sa.Integer(), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("breaches", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("monitor_runs")
    op.drop_table("monitors")
