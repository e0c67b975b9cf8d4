"""Traffic shift plans and decisions, step by step, with a clock the test controls."""

from __future__ import annotations

import pytest

from cumulo.errors import Invalid
from cumulo.serving import rollout

OLD = [{"name": "a", "model": "m", "version": "1", "weight": 3.0, "shadow": False},
       {"name": "b", "model": "m", "version": "2", "weight": 1.0, "shadow": False},
       {"name": "s", "model": "m", "version": "3", "weight": 1.0, "shadow": True}]
NEW = {"name": "c", "model": "m", "version": "4"}


def test_plans() -> None:
    assert rollout.plan("all_at_once") == [100.0]
    assert rollout.plan("canary", canary_percent=5) == [5, 100.0]
    assert rollout.plan("linear", step_percent=25) == [25, 50, 75, 100.0]
    assert rollout.plan("linear", step_percent=40) == [40, 80, 100.0]
    with pytest.raises(Invalid, match="unknown strategy 'blue'"):
        rollout.plan("blue")
    with pytest.raises(Invalid, match="--step-percent"):
        rollout.plan("linear", step_percent=0)


def test_weights_keep_the_old_proportions_and_the_shadows() -> None:
    shares = {v["name"]: v["weight"] for v in rollout.weights(OLD, NEW, 20)}
    assert shares == {"a": 60.0, "b": 20.0, "s": 1.0, "c": 20.0}


def test_a_shift_bakes_each_step_then_finishes() -> None:
    variants, state = rollout.begin(OLD, NEW, "canary", [10, 100.0], bake_s=60,
                                    max_error_rate=0.01, max_p99_ms=100)
    assert variants[-1] == {**NEW, "weight": 10, "shadow": False}
    assert rollout.check(state, applied=False, metrics=None, now=1000) == ("wait", None)
    assert rollout.check(state, applied=True, metrics=None, now=1000) == ("wait", None)
    assert state["state"] == "baking" and state["step_started_at"] == 1000
    healthy = {"requests": 100, "errors_5xx": 1, "latency_p99_ms": 80.0}
    assert rollout.check(state, True, healthy, now=1059) == ("wait", None)
    action, variants = rollout.check(state, True, healthy, now=1060)
    assert action == "next" and variants is not None and variants[-1]["weight"] == 100.0
    assert state["state"] == "shifting" and state["step"] == 1
    rollout.check(state, True, None, now=1061)
    action, variants = rollout.check(state, True, healthy, now=1121)
    assert action == "done" and variants is not None
    assert [(v["name"], v["weight"]) for v in variants] == [("c", 1.0), ("s", 1.0)]
    assert state["state"] == "finishing"
    assert rollout.check(state, False, None, now=1122) == ("wait", None)
    assert rollout.check(state, True, None, now=1123) == ("ended", None)
    assert state["state"] == "done" and state["ended_at"] == 1123


@pytest.mark.parametrize(("metrics", "reason"), [
    ({"requests": 50, "errors_5xx": 2, "latency_p99_ms": 10.0}, "2 of 50 requests"),
    ({"requests": 50, "errors_5xx": 0, "latency_p99_ms": 250.0}, "p99 latency was 250.0 ms"),
])
def test_crossing_a_limit_during_a_bake_rolls_back(metrics: dict[str, float],
                                                   reason: str) -> None:
    _, state = rollout.begin(OLD, NEW, "linear", [50, 100.0], bake_s=60, max_error_rate=0.01,
                             max_p99_ms=100)
    rollout.check(state, True, None, now=0)
    action, variants = rollout.check(state, True, metrics, now=5)
    assert action == "rollback" and variants == OLD
    assert state["state"] == "rolling_back" and reason in state["reason"]
    assert rollout.check(state, True, None, now=6) == ("ended", None)
    assert state["state"] == "rolled_back"


def test_no_traffic_during_a_bake_is_not_a_failure() -> None:
    _, state = rollout.begin(OLD, NEW, "all_at_once", [100.0], bake_s=1, max_error_rate=0.0,
                             max_p99_ms=None)
    rollout.check(state, True, None, now=0)
    assert rollout.check(state, True, {"requests": 0, "errors_5xx": 0}, now=2)[0] == "done"
