"""SQL's Prometheus metrics (:mod:`cumulo.metrics`): queries by final state, the bytes they
scanned and how long they took, moved as each query ends (:func:`cumulo.lake.sql.run_query`)."""

from __future__ import annotations

from cumulo.metrics import DURATION_BUCKETS, counter, histogram

__all__ = ["observe_query"]

_QUERIES = counter("cumulo_sql_queries", "SQL queries run, by final state", ("state",))
_SCANNED = counter("cumulo_sql_bytes_scanned", "bytes SQL queries read from tables and files")
_SECONDS = histogram("cumulo_sql_query_duration_seconds", "how long SQL queries took",
                     buckets=(0.005, 0.01, 0.025, 0.05, *DURATION_BUCKETS))


def observe_query(*, state: str, bytes_scanned: int | None, seconds: float) -> None:
    _QUERIES.labels(state).inc()
    if bytes_scanned:
        _SCANNED.inc(bytes_scanned)
    _SECONDS.observe(seconds)
