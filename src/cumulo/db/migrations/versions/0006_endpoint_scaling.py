"""Serving: autoscaling, data capture and traffic shifting settings of endpoints.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("target_in_flight", sa.Float(), nullable=False,
                                   server_default="8"))
        batch.add_column(sa.Column("scale_in_cooldown", sa.Float(), nullable=False,
                                   server_default="60"))
        batch.add_column(sa.Column("scale_to_zero_after", sa.Float(), nullable=False,
                                   server_default="300"))
        batch.add_column(sa.Column("capture_percent", sa.Float(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("capture_table", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rollout", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        for column in ("rollout", "capture_table", "capture_percent", "scale_to_zero_after",
                       "scale_in_cooldown", "target_in_flight"):
            batch.drop_column(column)
