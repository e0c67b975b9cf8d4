"""Autoscaling of local endpoints: how many replicas to run now, and why.

Every step, the endpoint wants ``ceil(load / target_in_flight)`` replicas, where load is the
requests in flight averaged over the ready replicas' last reports, kept between
``min_replicas`` and ``max_replicas``. It scales out at once and in only after the load has
stayed lower for ``scale_in_cooldown`` seconds, and never while a replica is starting (it may
be for a request that waits for it). With ``min_replicas`` 0 it keeps one replica until no
request came for ``scale_to_zero_after`` seconds, then stops them all; a request that arrives
then waits in the endpoint's socket, and counts as demand: one replica, at once. A creating
endpoint keeps one replica, so that it answers once before it may scale to zero.

:func:`decide` is pure: the runtime (:mod:`cumulo.serving.runtimes.local`) gives it the
endpoint's settings, its replicas' facts and the clock, and applies the decision. Ray Serve
scales endpoints on Ray with its own autoscaler, from the same settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cumulo.serving.models import Endpoint

__all__ = ["Decision", "Fleet", "Policy", "decide"]


@dataclass(frozen=True)
class Policy:
    """An endpoint's scaling settings."""

    min_replicas: int
    max_replicas: int
    target_in_flight: float  # requests in flight per replica
    scale_in_cooldown: float  # seconds of lower load before scaling in
    scale_to_zero_after: float  # idle seconds before the last replica stops (min_replicas 0)
    creating: bool = False  # the endpoint has not answered yet
    # Who holds it at zero replicas (a budget's scale-endpoints-to-zero): no request wakes it.
    held: str | None = None

    @classmethod
    def of(cls, endpoint: Endpoint) -> Policy:
        return cls(endpoint.min_replicas, endpoint.max_replicas, endpoint.target_in_flight,
                   endpoint.scale_in_cooldown, endpoint.scale_to_zero_after,
                   creating=endpoint.state == "creating", held=endpoint.held)


@dataclass(frozen=True)
class Fleet:
    """The replicas now: those serving (not told to stop), how many of them are ready, and
    their summed load (requests in flight, averaged over each ready one's last report)."""

    serving: int
    ready: int
    load: float = 0.0


@dataclass(frozen=True)
class Decision:
    """How many replicas to run now; ``reason`` says why the count changes (None: it does
    not). ``low_since`` is when the load went low (for the cooldown) and ``last_request`` the
    time idleness counts from, both for the next decision."""

    wanted: int
    reason: str | None
    low_since: float | None
    last_request: float


def decide(policy: Policy, fleet: Fleet, *, last_request: float, demand: bool,
           low_since: float | None, now: float) -> Decision:
    """The replicas to run at ``now``. ``last_request``: when a replica last said it served
    a request; ``demand``: a request waits in the socket (it counts as one, for the idle
    timer too); ``low_since``: the previous decision's. A held endpoint runs none, whatever
    waits."""
    if policy.held is not None:
        return Decision(0, f"held at zero by {policy.held}" if fleet.serving else None, None,
                        last_request)
    if demand:
        last_request = now
    idle = now - last_request
    floor = policy.min_replicas
    if floor == 0 and (demand or idle < policy.scale_to_zero_after):
        floor = 1  # a request waits (even with no idle time allowed): one serves it
    if policy.creating:
        floor = max(floor, 1)
    wanted = max(floor, min(policy.max_replicas, math.ceil(
        fleet.load / max(policy.target_in_flight, 1e-9) - 1e-6)))
    have = fleet.serving
    if wanted > have:
        return Decision(wanted, _out_reason(policy, fleet, demand), None, last_request)
    if wanted == have:
        return Decision(have, None, None, last_request)
    if fleet.ready < have:  # not while one starts: it may be for a request that waits for it
        return Decision(have, None, low_since, last_request)
    if wanted == 0:
        return Decision(0, f"idle for {idle:.0f}s", None, last_request)
    if low_since is None:
        return Decision(have, None, now, last_request)
    if now - low_since < policy.scale_in_cooldown:
        return Decision(have, None, low_since, last_request)
    return Decision(wanted, f"{fleet.load:.1f} requests in flight for "
                            f"{policy.scale_in_cooldown:.0f}s", None, last_request)


def _out_reason(policy: Policy, fleet: Fleet, demand: bool) -> str:
    if fleet.serving == 0 and demand:
        return "a request arrived while scaled to zero"
    if fleet.load:
        return f"{fleet.load:.1f} requests in flight"
    if policy.creating:
        return "created"
    if policy.min_replicas == 0:  # kept until it has been idle long enough
        return f"one replica until {policy.scale_to_zero_after:.0f}s without requests"
    return f"minimum {policy.min_replicas} replicas"
