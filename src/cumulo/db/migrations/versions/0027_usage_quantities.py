"""Usage records' quantities besides compute time (a stream's shard-hours and PUT payload
units), and where each stream's shard-hours were metered to.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("quantities", sa.JSON(), nullable=True))
    with op.batch_alter_table("streams") as batch:
        batch.add_column(sa.Column("metered_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("metered_at")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("quantities")
