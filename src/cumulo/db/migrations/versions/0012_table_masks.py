"""Who sees what of a table: column masks and row filters, each for one user or group.

Grants (``GRANT SELECT ON sales.orders TO GROUP analysts``) need no table of their own: each is
stored as the policy and binding it stands for (migration 0011's tables).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _common() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("table_id", sa.Integer(),
                      sa.ForeignKey("lake_tables.id", ondelete="CASCADE"), nullable=False,
                      index=True)]


def _subject() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("subject_kind", sa.String(8), nullable=False),
            sa.Column("subject_id", sa.Integer(), nullable=False),
            sa.Column("created_at", UTCDateTime(), nullable=False),
            sa.Column("created_by", sa.Integer(),
                      sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)]


def upgrade() -> None:
    op.create_table(
        "table_masks",
        *_common(),
        sa.Column("column", sa.String(255), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        *_subject(),
        sa.UniqueConstraint("table_id", "column", "subject_kind", "subject_id",
                            name="uq_table_masks_subject"),
    )
    op.create_table(
        "table_row_filters",
        *_common(),
        sa.Column("predicate", sa.Text(), nullable=False),
        *_subject(),
        sa.UniqueConstraint("table_id", "subject_kind", "subject_id",
                            name="uq_table_row_filters_subject"),
    )


def downgrade() -> None:
    op.drop_table("table_row_filters")
    op.drop_table("table_masks")
