"""An endpoint's metrics: its replicas' reports merged into rates and latency percentiles
(``cumulo endpoints metrics``), and summed into Prometheus' counters and histograms
(``/metrics``).

Each replica reports, twice a second, what it served by variant since its last report
(:class:`cumulo.serving.stats.Window`: counts, latency histograms on fine log-scale buckets,
sums). :func:`summarize` merges any set of those reports, from any replicas, into what
``cumulo endpoints metrics`` and the rollback of a traffic shift (:mod:`cumulo.serving.rollout`)
read.

For Prometheus, :data:`SERVED` adds every report to totals kept in the control plane. Because
the reports are increments, not a replica's running totals, the sums are right across any
number of replicas (they are separate processes: each one's increments add up) and never go
backwards when a replica restarts or is replaced: a new replica's first report adds to what its
predecessors served. A replica killed between two reports loses at most its last half second.
The totals start at 0 when the control plane restarts, which Prometheus' ``rate()`` reads as a
counter reset. Several control planes each count their own replicas: sum them in PromQL. The
fine buckets fold into :data:`cumulo.metrics.LATENCY_BUCKETS` by their upper bounds, so a
``le`` bucket's count is exact to within one fine bucket (9%).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from cumulo.metrics import LATENCY_BUCKETS, REGISTRY, Scraped, counter
from cumulo.serving.stats import BOUNDS, percentile

__all__ = ["SERVED", "Served", "observe_scaling", "scraped", "summarize"]

_COUNTS = ("requests", "errors_4xx", "errors_5xx")
_LATENCIES = (("latency", "latency"), ("model", "model_latency"),
              ("overhead", "overhead_latency"))
_HISTOGRAMS = (("latency", "cumulo_endpoint_latency_seconds", "whole request"),
               ("model", "cumulo_endpoint_model_latency_seconds", "the model's call"),
               ("overhead", "cumulo_endpoint_overhead_latency_seconds",
                "everything but the model's call"))
# A fine bucket (cumulo.serving.stats.BOUNDS, and one past them) -> the Prometheus bucket
# its upper bound falls in (len(LATENCY_BUCKETS): +Inf).
_FOLD = [bisect.bisect_left(LATENCY_BUCKETS, bound * (1 - 1e-9)) for bound in BOUNDS] + [
    len(LATENCY_BUCKETS)]
_LE = [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]  # as prometheus_client writes them

_SCALING = counter("cumulo_endpoint_scaling_decisions",
                   "the autoscaler's decisions to change an endpoint's replicas, by direction "
                   "(out: more, in: fewer)", ("endpoint", "direction"))


def observe_scaling(endpoint: str, *, have: int, wanted: int) -> None:
    if wanted != have:
        _SCALING.labels(endpoint, "out" if wanted > have else "in").inc()


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


class _Totals:
    """One variant's counts since the control plane started."""

    def __init__(self) -> None:
        self.counts = {key: 0 for key in _COUNTS}
        self.buckets = {key: [0] * len(_LE) for key, _, _ in _HISTOGRAMS}
        self.sums = {key: 0.0 for key, _, _ in _HISTOGRAMS}

    def add(self, v: dict[str, Any]) -> None:
        for key in _COUNTS:
            self.counts[key] += int(v.get(key, 0))
        sums = v.get("sums")
        for i, (key, _, _) in enumerate(_HISTOGRAMS):
            buckets = self.buckets[key]
            for fine, count in v.get(key, {}).items():
                index = int(fine)
                buckets[_FOLD[min(max(index, 0), len(_FOLD) - 1)]] += int(count)
                if sums is None:  # a replica of an older version: its bucket's bound
                    self.sums[key] += BOUNDS[min(index, len(BOUNDS) - 1)] * int(count)
            if sums is not None:
                self.sums[key] += float(sums[i])


class Served(Collector):
    """Every endpoint's requests, errors and latency histograms by variant, summed from the
    replicas' reports as they come (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], _Totals] = {}

    def add(self, endpoint: str, variants: dict[str, Any]) -> None:
        """One replica's report: what it served since its last one, by variant."""
        if not variants:
            return
        with self._lock:
            for variant, v in variants.items():
                totals = self._totals.get((endpoint, variant))
                if totals is None:
                    totals = self._totals[(endpoint, variant)] = _Totals()
                totals.add(v)

    def collect(self) -> Iterator[Metric]:
        labels = ("endpoint", "variant")
        requests = CounterMetricFamily("cumulo_endpoint_requests",
                                       "requests an endpoint's replicas answered, by variant",
                                       labels=labels)
        errors = CounterMetricFamily("cumulo_endpoint_errors",
                                     "requests answered with an error, by variant and class "
                                     "(4xx: the caller's, 5xx: the model's or the replica's)",
                                     labels=(*labels, "code"))
        histograms = {key: HistogramMetricFamily(name, f"{text}, in seconds", labels=labels)
                      for key, name, text in _HISTOGRAMS}
        with self._lock:
            for (endpoint, variant), totals in sorted(self._totals.items()):
                requests.add_metric((endpoint, variant), totals.counts["requests"])
                errors.add_metric((endpoint, variant, "4xx"), totals.counts["errors_4xx"])
                errors.add_metric((endpoint, variant, "5xx"), totals.counts["errors_5xx"])
                for key, family in histograms.items():
                    running, cumulative = 0, []
                    for le, count in zip(_LE, totals.buckets[key], strict=True):
                        running += count
                        cumulative.append((le, running))
                    family.add_metric((endpoint, variant), cumulative, totals.sums[key])
        yield requests
        yield errors
        yield from histograms.values()


SERVED = Served()
REGISTRY.register(SERVED)


class _Runtimes(Protocol):  # cumulo.serving.manager.EndpointManager
    def runtime(self, name: str) -> dict[str, Any]: ...


def scraped(manager: _Runtimes, sessions: sessionmaker[Session]) -> Scraped:
    """Each endpoint's replicas serving and requests in flight now, read from the runtimes
    when Prometheus scrapes."""
    from cumulo.serving import endpoints

    def read() -> Iterator[Metric]:
        replicas = GaugeMetricFamily("cumulo_endpoint_replicas", "replicas serving",
                                     labels=("endpoint",))
        in_flight = GaugeMetricFamily("cumulo_endpoint_in_flight",
                                      "requests being answered now", labels=("endpoint",))
        with sessions() as session:
            names = [e.name for e in endpoints.list_endpoints(session)]
        for name in names:
            live = [r for r in manager.runtime(name)["replicas"] if r["ready"]]
            replicas.add_metric((name,), len(live))
            in_flight.add_metric((name,), sum(r["in_flight"] for r in live))
        yield replicas
        yield in_flight

    return Scraped("endpoints", read)
