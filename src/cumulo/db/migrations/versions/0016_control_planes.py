"""Control planes: each running server's row and lease (cumulo.leases), so that several share
one database's work; a cluster's dispatch epoch, so that they never overcommit it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_planes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("home", sa.String(1024), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("renewed_at", UTCDateTime(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
    )
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("dispatch_epoch", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("dispatch_epoch")
    op.drop_table("control_planes")
