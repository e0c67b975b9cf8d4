"""An endpoint's metrics: its replicas' reports merged into rates and latency percentiles.

Each replica reports, twice a second, what it served by variant (:class:`cumulo.serving.stats.
Window`: counts and latency histograms). :func:`summarize` merges any set of those reports, from
any replicas, into what ``cumulo endpoints metrics``, ``/metrics`` and the rollback of a traffic
shift (:mod:`cumulo.serving.rollout`) read.
"""

from __future__ import annotations

from typing import Any

from cumulo.serving.stats import percentile

__all__ = ["summarize"]

_COUNTS = ("requests", "errors_4xx", "errors_5xx")
_LATENCIES = (("latency", "latency"), ("model", "model_latency"),
              ("overhead", "overhead_latency"))


def summarize(reports: list[dict[str, Any]], window: float) -> dict[str, Any]:
    """Merge replicas' reports (:class:`cumulo.serving.stats.Window`) into per-variant rates
    and latency percentiles, in milliseconds."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for variant, v in report.items():
            m = merged.setdefault(variant, {"requests": 0, "errors_4xx": 0, "errors_5xx": 0,
                                            "shadow": v.get("shadow", False),
                                            "latency": {}, "model": {}, "overhead": {}})
            for key in _COUNTS:
                m[key] += v[key]
            for key, _ in _LATENCIES:
                for bucket, count in v.get(key, {}).items():
                    m[key][int(bucket)] = m[key].get(int(bucket), 0) + count
    out: dict[str, Any] = {"window_s": window, "variants": {}}
    for variant, m in sorted(merged.items()):
        row: dict[str, Any] = {
            "shadow": m["shadow"], "requests": m["requests"],
            "requests_per_s": round(m["requests"] / window, 3),
            "errors_4xx": m["errors_4xx"], "errors_5xx": m["errors_5xx"]}
        for q in (0.5, 0.95, 0.99):
            for key, name in _LATENCIES:
                value = percentile(m[key], q)
                row[f"{name}_p{int(q * 100)}_ms"] = None if value is None else round(
                    value * 1000, 3)
        out["variants"][variant] = row
    return out
