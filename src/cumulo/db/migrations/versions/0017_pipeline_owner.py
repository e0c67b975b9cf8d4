"""Pipeline runs owned by a control plane (cumulo.leases): the one that moves a run on, so
that several control planes on one database never advance the same run twice.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs from before have no owner: the first control plane to look takes them over.
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
        batch.create_index("ix_pipeline_runs_owner", ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_index("ix_pipeline_runs_owner")
        batch.drop_column("owner")
