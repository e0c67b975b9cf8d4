"""Safe updates: shift an endpoint's traffic to a new variant in steps, and roll back.

What SageMaker's blue/green deployments do. An update adds the new variant with no traffic,
then gives it the share of each step in turn: ``all_at_once`` (100%), ``canary`` (say 10%,
then 100%) or ``linear`` (say 25, 50, 75, 100%). After each step the endpoint bakes for
``bake_s`` seconds, counted from when every replica serves the new weights; if during a bake
the new variant's share of 5xx answers goes over ``max_error_rate``, or its p99 latency over
``max_p99_ms``, the endpoint goes back to the variants and weights it had before, and the
rollout says why. After the last bake the old variants are removed. The endpoint is
``updating`` until its replicas serve the final (or restored) variants.

The rollout's state lives on the endpoint row (``Endpoint.rollout``), so ``show`` reports it
and a restarted control plane carries on: its step and the time the step's bake began.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from cumulo.errors import Invalid

__all__ = ["STRATEGIES", "begin", "check", "plan", "weights"]

Strategy = Literal["all_at_once", "canary", "linear"]
STRATEGIES = ("all_at_once", "canary", "linear")


def plan(strategy: str, *, canary_percent: float = 10.0, step_percent: float = 25.0) -> list[float]:
    """The new variant's traffic share (percent) at each step."""
    if strategy == "all_at_once":
        return [100.0]
    if strategy == "canary":
        if not 0 < canary_percent < 100:
            raise Invalid(f"--canary-percent must be between 0 and 100, not {canary_percent:g}")
        return [canary_percent, 100.0]
    if strategy == "linear":
        if not 0 < step_percent <= 50:
            raise Invalid(f"--step-percent must be above 0 and at most 50, not {step_percent:g}")
        steps, share = [], step_percent
        while share < 100 - 1e-9:
            steps.append(round(share, 6))
            share += step_percent
        return [*steps, 100.0]
    raise Invalid(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


def weights(previous: list[dict[str, Any]], new: dict[str, Any],
            share: float) -> list[dict[str, Any]]:
    """The variants with ``new`` at ``share`` percent of the traffic and the previous live
    variants sharing the rest in their old proportions; shadows are kept as they were."""
    live = [v for v in previous if not v.get("shadow") and v["weight"] > 0]
    total = sum(v["weight"] for v in live) or 1.0
    out = []
    for v in previous:
        if v.get("shadow") or v["weight"] <= 0:
            out.append(dict(v))
        else:
            out.append({**v, "weight": round(v["weight"] / total * (100.0 - share), 6)})
    return [*out, {**new, "weight": float(share), "shadow": False}]


def begin(previous: list[dict[str, Any]], new: dict[str, Any], strategy: str,
          steps: list[float], *, bake_s: float, max_error_rate: float | None,
          max_p99_ms: float | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The variants for the first step, and the rollout's state."""
    now = time.time()
    state = {"variant": new["name"], "strategy": strategy, "steps": steps, "step": 0,
             "state": "shifting", "bake_s": bake_s, "max_error_rate": max_error_rate,
             "max_p99_ms": max_p99_ms, "previous": previous, "new": new,
             "started_at": now, "step_started_at": None, "ended_at": None, "reason": None,
             "log": [{"at": now, "event": f"{strategy}: {new['name']} gets {steps[0]:g}%"}]}
    return weights(previous, new, steps[0]), state


def check(rollout: dict[str, Any], applied: bool, metrics: dict[str, Any] | None,
          now: float | None = None) -> tuple[str, list[dict[str, Any]] | None]:
    """One look at a rollout in progress: what to do, and the variants to serve next.

    ``applied``: every replica serves the current variants and weights. ``metrics``: the new
    variant's numbers since its step's bake began (:func:`cumulo.serving.manager.summarize`'s
    row), or None when it served nothing yet. Returns ("wait", None), ("next", variants),
    ("done", variants), ("rollback", previous variants) or ("ended", None) once the replicas
    serve the final or restored variants; ``rollout`` is updated in place.
    """
    now = time.time() if now is None else now
    if rollout["state"] in ("finishing", "rolling_back"):
        if not applied:
            return "wait", None
        done = rollout["state"] == "finishing"
        rollout.update(state="done" if done else "rolled_back", ended_at=now)
        rollout["log"].append({"at": now, "event": "done" if done else "rolled back"})
        return "ended", None
    if rollout["state"] == "shifting":
        if not applied:
            return "wait", None
        rollout["state"], rollout["step_started_at"] = "baking", now
        return "wait", None
    if rollout["state"] != "baking":
        return "wait", None
    problem = _problem(rollout, metrics)
    if problem:
        rollout.update(state="rolling_back", reason=problem)
        rollout["log"].append({"at": now, "event": f"rolling back: {problem}"})
        return "rollback", [dict(v) for v in rollout["previous"]]
    if now - rollout["step_started_at"] < rollout["bake_s"]:
        return "wait", None
    rollout["step"] += 1
    if rollout["step"] >= len(rollout["steps"]):
        rollout.update(state="finishing")
        rollout["log"].append({"at": now, "event": f"{rollout['variant']} takes all traffic; "
                                                  "removing the old variants"})
        shadows = [dict(v) for v in rollout["previous"] if v.get("shadow")]
        return "done", [{**rollout["new"], "weight": 1.0, "shadow": False}, *shadows]
    share = rollout["steps"][rollout["step"]]
    rollout.update(state="shifting", step_started_at=None)
    rollout["log"].append({"at": now, "event": f"{rollout['variant']} gets {share:g}%"})
    return "next", weights(rollout["previous"], rollout["new"], share)


def _problem(rollout: dict[str, Any], metrics: dict[str, Any] | None) -> str | None:
    if not metrics or not metrics.get("requests"):
        return None
    rate = metrics["errors_5xx"] / metrics["requests"]
    limit = rollout.get("max_error_rate")
    if limit is not None and rate > limit:
        return (f"{rollout['variant']} answered {metrics['errors_5xx']} of "
                f"{metrics['requests']} requests with an error ({rate:.1%}; the limit is "
                f"{limit:.1%})")
    p99, most = metrics.get("latency_p99_ms"), rollout.get("max_p99_ms")
    if most is not None and p99 is not None and p99 > most:
        return f"{rollout['variant']}'s p99 latency was {p99:.1f} ms (the limit is {most:g} ms)"
    return None
