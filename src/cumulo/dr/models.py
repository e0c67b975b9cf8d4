"""Rows of the backups service: schedules that back the platform up (and drill the backups),
and the record of each backup or drill the control plane ran."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, UTCDateTime, utcnow

__all__ = ["RUN_KINDS", "BackupRun", "BackupSchedule"]

RUN_KINDS = ("backup", "drill")


class BackupSchedule(Created, Base):
    """Backs the platform up to ``target`` on a cron schedule, prunes by the policy, and (with
    ``drill``) restores each new backup into a scratch home and checks it."""

    __tablename__ = "backup_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[str] = mapped_column(String(1024))  # a folder of the server, or s3://...
    # The machine whose folder the target is (None for s3://): only control planes there run
    # it, as another machine's folder of that name is not the same place.
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    cron: Mapped[str] = mapped_column(String(128))
    missed: Mapped[str] = mapped_column(String(8), default="latest")  # cumulo.cron.MISSED
    keep_last: Mapped[int] = mapped_column(Integer, default=0)
    keep_daily: Mapped[int] = mapped_column(Integer, default=0)
    keep_weekly: Mapped[int] = mapped_column(Integer, default=0)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)  # last cron time


class BackupRun(Base):
    """One backup or drill, as it ran: its outcome, figures, and the error that stopped it."""

    __tablename__ = "backup_runs"
    # One running backup (and one running drill) per schedule, whichever control plane runs it.
    __table_args__ = (Index("uq_backup_runs_running", "schedule", "kind", unique=True,
                            sqlite_where=text("state = 'running'"),
                            postgresql_where=text("state = 'running'")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # RUN_KINDS
    schedule: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    trigger: Mapped[str] = mapped_column(String(200))  # "schedule NAME at TIME", "by USER"
    target: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16), default="running")  # running|succeeded|failed
    host: Mapped[str] = mapped_column(String(255))  # the control plane's machine that ran it
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)  # its control plane
    backup_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    files: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pruned: Mapped[int | None] = mapped_column(Integer, nullable=True)  # backups forgotten
    rpo_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # a drill's
    rto_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    checked: Mapped[str | None] = mapped_column(Text, nullable=True)  # a drill's, as words
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


state.declare("dr", tables=("backup_schedules", "backup_runs"))
