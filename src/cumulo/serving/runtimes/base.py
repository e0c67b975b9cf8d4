"""What both runtimes share: the endpoint manager they run under, the traffic-shift step,
failing an endpoint, and metering a replica's time.

Metering: each replica's life is a usage record of kind ``endpoint`` (one vCPU reserved, and
its resident memory), written when it stops and every ``METER_INTERVAL`` seconds while it runs,
so ``cumulo costs`` shows what each endpoint (and each project's endpoints) cost and an endpoint
scaled to zero costs nothing.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from cumulo.access import projects
from cumulo.config import Settings
from cumulo.db import utcnow
from cumulo.metering import usage
from cumulo.serving.capture import CaptureBuffer
from cumulo.serving.metrics import summarize
from cumulo.serving.models import Endpoint

if TYPE_CHECKING:
    from cumulo.compute.environments.service import Builder
    from cumulo.serving.allowed import AllowedTokens
    from cumulo.serving.runtimes.local import Launcher

__all__ = ["HELD_RETRY_AFTER", "METER_INTERVAL", "Manager", "Metered", "RuntimeBase",
           "held_message"]

log = logging.getLogger("cumulo.serving")

METER_INTERVAL = 300.0  # seconds between usage records of a replica that keeps running
HELD_RETRY_AFTER = 3600  # seconds a client refused by a held endpoint is told to wait


def held_message(name: str, held: str) -> str:
    """What a request to an endpoint held at zero replicas (by ``held``: a budget) is told,
    with 503 and ``Retry-After``, by every runtime."""
    return (f"endpoint {name} is held at zero replicas by {held} (its scale-endpoints-to-zero "
            "action): it serves again when the budget's period turns or the budget is raised "
            "('cumulo budgets ls' shows it)")


class Manager(Protocol):
    """What a runtime uses of the endpoint manager (:mod:`cumulo.serving.manager`)."""

    settings: Settings
    host: str  # the address local endpoints listen on
    root: Path  # <home>/serving
    launcher: Launcher  # starts local replica processes
    allowed: AllowedTokens  # the live tokens replicas check invocations against
    served_names: list[str]  # Host names replicas answer under besides their own address
    sessions: sessionmaker[Session]  # for work off the manager's thread (an environment's)
    envs: Builder | None  # builds the environments models run in; None: the server's only

    def notify(self) -> None:
        """Step the endpoints now (a replica is ready or gone, a deploy ended)."""

    def fetch(self, model: str, version: str) -> Path:
        """The model version's files on this machine, fetched from the registry once."""


class Metered(Protocol):
    """A replica whose time is metered: since ``metered_until``, with ``memory`` bytes."""

    metered_until: float
    memory: int


class RuntimeBase(ABC):
    """State and steps both runtimes have; each implements :class:`~cumulo.serving.runtimes.
    Runtime` on it."""

    def __init__(self, manager: Manager, endpoint: Endpoint, capture: CaptureBuffer) -> None:
        self.manager = manager
        self.name = endpoint.name
        self.capture = capture
        capture.table = endpoint.capture_table
        self.variants = endpoint.variants  # those the replicas serve (or are loading)
        self.error: str | None = None  # why the endpoint could not start at all
        self.update_error: str | None = None  # why a later configuration could not be served
        self.wanted = ""  # the settings (JSON) being applied, or applied last

    @abstractmethod
    def configure(self, endpoint: Endpoint) -> None: ...

    @abstractmethod
    def applied(self) -> bool: ...

    @abstractmethod
    def reports(self, since: float) -> list[dict[str, Any]]: ...

    def _fail(self, endpoint: Endpoint, session: Session, message: str) -> None:
        endpoint.state, endpoint.message, endpoint.updated_at = "failed", message, utcnow()

    def _settle(self, endpoint: Endpoint, session: Session) -> bool:
        """The start of every step: False when the endpoint has failed (now, if the runtime
        could not make it serve); else its current settings are applied."""
        if endpoint.state == "failed":
            return False
        if self.error:
            self._fail(endpoint, session, self.error)
            return False
        self.configure(endpoint)
        return True

    def _shift(self, endpoint: Endpoint) -> None:
        """Carry a traffic shift one step further (:func:`cumulo.serving.rollout.check`), or
        roll it back when the new configuration could not be served."""
        from cumulo.serving import rollout as rollouts

        state = copy.deepcopy(endpoint.rollout)
        assert state is not None
        metrics = None
        variants: list[dict[str, Any]] | None
        if state.get("step_started_at"):
            since = state["step_started_at"]
            window = max(1.0, time.time() - since)
            metrics = summarize(self.reports(since), window)["variants"].get(state["variant"])
        if self.update_error and state["state"] in ("shifting", "baking"):
            now = time.time()
            reason = self.update_error.strip().splitlines()[-1]
            state.update(state="rolling_back", reason=reason, error=self.update_error)
            state["log"].append({"at": now, "event": f"rolling back: {reason}"})
            action, variants = "rollback", [dict(v) for v in state["previous"]]
            self.update_error = None
        else:
            action, variants = rollouts.check(state, self.applied(), metrics)
        if action == "wait" and state == endpoint.rollout:
            return
        log.info("endpoint %s: traffic shift: %s", self.name, state["log"][-1]["event"])
        endpoint.rollout = state
        if variants is not None:
            endpoint.variants = variants
        if action == "ended":
            endpoint.state = "in_service"
        endpoint.updated_at = utcnow()
        self.configure(endpoint)

    def _meter(self, session: Session, endpoint: Endpoint | None, replica: Metered, *,
               ended: bool = False, until: float | None = None) -> None:
        """Add a usage record for the replica's time since its last one: when it ended (at
        ``until``, or now), and every METER_INTERVAL seconds while it runs."""
        now = time.time()
        if not ended and now - replica.metered_until < METER_INTERVAL:
            return
        end = now if until is None else until
        wall = end - replica.metered_until
        if endpoint is None or wall <= 0:
            return
        usage.record(session, self.manager.settings.prices, kind="endpoint", ref=endpoint.name,
                     cluster=endpoint.cluster or "local", user_id=endpoint.created_by,
                     tags=[], started_at=datetime.fromtimestamp(replica.metered_until, UTC),
                     ended_at=datetime.fromtimestamp(end, UTC), cpu_seconds=wall,
                     memory_gb_seconds=replica.memory / 1e9 * wall, gpu_seconds=0.0,
                     wall_seconds=wall, project=projects.name_of(session, endpoint.project_id))
        replica.metered_until = end
