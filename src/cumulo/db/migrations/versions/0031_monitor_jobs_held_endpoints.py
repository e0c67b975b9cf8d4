"""Monitor runs as jobs (issue 27): each run's job, whose output the control plane records;
and endpoints held at zero replicas by a budget.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_runs") as batch:
        batch.add_column(sa.Column("job_id", sa.String(32), nullable=True))
        batch.create_index("ix_monitor_runs_state", ["state"])
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("held", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("held")
    with op.batch_alter_table("monitor_runs") as batch:
        batch.drop_index("ix_monitor_runs_state")
        batch.drop_column("job_id")
