"""Machine learning: the history of model alias moves (MLflow keeps the rest).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_alias_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("previous_version", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    )
    op.create_index("ix_model_alias_events_model", "model_alias_events", ["model"])


def downgrade() -> None:
    op.drop_table("model_alias_events")
