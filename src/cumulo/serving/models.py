"""Rows of the serving service: endpoints, with their variants and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime, utcnow

__all__ = ["STATES", "Endpoint"]

# creating -> in_service; updating while traffic shifts to a new variant (back to in_service
# when it is done or rolled back); failed when a model cannot load; deleting while its
# replicas stop.
STATES = ("creating", "in_service", "updating", "failed", "deleting")


class Endpoint(Created, InProject, Base):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    # Each variant: {"name", "model", "version", "weight", "shadow", "env"} and, once chosen,
    # "environment": the digest of the environment it runs in, None for the server's
    # (cumulo.serving.environments; read by cumulo.compute.environments.service.env_in_use).
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    port: Mapped[int] = mapped_column(Integer)  # the replicas' own address, on its owner's machine
    # The control plane that runs it (cumulo.leases): the others forward to its replicas, and
    # take it over when its lease runs out.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # Its replicas take invocations without a token (created --public); else only with a
    # live token, checked by each replica (cumulo.serving.gate).
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    min_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_batch_size: Mapped[int] = mapped_column(Integer, default=64)
    max_wait_ms: Mapped[float] = mapped_column(Float, default=2.0)
    max_body: Mapped[int] = mapped_column(Integer, default=6 * 1024 * 1024)
    # Autoscaling: replicas = ceil(in-flight requests / target_in_flight), between min and
    # max; scaled in only after scale_in_cooldown seconds of lower load; with min 0, stopped
    # after scale_to_zero_after idle seconds.
    target_in_flight: Mapped[float] = mapped_column(Float, default=8.0)
    scale_in_cooldown: Mapped[float] = mapped_column(Float, default=60.0)
    scale_to_zero_after: Mapped[float] = mapped_column(Float, default=300.0)
    # Held at zero replicas by a budget ("budget team-a"): requests are refused with 503, not
    # answered by a replica started for them, until the budget lets it go.
    held: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Data capture: this percentage of requests, with their answers, goes to this lake table.
    capture_percent: Mapped[float] = mapped_column(Float, default=0.0)
    capture_table: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # None: replicas on the control plane's machine; else a Ray cluster's name (Ray Serve),
    # and the token its replicas read the registry with.
    cluster: Mapped[str | None] = mapped_column(String(64), nullable=True)
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A Ray endpoint's settings as last deployed (JSON), by whichever control plane: the one
    # that takes it over adopts the running application when its settings are these.
    deployed: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A traffic shift in progress or the last one: see cumulo.serving.rollout.
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


state.declare("serving", tables=("endpoints",),
              caches=("serving",))  # replicas' sockets, configs and fetched models
