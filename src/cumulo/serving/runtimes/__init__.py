"""Where an endpoint's replicas run, behind one small interface: this machine or Ray Serve.

The endpoint manager (:mod:`cumulo.serving.manager`) keeps one :class:`Runtime` per endpoint,
made by :func:`open_runtime` from the endpoint's cluster: none (this machine) gives
:class:`~cumulo.serving.runtimes.local.LocalRuntime`, replica processes sharing the endpoint's
socket; a Ray cluster gives :class:`~cumulo.serving.runtimes.ray.RayRuntime`, a Ray Serve
application. Each is imported when first needed. What both share (the traffic-shift step,
failing, metering) is in :mod:`cumulo.serving.runtimes.base`.
"""

from __future__ import annotations

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

    def close(self, session: Session | None = None, endpoint: Endpoint | None = None, *,
              delete: bool = False) -> None:
        """Stop its replicas, metering them when given the session and row; ``delete``: the
        endpoint is deleted, so remove what it left where it ran."""


def open_runtime(manager: Manager, session: Session, endpoint: Endpoint,
                 capture: CaptureBuffer) -> Runtime:
    """The runtime for the endpoint, by its cluster's type; OSError says why it cannot run
    (the port is taken, the cluster is gone)."""
    if endpoint.cluster is None:
        from cumulo.serving.runtimes.local import LocalRuntime

        return LocalRuntime(manager, endpoint, capture)
    from cumulo.compute.clusters import get_cluster

    try:
        cluster = get_cluster(session, endpoint.cluster)
    except NotFound:
        cluster = None
    if cluster is None or cluster.type != "ray":
        raise OSError(f"cluster {endpoint.cluster!r} is not a Ray cluster any more")
    if endpoint.created_by is None:  # its replicas' token would have no user
        raise OSError("the user who created this endpoint was deleted; create it again")
    from cumulo.compute.clusters import ray_python
    from cumulo.serving.runtimes.ray import RayRuntime

    return RayRuntime(manager, endpoint, capture, session=session,
                      dashboard=str(cluster.endpoint or cluster.address),
                      python=ray_python(cluster))
