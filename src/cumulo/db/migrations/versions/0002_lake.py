"""Lake: databases, tables, SQL query history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _created() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "lake_databases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        *_created(),
    )
    op.create_table(
        "lake_tables",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("database_id", sa.Integer(),
                  sa.ForeignKey("lake_databases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("location", sa.String(1024), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("partition_columns", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        *_created(),
        sa.UniqueConstraint("database_id", "name", name="uq_lake_tables_db_name"),
    )
    op.create_table(
        "sql_queries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("bytes_scanned", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("result_location", sa.String(1024), nullable=True),
        *_created(),
    )
    op.create_index("ix_sql_queries_created_at", "sql_queries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sql_queries_created_at", "sql_queries")
    for table in ("sql_queries", "lake_tables", "lake_databases"):
        op.drop_table(table)
