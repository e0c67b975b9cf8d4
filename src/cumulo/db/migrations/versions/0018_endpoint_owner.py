"""Endpoints owned by one control plane (the others forward to it), and each control plane's
key, which every endpoint's replicas take from any live control plane forwarding to them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
        batch.create_index("ix_endpoints_owner", ["owner"])
    with op.batch_alter_table("control_planes") as batch:
        batch.add_column(sa.Column("key_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("control_planes") as batch:
        batch.drop_column("key_hash")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_index("ix_endpoints_owner")
        batch.drop_column("owner")
