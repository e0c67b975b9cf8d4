"""Prometheus metrics: the process's registry, the helpers each service declares its metrics
with, and the text ``/metrics`` serves.

The core imports no service: each service declares its own metrics in its package (counters
and histograms it moves as work happens, e.g. :mod:`cumulo.lake.metrics`) and, for what is
cheaper to read than to keep (jobs by state, stored bytes), a collector that reads the
database when Prometheus scrapes. The server (:mod:`cumulo.server.telemetry`) puts the
process's registry and the services' collectors together for ``/metrics``.

Names follow Prometheus' conventions: ``cumulo_<service>_<what>``, ``_total`` for counters,
``_seconds`` and ``_bytes`` for units; labels are bounded (a route's template, never its
path; an endpoint's name and variant; a state), so the number of series stays that of the
things a person created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "LATENCY_BUCKETS", "REGISTRY", "Scraped",
           "counter", "exposition", "histogram"]

log = logging.getLogger("cumulo.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: a request (an HTTP route, an endpoint's prediction), from half a millisecond to a
# minute.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds: work that runs for a while (a job, a SQL query), from a tenth of a second to a day.
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                                       1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)

# Metrics of this process: they live as long as it does (Prometheus reads a restart as a
# counter reset, which rate() handles).
REGISTRY = CollectorRegistry(auto_describe=True)
# No ``_created`` series beside each counter and histogram: Prometheus reads resets from the
# counters themselves, and they would double the series for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """A counter of this process (``name`` without ``_total``: prometheus_client adds it)."""
    return Counter(name, documentation, labels, registry=REGISTRY)


def histogram(name: str, documentation: str, labels: Sequence[str] = (), *,
              buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
    """A histogram of this process, in seconds unless its name says otherwise."""
    return Histogram(name, documentation, labels, registry=REGISTRY, buckets=buckets)


class Scraped(Collector):
    """A collector that reads what it reports when Prometheus scrapes (the database, a
    runtime's replicas): ``read`` yields metric families. One that fails is logged and left
    out of that scrape; the others are still served."""

    def __init__(self, name: str, read: Callable[[], Iterable[Metric]]) -> None:
        self.name = name
        self.read = read

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self.read())
        except Exception:
            log.exception("metrics: reading %s failed; left out of this scrape", self.name)
            return iter(())
        return iter(families)


def exposition(collectors: Iterable[Collector] = ()) -> bytes:
    """The text format for Prometheus: this process's metrics and ``collectors``' (read now)."""
    registry = CollectorRegistry(auto_describe=False)  # nothing is read until generate_latest
    registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
