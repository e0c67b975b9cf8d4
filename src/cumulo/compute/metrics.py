"""Jobs' Prometheus metrics (:mod:`cumulo.metrics`): how long jobs ran and how they ended,
observed by the supervisor as each ends; and, read from the database when Prometheus
scrapes, the jobs waiting and running now (the queue's depth is ``state="queued"``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.compute.models import FINISHED, Job
from cumulo.metrics import DURATION_BUCKETS, Scraped, counter, histogram

__all__ = ["observe_end", "scraped"]

_ENDED = counter("cumulo_jobs_ended", "jobs that ended, by cluster and final state",
                 ("cluster", "state"))
_SECONDS = histogram("cumulo_job_duration_seconds",
                     "a job's wall time, from its first start to its end (all attempts), "
                     "by cluster and final state", ("cluster", "state"),
                     buckets=DURATION_BUCKETS)
_UNFINISHED = ("queued", "starting", "running")


def observe_end(*, cluster: str, state: str, seconds: float) -> None:
    """A job ended (not an attempt that is retried)."""
    _ENDED.labels(cluster, state).inc()
    _SECONDS.labels(cluster, state).observe(max(0.0, seconds))


def scraped(sessions: sessionmaker[Session]) -> Scraped:
    """Jobs now, by cluster and state (queued, starting, running; every state shows, at 0
    when none is in it, so a panel's query finds the series)."""

    def read() -> Iterator[Metric]:
        family = GaugeMetricFamily("cumulo_jobs", "jobs not ended yet, by cluster and state",
                                   labels=("cluster", "state"))
        with sessions() as session:
            rows = session.execute(
                select(Job.cluster, Job.state, func.count()).where(Job.state.not_in(FINISHED))
                .group_by(Job.cluster, Job.state)).all()
        counts = {(cluster, state): n for cluster, state, n in rows}
        for cluster in sorted({c for c, _ in counts} or {"local"}):
            for state in _UNFINISHED:
                family.add_metric((cluster, state), counts.get((cluster, state), 0))
        yield family

    return Scraped("jobs", read)
