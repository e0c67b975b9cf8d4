"""Usage records: what each piece of work used, and what that cost by the price sheet."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, UTCDateTime

__all__ = ["UsageRecord"]


class UsageRecord(Base):
    """One finished piece of work (a job attempt, say) or a period of use (an endpoint's
    replica, a stream), written once and never changed."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_day", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # job | endpoint | environment | stream
    ref: Mapped[str] = mapped_column(String(128))  # the job id, the endpoint's name, ...
    cluster: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    # The project the work belonged to, by name (kept when the project is gone), or None.
    project: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    day: Mapped[str] = mapped_column(String(10))  # UTC date the work ended, YYYY-MM-DD
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    memory_gb_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # What was used besides compute time, by name (a stream's {"shard_hours": 1.5,
    # "put_units": 1200}); each is priced by the sheet (cumulo.metering.usage.QUANTITIES).
    quantities: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


state.declare("metering", tables=("usage_records",))
