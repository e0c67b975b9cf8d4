"""Projects own resources: buckets, databases, tables, clusters, jobs, endpoints and pipelines
each name the project they belong to (none, for everything that exists already: it stays the
platform's own, and admins keep every right on it); usage records keep the project's name, so
that costs group by project.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Plain columns and indexes, no constraint: on SQLite a new constraint means copying the
# table, and a project is deleted only when nothing belongs to it any more.
OWNED = ("buckets", "lake_databases", "lake_tables", "clusters", "jobs", "endpoints",
         "pipelines")


def upgrade() -> None:
    for table in OWNED:
        op.add_column(table, sa.Column("project_id", sa.Integer(), nullable=True))
        op.create_index(f"ix_{table}_project_id", table, ["project_id"])
    op.add_column("usage_records", sa.Column("project", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("usage_records", "project")
    for table in OWNED:
        op.drop_index(f"ix_{table}_project_id", table_name=table)
        op.drop_column(table, "project_id")
