"""Rows of model monitoring: monitors, and each run's figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, utcnow

__all__ = ["RUN_STATES", "Monitor", "MonitorRun"]

# running: its job computes the figures; recording: its figures are being written (the report
# table, the alert) by the control plane that saw the job end.
RUN_STATES = ("running", "recording", "succeeded", "failed")


class Monitor(Created, InProject, Base):
    __tablename__ = "monitors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint: Mapped[str] = mapped_column(String(64), index=True)
    baseline: Mapped[str] = mapped_column(String(200))  # DB.TABLE@vN, pinned when made
    # The features compared: [{"name", "kind": numeric|categorical}], the endpoint's inputs.
    features: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    prediction_column: Mapped[str | None] = mapped_column(String(200), nullable=True)
    schedule: Mapped[str | None] = mapped_column(String(100), nullable=True)  # cron, UTC
    window_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: since last run
    thresholds: Mapped[dict[str, float]] = mapped_column(JSON)
    labels_table: Mapped[str | None] = mapped_column(String(200), nullable=True)
    label_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    label_column: Mapped[str | None] = mapped_column(String(200), nullable=True)
    report_table: Mapped[str] = mapped_column(String(200))
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)  # its alerts' too
    # The prediction distribution of the first window, when the baseline has no predictions:
    # what later windows' predictions are compared with (stats.Profile, as JSON).
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The last cron time claimed by a control plane (compare-and-set: one of them runs it).
    last_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Captured requests up to this time were compared (the next run starts after it).
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # the last failure


class MonitorRun(Base):
    __tablename__ = "monitor_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    monitor_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("monitors.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(200))  # "manual by NAME", "schedule at TIME"
    state: Mapped[str] = mapped_column(String(16), index=True)
    # The job that reads the window and computes the figures (None: nothing to compute).
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The control plane that runs it: a run it left running when it stopped is failed.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(Integer, default=0)  # captured rows compared
    report_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Per feature: the figures and the histograms the console draws.
    figures: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    breaches: Mapped[list[str]] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


state.declare("monitors", tables=("monitors", "monitor_runs"))
