"""Usage records: what each piece of work used, and what that cost by the price sheet."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, UTCDateTime, utcnow

__all__ = ["Alert", "Budget", "MeterMark", "UsageRecord"]


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


class MeterMark(Base):
    """Where a sampler got to (``storage``: the last storage sample; ``sql``: the finish time
    of the last query metered; ``anomaly``: the last day an anomaly was alerted for), so that
    a restart neither loses nor counts anything twice."""

    __tablename__ = "meter_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Alert(Base):
    """Something an operator should see: a budget's threshold crossed, a cost anomaly, a
    monitor's drift. Shown in the console's banner and ``cumulo status`` until dismissed, and
    POSTed to its webhook, if it has one, by :class:`cumulo.metering.alerts.WebhookSender`."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_delivery", "delivery", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # budget | anomaly | monitor | ...
    subject: Mapped[str] = mapped_column(String(128))  # the budget's or monitor's name
    severity: Mapped[str] = mapped_column(String(16))  # info | warning | critical
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    webhook: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # none (no webhook) | pending | sent | failed (every attempt failed)
    delivery: Mapped[str] = mapped_column(String(16), default="none")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Budget(Created, Base):
    """An amount of money a scope may spend a period, its alert thresholds and the actions
    taken when it is crossed; and what was done about it in the current period."""

    __tablename__ = "budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    amount: Mapped[float] = mapped_column(Float)  # US dollars a period
    period: Mapped[str] = mapped_column(String(8))  # day | week | month
    scope: Mapped[str] = mapped_column(String(200))  # all | project:NAME | user:NAME | ...
    thresholds: Mapped[list[float]] = mapped_column(JSON, default=list)  # percents: [50, 80]
    # [{"at": 100.0, "action": "stop-new-jobs"}, ...]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    webhook: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The period last evaluated ("2026-12", "2026-W49", "2026-12-04"); what was alerted and
    # which actions are in force in it; what was spent then, and what endpoints were scaled
    # from (to restore them).
    period_key: Mapped[str | None] = mapped_column(String(16), nullable=True)
    alerted: Mapped[list[float]] = mapped_column(JSON, default=list)
    acting: Mapped[list[str]] = mapped_column(JSON, default=list)
    spent: Mapped[float] = mapped_column(Float, default=0.0)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    scaled: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


state.declare("metering", tables=("usage_records", "meter_marks", "alerts", "budgets"))
