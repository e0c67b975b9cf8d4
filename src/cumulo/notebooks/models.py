"""Rows of the notebooks service: a notebook (its JupyterLab server's settings and where its
current run is) and whom its owner shares it with. Its files are objects of the storage
service (bucket ``notebooks``, a folder per user), declared there."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime

__all__ = ["STATES", "Notebook", "NotebookShare"]

# starting (its job queued or starting, or running but not listening yet) -> running ->
# stopping (asked to stop) -> stopped; failed when its job failed.
STATES = ("starting", "running", "stopping", "stopped", "failed")


class Notebook(Created, InProject, Base):
    __tablename__ = "notebooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    cluster: Mapped[str] = mapped_column(String(64))
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a name
    idle_timeout_s: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it stopped
    # The current (or last) run: its job, and once it listens, its address and Jupyter's
    # token for this run (the proxy adds it; never shown, gone when the run ends).
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    address: Mapped[str | None] = mapped_column(String(256), nullable=True)
    secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stopped_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # a user name


class NotebookShare(Base):
    """A user the owner shares the notebook with: they may open it too."""

    __tablename__ = "notebook_shares"

    notebook_id: Mapped[int] = mapped_column(ForeignKey("notebooks.id", ondelete="CASCADE"),
                                             primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


state.declare("notebooks", tables=("notebooks", "notebook_shares"))
