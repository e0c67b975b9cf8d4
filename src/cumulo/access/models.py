"""Identity and access: users (people and service accounts), their API tokens, groups,
policies and the bindings that give them to users and groups (optionally within a project),
projects, and the audit log's own rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, UTCDateTime

__all__ = ["AccessKey", "AuditEvent", "Binding", "Group", "GroupMember", "Policy", "Project",
           "Token", "User"]


class User(Created, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Kept in step with a global "admin" binding (access/bindings), which is what decides;
    # read by code that only needs to know (who sees everyone's jobs).
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # "person" (signs in) or "service" (automation: tokens only, no password)
    kind: Mapped[str] = mapped_column(String(16), default="person", server_default="person")
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # argon2id
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The OpenID Connect subject ("<issuer>|<sub>") a single sign-on user is known by.
    oidc_subject: Mapped[str | None] = mapped_column(String(512), nullable=True)

    __table_args__ = (Index("uq_users_oidc_subject", "oidc_subject", unique=True),)


class Token(Created, Base):
    """An API token. Only the SHA-256 of the secret is kept; the secret is shown once."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # "user": made by a person; "job": made by the platform for one job attempt, and not listed.
    kind: Mapped[str] = mapped_column(String(16), default="user", server_default="user")


class AccessKey(Created, Base):
    """An S3 access key (``cumulo keys``): it acts as its token, so as the token's user with
    the user's grants, and stops with it (a job's key ends with its job). SigV4 signs with the
    secret itself, so the server keeps it (as every S3 server does): guard the database as
    the credentials it holds."""

    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret: Mapped[str] = mapped_column(String(64))
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"),
                                          index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Group(Created, Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"),
                                          primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)


class Policy(Created, Base):
    """A custom policy: a document of allow and deny statements (access/policy.py)."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Project(Created, Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # {"cpus": 8, "gpus": 0, "memory_gb": 32, "endpoints": 4, "storage_gb": 100}; absent: none
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Binding(Created, Base):
    """A role (built in) or a policy (custom), given to a user or a group, everywhere
    (``project_id`` None) or within one project."""

    __tablename__ = "bindings"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id", "role", "policy_id",
                                       "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))  # "user" or "group"
    subject_id: Mapped[int] = mapped_column(Integer, index=True)
    role: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("policies.id", ondelete="CASCADE"), nullable=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True)


class AuditEvent(Base):
    """One audit entry, hash-chained to the one before (access/audit.py); copied in batches to
    the lake table ``audit.events``. Rows are only ever added."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    user: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(512), default="")
    outcome: Mapped[str] = mapped_column(String(16))  # allowed, denied, failed
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Unique: two writers that read the same last entry cannot both append after it.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    exported: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0",
                                           index=True)


state.declare("access", tables=("users", "tokens", "access_keys", "groups", "group_members",
                                "policies", "projects", "bindings", "audit_events"))
