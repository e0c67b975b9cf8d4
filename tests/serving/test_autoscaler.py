"""Autoscaling decisions, branch by branch, with a clock the test controls."""

from __future__ import annotations

import pytest

from cumulo.serving.autoscaler import Decision, Fleet, Policy, decide
from cumulo.serving.models import Endpoint

POLICY = Policy(min_replicas=1, max_replicas=4, target_in_flight=8.0, scale_in_cooldown=60.0,
                scale_to_zero_after=300.0)
TO_ZERO = Policy(min_replicas=0, max_replicas=4, target_in_flight=8.0, scale_in_cooldown=60.0,
                 scale_to_zero_after=300.0)
NOW = 10_000.0


def _decide(policy: Policy, fleet: Fleet, *, idle: float = 0.0, demand: bool = False,
            low_since: float | None = None, now: float = NOW) -> Decision:
    return decide(policy, fleet, last_request=now - idle, demand=demand, low_since=low_since,
                  now=now)


@pytest.mark.parametrize(("policy", "fleet", "wanted", "reason"), [
    (Policy(1, 4, 8.0, 60.0, 300.0, creating=True), Fleet(0, 0), 1, "created"),
    (Policy(0, 4, 8.0, 60.0, 300.0, creating=True), Fleet(0, 0), 1, "created"),
    (Policy(2, 4, 8.0, 60.0, 300.0), Fleet(0, 0), 2, "minimum 2 replicas"),
    (Policy(2, 4, 8.0, 60.0, 300.0), Fleet(1, 1), 2, "minimum 2 replicas"),
    (TO_ZERO, Fleet(0, 0), 1, "one replica until 300s without requests"),
    (POLICY, Fleet(1, 1, 20.0), 3, "20.0 requests in flight"),  # ceil(20 / 8)
    (POLICY, Fleet(1, 1, 100.0), 4, "100.0 requests in flight"),  # at most max_replicas
])
def test_scales_out_at_once(policy: Policy, fleet: Fleet, wanted: int, reason: str) -> None:
    decision = _decide(policy, fleet, low_since=NOW - 30)
    assert (decision.wanted, decision.reason) == (wanted, reason)
    assert decision.low_since is None and decision.last_request == NOW


def test_a_load_that_fills_its_replicas_exactly_needs_no_more() -> None:
    assert _decide(POLICY, Fleet(2, 2, 16.0)) == Decision(2, None, None, NOW)
    assert _decide(POLICY, Fleet(2, 2, 16.1)).wanted == 3


def test_a_steady_load_clears_the_low_since() -> None:
    assert _decide(POLICY, Fleet(2, 2, 12.0), low_since=NOW - 30) == Decision(2, None, None, NOW)


def test_scales_in_only_after_the_cooldown() -> None:
    fleet = Fleet(3, 3, 4.0)  # one replica would do
    first = _decide(POLICY, fleet)
    assert first == Decision(3, None, NOW, NOW)  # the load went low now
    held = _decide(POLICY, fleet, low_since=first.low_since, now=NOW + 59)
    assert held.wanted == 3 and held.reason is None and held.low_since == NOW
    done = _decide(POLICY, fleet, low_since=held.low_since, now=NOW + 60)
    assert done.wanted == 1 and done.reason == "4.0 requests in flight for 60s"
    assert done.low_since is None


def test_never_scales_in_while_a_replica_starts() -> None:
    decision = _decide(POLICY, Fleet(3, 2, 0.0), low_since=NOW - 600)
    assert decision == Decision(3, None, NOW - 600, NOW)  # the cooldown is kept as it was
    gone = _decide(TO_ZERO, Fleet(1, 0), idle=900)
    assert gone.wanted == 1 and gone.reason is None


def test_scales_to_zero_after_idle_with_no_cooldown() -> None:
    kept = _decide(TO_ZERO, Fleet(1, 1), idle=299)
    assert kept == Decision(1, None, None, NOW - 299)
    decision = _decide(TO_ZERO, Fleet(1, 1), idle=300)
    assert decision == Decision(0, "idle for 300s", None, NOW - 300)
    assert _decide(TO_ZERO, Fleet(0, 0), idle=900) == Decision(0, None, None, NOW - 900)


def test_a_waiting_request_starts_a_replica_and_resets_the_idle_timer() -> None:
    decision = _decide(TO_ZERO, Fleet(0, 0), idle=900, demand=True)
    assert decision == Decision(1, "a request arrived while scaled to zero", None, NOW)


def test_a_creating_endpoint_keeps_one_replica_however_idle() -> None:
    creating = Policy(0, 4, 8.0, 60.0, 300.0, creating=True)
    assert _decide(creating, Fleet(1, 1), idle=900) == Decision(1, None, None, NOW - 900)


def test_the_policy_of_an_endpoint_row() -> None:
    row = Endpoint(name="e", state="creating", min_replicas=0, max_replicas=3,
                   target_in_flight=4.0, scale_in_cooldown=10.0, scale_to_zero_after=30.0)
    assert Policy.of(row) == Policy(0, 3, 4.0, 10.0, 30.0, creating=True)
    row.state = "in_service"
    assert not Policy.of(row).creating


def test_a_held_endpoint_runs_none_whatever_waits() -> None:
    """Held at zero by a budget: its replicas stop at once (no cooldown, no idle timer), and a
    request waiting, or load in flight, starts none."""
    held = Policy(0, 4, 8.0, 60.0, 0.0, held="budget team-a")
    assert _decide(held, Fleet(2, 2, 30.0)) == Decision(0, "held at zero by budget team-a",
                                                        None, NOW)
    assert _decide(held, Fleet(0, 0), demand=True) == Decision(0, None, None, NOW - 0.0)
    late = _decide(held, Fleet(0, 0), idle=50.0, demand=True)
    assert late.wanted == 0 and late.last_request == NOW - 50.0  # a refused request: not use
    # Let go: the same request wakes a replica.
    free = Policy(0, 4, 8.0, 60.0, 0.0)
    assert _decide(free, Fleet(0, 0), demand=True).wanted == 1
