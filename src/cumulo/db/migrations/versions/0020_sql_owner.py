"""SQL queries owned by the control plane that runs them (cumulo.leases): a cancel reaches it
through any control plane, and a query whose control plane is gone is not left running.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sql_queries") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sql_queries") as batch:
        batch.drop_column("owner")
