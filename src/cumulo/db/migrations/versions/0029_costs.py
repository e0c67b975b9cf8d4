"""Budgets, their alerts and actions, and what else metering (issue 27) keeps.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_marks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.String(64), nullable=True),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("dismissed_at", UTCDateTime(), nullable=True),
        sa.Column("webhook", sa.String(2048), nullable=True),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alerts_delivery", "alerts", ["delivery", "next_attempt_at"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("webhook", sa.String(2048), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("period_key", sa.String(16), nullable=True),
        sa.Column("alerted", sa.JSON(), nullable=False),
        sa.Column("acting", sa.JSON(), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=True),
        sa.Column("scaled", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_index("ix_alerts_delivery", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("meter_marks")
