"""Where an endpoint's replicas run, behind one small interface: this machine or Ray Serve.

The endpoint manager (:mod:`cumulo.serving.manager`) keeps one :class:`Runtime` per endpoint,
made by :func:`open_runtime` from the endpoint's cluster: none (this machine) gives
:class:`~cumulo.serving.runtimes.local.LocalRuntime`, replica processes sharing the endpoint's
socket; a Ray cluster gives :class:`~cumulo.serving.runtimes.ray.RayRuntime`, a Ray Serve
application. Each is imported when first needed. What both share (the traffic-shift step,
failing, metering) is in :mod:`cumulo.serving.runtimes.base`.
"""

from __future__ import annotations

import importlib
import socket
from typing import Any, Protocol

from sqlalchemy.orm import Session

from cumulo.errors import NotFound
from cumulo.serving.capture import CaptureBuffer
from cumulo.serving.models import Endpoint
from cumulo.serving.runtimes.base import Manager

__all__ = ["Manager", "Runtime", "open_runtime"]


class Runtime(Protocol):
    """One endpoint's replicas, wherever they run. The manager calls it from its one thread,
    except :meth:`report`, :meth:`reports` and :meth:`describe`, which routes call."""

    name: str

    def configure(self, endpoint: Endpoint) -> None:
        """Start applying the endpoint's settings (variants, batching, capture), if they
        changed; what takes time (fetching models, deploying) goes on in the background."""

    def step(self, endpoint: Endpoint, session: Session) -> None:
        """Move the endpoint towards its settings: replicas, scaling, a traffic shift under
        way; record its state (in_service, failed with why) on the row."""

    def applied(self) -> bool:
        """Every replica serves the configuration of the endpoint's current settings."""

    def waiting(self) -> socket.socket | None:
        """A socket for the manager to watch while no replica runs: a connection on it is a
        request that waits (:meth:`request_waits`). None when there is nothing to watch."""

    def request_waits(self) -> None:
        """A connection waits on the socket from :meth:`waiting`: start a replica now."""

    def report(self, message: dict[str, Any]) -> bool:
        """A replica's report over HTTP (its stats, captured requests, memory); False if
        this runtime's replicas do not report so."""

    def reports(self, since: float) -> list[dict[str, Any]]:
        """What every replica, running or gone, reported after ``since`` (a time.time()),
        each a :class:`cumulo.serving.stats.Window`'s variants."""

    def describe(self) -> dict[str, Any]:
        """Its replicas, restarts and recent scaling decisions, for ``show``."""

    @classmethod
    def open(cls, manager: Manager, session: Session, endpoint: Endpoint,
             capture: CaptureBuffer, cluster: Any) -> Runtime:
        """The runtime of ``endpoint`` on ``cluster`` (its row; None for this machine)."""
        ...

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None, *,
              delete: bool = False) -> None:
        """Stop its replicas, metering them when given the session and row; ``delete``: the
        endpoint is deleted, so remove what it left where it ran."""


# Runtimes by the type of the cluster an endpoint runs on ("local": this machine, for an
# endpoint with no cluster). A new backend is one module here and one line in this table.
_RUNTIMES = {"local": "cumulo.serving.runtimes.local:LocalRuntime",
             "ray": "cumulo.serving.runtimes.ray:RayRuntime"}


def open_runtime(manager: Manager, session: Session, endpoint: Endpoint,
                 capture: CaptureBuffer) -> Runtime:
    """The runtime for the endpoint, by its cluster's type, imported when first needed;
    OSError says why it cannot run (the port is taken, the cluster is gone)."""
    cluster = None
    if endpoint.cluster is not None:
        from cumulo.compute.clusters import get_cluster

        try:
            cluster = get_cluster(session, endpoint.cluster)
        except NotFound:
            raise OSError(f"cluster {endpoint.cluster!r} is gone") from None
    kind = cluster.type if cluster is not None else "local"
    if kind not in _RUNTIMES:
        raise OSError(f"endpoints do not run on {kind} clusters ({endpoint.cluster!r})")
    module, _, name = _RUNTIMES[kind].partition(":")
    runtime: type[Any] = getattr(importlib.import_module(module), name)
    return runtime.open(manager, session, endpoint, capture, cluster)  # type: ignore[no-any-return]
