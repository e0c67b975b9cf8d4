"""Backup runs owned by a control plane (cumulo.leases), and at most one running backup (and
one running drill) per schedule, whichever control plane is asked: a unique index over the
running ones.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_RUNNING = sa.text("state = 'running'")


def upgrade() -> None:
    # Runs left running by a control plane of before are not anyone's: failed, so that the
    # index below holds and their schedules can run again.
    op.execute("update backup_runs set state = 'failed', error = 'the control plane stopped "
               "while it ran; the backups before it are whole' where state = 'running'")
    with op.batch_alter_table("backup_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
    op.create_index("uq_backup_runs_running", "backup_runs", ["schedule", "kind"], unique=True,
                    sqlite_where=_RUNNING, postgresql_where=_RUNNING)


def downgrade() -> None:
    op.drop_index("uq_backup_runs_running", table_name="backup_runs")
    with op.batch_alter_table("backup_runs") as batch:
        batch.drop_column("owner")
