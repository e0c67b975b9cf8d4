"""Rows of the pipelines service: pipelines, their versioned definitions, and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, utcnow

__all__ = [
    "RUN_ACTIVE",
    "RUN_FINISHED",
    "STEP_DONE",
    "LineageEdge",
    "Pipeline",
    "PipelineRun",
    "PipelineVersion",
    "StepRun",
]


class Pipeline(Created, InProject, Base):
    """A named pipeline; what it does is its latest version's definition."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PipelineVersion(Created, Base):
    """One definition of a pipeline, never changed: a changed definition is a new version."""

    __tablename__ = "pipeline_versions"
    __table_args__ = (UniqueConstraint("pipeline_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))  # of the definition, to spot a resubmission
    source: Mapped[str] = mapped_column(String(16), default="json")  # json | python


# A run: queued -> running -> succeeded | failed | cancelled.
RUN_ACTIVE = ("queued", "running")
RUN_FINISHED = ("succeeded", "failed", "cancelled")
# A step: pending -> running -> succeeded | failed | cancelled; or cached (its outputs
# reused), or skipped (an input failed, or it is on a condition's other branch).
STEP_DONE = ("succeeded", "cached", "skipped", "failed", "cancelled")


class PipelineRun(Created, Base):
    __tablename__ = "pipeline_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)  # as run: the version's
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # resolved, with defaults
    cluster: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(128), default="manual")
    retry_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The control plane that moves it on (cumulo.leases): the one that started it, or the one
    # that took it over when that one's lease ran out. None: from before control planes.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


class StepRun(Base):
    __tablename__ = "pipeline_steps"
    __table_args__ = (UniqueConstraint("run_id", "node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
                                        index=True)
    node: Mapped[str] = mapped_column(String(64))
    component: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    cached_from: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a run id
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # port -> value
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # port -> value
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed/skipped
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # the job's own time


class LineageEdge(Base):
    """One thing a step read or wrote: a table version, a model, an endpoint, files."""

    __tablename__ = "lineage"
    __table_args__ = (Index("ix_lineage_thing", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
                                        index=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    component: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # read | write
    kind: Mapped[str] = mapped_column(String(16))  # table | model | endpoint | files
    name: Mapped[str] = mapped_column(String(1024))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PipelineSchedule(Created, Base):
    """Runs a pipeline on a cron schedule, when a table gets a new version, or when a stream
    has received so many records (or bytes) since the last run."""

    __tablename__ = "pipeline_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    cron: Mapped[str | None] = mapped_column(String(128), nullable=True)
    table: Mapped[str | None] = mapped_column(String(200), nullable=True)  # a trigger
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cluster: Mapped[str] = mapped_column(String(64), default="local")
    # Missed cron times (the control plane was down, or a run was still going):
    # skip them, run once for the latest, or run once for each (at most MAX_CATCH_UP).
    missed: Mapped[str] = mapped_column(String(8), default="latest")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())  # cron: the last time handled
    last_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # table
    last_run: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # the last firing's
    # A trigger on a stream's volume: a run once `every_records` records (or `every_bytes`
    # bytes) came since the last one. `stream_state`: {"from": {shard: the last sequence the
    # last run covered}, "counted": {shard: the last sequence counted}, "records": n,
    # "bytes": n (counted since the last run)}, sequences as the shard's log numbers them.
    stream: Mapped[str | None] = mapped_column(String(128), nullable=True)
    every_records: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    every_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stream_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


state.declare("pipelines", tables=("pipelines", "pipeline_versions", "pipeline_runs",
                                   "pipeline_steps", "lineage", "pipeline_schedules"))
