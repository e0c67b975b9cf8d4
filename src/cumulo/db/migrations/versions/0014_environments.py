"""Environments: Python environments of their own for jobs, pipeline steps and endpoints
(``cumulo envs``), named by the digest of what they resolved to; names for them; requests that
resolved to them; and the environment each job runs in.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("python", sa.String(16), nullable=False),
        sa.Column("interpreter", sa.String(1024), nullable=True),
        sa.Column("isolated", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("requirements", sa.Text(), nullable=False),
        sa.Column("lock", sa.Text(), nullable=False),
        sa.Column("packages", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("installed", sa.Integer(), nullable=True),
        sa.Column("build_seconds", sa.Float(), nullable=True),
        sa.Column("built_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True, index=True),
    )
    op.create_table(
        "environment_names",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), sa.ForeignKey("environments.digest"),
                  nullable=False, index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True, index=True),
    )
    op.create_table(
        "environment_requests",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64),
                  sa.ForeignKey("environments.digest", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.add_column("jobs", sa.Column("environment", sa.String(64), nullable=True))
    op.create_index("ix_jobs_environment", "jobs", ["environment"])
    op.add_column("jobs", sa.Column("environment_label", sa.String(128), nullable=True))
    op.add_column("jobs", sa.Column("env_ready_at", UTCDateTime(), nullable=True))
    op.add_column("jobs", sa.Column("image", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "image")
    op.drop_column("jobs", "env_ready_at")
    op.drop_column("jobs", "environment_label")
    op.drop_index("ix_jobs_environment", table_name="jobs")
    op.drop_column("jobs", "environment")
    op.drop_table("environment_requests")
    op.drop_table("environment_names")
    op.drop_table("environments")
