"""Request statistics a replica sums up and the manager merges: counts and latency histograms.

Latencies go into fixed buckets on a log scale (about 9% apart, from 0.1 ms to 100 s), so a
replica sends a few dozen numbers per variant each interval however many requests it served,
and percentiles over any set of replicas and intervals are the merge of their buckets.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

__all__ = ["BOUNDS", "Window", "percentile"]

BOUNDS = [1e-4 * 1.09 ** i for i in range(int(math.log(1e6) / math.log(1.09)) + 2)]


def _bucket(seconds: float) -> int:
    return bisect.bisect_left(BOUNDS, seconds)


def percentile(buckets: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a histogram: its bucket's upper bound, in seconds."""
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return BOUNDS[min(index, len(BOUNDS) - 1)]
    return BOUNDS[-1]  # pragma: no cover - the loop always reaches the rank


class Window:
    """What one replica served since it last reported, by variant."""

    def __init__(self) -> None:
        self.variants: dict[str, dict[str, Any]] = {}

    def add(self, result: dict[str, Any]) -> None:
        name = result["variant"] or "-"
        v = self.variants.get(name)
        if v is None:
            v = self.variants[name] = {"requests": 0, "errors_4xx": 0, "errors_5xx": 0,
                                       "shadow": bool(result.get("shadow")),
                                       "latency": {}, "model": {}, "overhead": {},
                                       "sums": [0.0, 0.0, 0.0]}
        v["requests"] += 1
        status = result["status"]
        if 400 <= status < 500:
            v["errors_4xx"] += 1
        elif status >= 500:
            v["errors_5xx"] += 1
        # Written out, not looped: this runs for every request a replica answers.
        latency, model = result["latency_s"], result["model_s"]
        overhead = max(0.0, latency - model)
        buckets = v["latency"]
        b = bisect.bisect_left(BOUNDS, latency)
        buckets[b] = buckets.get(b, 0) + 1
        buckets = v["model"]
        b = bisect.bisect_left(BOUNDS, model)
        buckets[b] = buckets.get(b, 0) + 1
        buckets = v["overhead"]
        b = bisect.bisect_left(BOUNDS, overhead)
        buckets[b] = buckets.get(b, 0) + 1
        sums = v["sums"]  # exact sums, for Prometheus' _sum (cumulo.serving.metrics)
        sums[0] += latency
        sums[1] += model
        sums[2] += overhead

    def take(self) -> dict[str, dict[str, Any]]:
        out, self.variants = self.variants, {}
        return out
