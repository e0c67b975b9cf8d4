"""Rows of the serving service: endpoints, with their variants and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo.db import Base, Created, UTCDateTime, utcnow

__all__ = ["STATES", "Endpoint"]

# creating -> in_service; failed when a model cannot load; deleting while its replicas stop.
STATES = ("creating", "in_service", "failed", "deleting")


class Endpoint(Created, Base):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    # Each variant: {"name", "model", "version", "weight", "shadow"}.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    port: Mapped[int] = mapped_column(Integer)  # the replicas' own address, on this machine
    min_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_batch_size: Mapped[int] = mapped_column(Integer, default=64)
    max_wait_ms: Mapped[float] = mapped_column(Float, default=2.0)
    max_body: Mapped[int] = mapped_column(Integer, default=6 * 1024 * 1024)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
