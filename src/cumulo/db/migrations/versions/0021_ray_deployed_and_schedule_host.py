"""Two things a second control plane needs to find where the first left them:

- ``endpoints.deployed``: the settings of a Ray endpoint's last successful deploy, so that the
  control plane that takes it over adopts the running Ray Serve application (same replicas,
  same token) instead of deploying it again.
- ``backup_schedules.host``: the machine whose folder a schedule's target is (None for an
  ``s3://`` target), so that only control planes on that machine run it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("deployed", sa.Text(), nullable=True))
    with op.batch_alter_table("backup_schedules") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_schedules") as batch:
        batch.drop_column("host")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("deployed")
