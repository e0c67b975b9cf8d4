"""Storage's Prometheus metrics (:mod:`cumulo.metrics`): each bucket's objects and bytes,
read from the objects table when Prometheus scrapes (one aggregate over the table, on the
bucket index)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cumulo.metrics import Scraped
from cumulo.storage.models import Bucket, StoredObject

__all__ = ["scraped"]


def scraped(sessions: sessionmaker[Session]) -> Scraped:
    def read() -> Iterator[Metric]:
        objects = GaugeMetricFamily("cumulo_storage_objects", "objects stored, by bucket",
                                    labels=("bucket",))
        stored = GaugeMetricFamily("cumulo_storage_bytes", "bytes stored, by bucket",
                                   labels=("bucket",))
        with sessions() as session:
            rows = session.execute(
                select(Bucket.name, func.count(StoredObject.id),
                       func.coalesce(func.sum(StoredObject.size), 0))
                .outerjoin(StoredObject, StoredObject.bucket_id == Bucket.id)
                .group_by(Bucket.name)).all()
        for name, count, size in rows:
            objects.add_metric((name,), count)
            stored.add_metric((name,), size)
        yield objects
        yield stored

    return Scraped("storage", read)
