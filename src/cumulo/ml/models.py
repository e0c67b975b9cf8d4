"""Rows Cumulo keeps beside MLflow's registry: the history of alias moves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, UTCDateTime

__all__ = ["ModelAliasEvent"]


class ModelAliasEvent(Base):
    """An alias set to a version (``version``) or removed (``version`` is None)."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index("ix_model_alias_events_model", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    previous_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


state.declare("ml", tables=("model_alias_events",),
              prefixes=("mlflow/",),  # MLflow's artifact store: models and runs' files
              databases=("mlflow.db",))  # MLflow's own tracking database (SQLite)
