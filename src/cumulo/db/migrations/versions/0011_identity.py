"""Identity and access: users become people or service accounts with passwords, email, a
disabled flag and sign-in lockout; groups and their members; custom policies; projects;
bindings of roles and policies to users and groups; the audit log's rows.

An existing home keeps working as it was: each admin user gets a global "admin" binding, so
admin keeps everything; other users (there are none but by hand) get "developer".

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cumulo.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _created() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("created_at", UTCDateTime(), nullable=False),
            sa.Column("created_by", sa.Integer(),
                      sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)]


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="person"))
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("locked_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(512), nullable=True))
    # A unique index, not a constraint: on SQLite a new constraint means copying the table,
    # and dropping the old users table would take every token with it (ON DELETE CASCADE).
    op.create_index("uq_users_oidc_subject", "users", ["oidc_subject"], unique=True)
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        *_created(),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  primary_key=True, index=True),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        *_created(),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False),
        *_created(),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False, index=True),
        sa.Column("role", sa.String(64), nullable=True),
        sa.Column("policy_id", sa.Integer(), sa.ForeignKey("policies.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=True),
        *_created(),
        sa.UniqueConstraint("subject_kind", "subject_id", "role", "policy_id", "project_id"),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("user", sa.String(64), nullable=True, index=True),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("exported", sa.Boolean(), nullable=False, server_default="0", index=True),
    )
    # Existing users keep what they had: admins everything, anyone else a developer's rights.
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("is_admin", sa.Boolean()),
                     sa.column("created_at", UTCDateTime()))
    bindings = sa.table("bindings", sa.column("subject_kind", sa.String()),
                        sa.column("subject_id", sa.Integer()), sa.column("role", sa.String()),
                        sa.column("created_at", UTCDateTime()))
    connection = op.get_bind()
    for user_id, is_admin, created_at in connection.execute(
            sa.select(users.c.id, users.c.is_admin, users.c.created_at)):
        connection.execute(bindings.insert().values(
            subject_kind="user", subject_id=user_id,
            role="admin" if is_admin else "developer", created_at=created_at))


def downgrade() -> None:
    for table in ("audit_events", "bindings", "projects", "policies", "group_members",
                  "groups"):
        op.drop_table(table)
    op.drop_index("uq_users_oidc_subject", "users")
    with op.batch_alter_table("users") as batch:
        for column in ("oidc_subject", "locked_until", "failed_logins", "disabled_at",
                       "password_hash", "email", "kind"):
            batch.drop_column(column)
