"""Rows of the compute service: clusters, jobs, their metrics and artifacts, code snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, binary_text

__all__ = ["ACTIVE", "FINISHED", "Cluster", "CodeSnapshot", "Environment", "EnvironmentName",
           "EnvironmentRequest", "Job", "JobArtifact", "JobMetric"]

# A job's life: queued -> starting -> running -> one of FINISHED.
ACTIVE = ("queued", "starting", "running")
FINISHED = ("succeeded", "failed", "cancelled", "timed_out")


class Cluster(Created, InProject, Base):
    """Where jobs run: this machine's processes (``local``) or a Ray cluster (``ray``)."""

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(16))  # local | ray
    address: Mapped[str | None] = mapped_column(String(512), nullable=True)  # ray: as given
    # ray: the job API's URL that address leads to, found once when the cluster is made
    endpoint: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # ray: the head's interpreter that runs Cumulo there (compute.clusters.ray_python)
    python: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    max_cpus: Mapped[float] = mapped_column(Float)
    max_memory: Mapped[int] = mapped_column(BigInteger)  # bytes
    max_gpus: Mapped[int] = mapped_column(Integer, default=0)
    min_workers: Mapped[int] = mapped_column(Integer, default=0)
    max_workers: Mapped[int] = mapped_column(Integer)
    idle_timeout_s: Mapped[float] = mapped_column(Float, default=600.0)
    # Moved on by each dispatch that starts jobs here: two control planes that read the same
    # capacity cannot both start jobs on it (the second's update finds it moved, and retries).
    dispatch_epoch: Mapped[int] = mapped_column(Integer, default=0)


class CodeSnapshot(Base):
    """A code folder as uploaded, named by the digest of its files: uploaded once, used often."""

    __tablename__ = "code_snapshots"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    files: Mapped[list[str]] = mapped_column(JSON)  # relative paths, for entry-point checks
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Job(Created, InProject, Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_cluster", "state", "cluster"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    cluster: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What to run.
    code_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    entry: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    command: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    max_runtime_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # The environment it runs in (a digest; None: the server's), what it was asked as (a name,
    # "pyproject", a requirements file's name), and when it was ready for the job.
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    environment_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    image: Mapped[str | None] = mapped_column(String(512), nullable=True)  # a container image
    env_ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The current attempt, and what became of earlier ones.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    starting_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    running_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where the running attempt is: a local process (pid and its start time) or a Ray job.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_started: Mapped[float | None] = mapped_column(Float, nullable=True)
    backend_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Which control plane runs the attempt (its id in control_planes, cumulo.leases): only it
    # watches the job; when its lease runs out another takes the job over.
    owner: Mapped[str | None] = mapped_column(String(512), nullable=True)
    gpu_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Use, summed over attempts.
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    peak_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


class JobMetric(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_key", "job_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class JobArtifact(Base):
    """A file the job left in its output folder, kept in storage under jobs/<id>/outputs/."""

    __tablename__ = "job_artifacts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    path: Mapped[str] = mapped_column(binary_text(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class Environment(Created, InProject, Base):
    """A Python environment, named by the digest of what it resolved to (its pins, its Python,
    and for a layer the server's versions it reuses): built once per machine, shared by every
    job, step and endpoint that resolves to it. Its folder on a machine is a cache, rebuilt from
    ``lock`` where it is missing (:mod:`cumulo.compute.environments`)."""

    __tablename__ = "environments"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    python: Mapped[str] = mapped_column(String(16))  # major.minor
    interpreter: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # as asked
    isolated: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(128))  # what its requirements came from
    requirements: Mapped[str] = mapped_column(Text)  # as first asked
    lock: Mapped[str] = mapped_column(Text)  # what they resolved to: name==version a line
    packages: Mapped[int] = mapped_column(Integer)
    # resolved (never built yet) | building | ready | failed: its last build's outcome
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes, as built
    installed: Mapped[int | None] = mapped_column(Integer, nullable=True)  # into the layer
    build_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EnvironmentName(Created, InProject, Base):
    """A name for an environment (``cumulo envs create NAME``), as jobs and endpoints use it."""

    __tablename__ = "environment_names"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("environments.digest"), index=True)


class EnvironmentRequest(Base):
    """What an environment was asked as (the digest of the requirements, Python and the
    server's packages), to the environment it resolved to: the same request again is a lookup."""

    __tablename__ = "environment_requests"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("environments.digest", ondelete="CASCADE"),
                                        index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


state.declare("compute", tables=("clusters", "code_snapshots", "jobs", "job_metrics",
                                 "job_artifacts", "environments", "environment_names",
                                 "environment_requests"),
              # code snapshots, logs, outputs and checkpoints; environments' build logs
              prefixes=("jobs/", "envs/"),
              # running jobs' folders (their outputs go to jobs/ when they end), and built
              # environments (rebuilt from their pins where missing)
              caches=("compute", "envs"))
