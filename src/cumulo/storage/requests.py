"""Requests to the S3 API, tallied per bucket and caller for metering.

S3 prices requests by class: PUT, COPY, POST and LIST requests at one price, GET, HEAD and the
rest at a tenth of it (per thousand); DELETE and a bucket's removal are free. The S3 API
(:mod:`cumulo.storage.s3api`) counts each signed request that names a bucket here, in memory
(a dict increment under a lock: nothing on the request's path touches the database); the
metering loop (:func:`cumulo.metering.sampler.meter_requests`) takes the counts every round and
writes them as usage records. Counts not yet taken when the process stops are lost (at most
one metering round's), and past ``MAX_HOLDERS`` buckets and callers in one round, a new one is
not counted.

>>> tally = RequestTally()
>>> tally.count("data", 7, "PUT", has_key=True)
>>> tally.count("data", 7, "GET", has_key=False)      # ListObjects
>>> tally.count("data", 7, "GET", has_key=True)
>>> tally.take()
{('data', 7): {'put': 2, 'get': 1}}
>>> tally.take()
{}
"""

from __future__ import annotations

import threading

__all__ = ["MAX_HOLDERS", "TALLY", "RequestTally", "request_class"]

# Buckets and callers counted between two rounds, at most: a signed caller naming ever new
# buckets (that do not exist: their counts are dropped anyway) cannot grow it past this.
MAX_HOLDERS = 10_000


def request_class(method: str, *, has_key: bool) -> str | None:
    """``put`` (PUT, COPY, POST, LIST: a GET of a bucket), ``get`` (GET of an object, HEAD,
    OPTIONS), or None for what S3 does not charge (DELETE)."""
    if method == "DELETE":
        return None
    if method in ("PUT", "POST") or (method == "GET" and not has_key):
        return "put"
    return "get"


class RequestTally:
    """Counts of requests per (bucket, user id) and class, since they were last taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int | None], dict[str, int]] = {}

    def count(self, bucket: str, user_id: int | None, method: str, *, has_key: bool) -> None:
        kind = request_class(method, has_key=has_key)
        if kind is None:
            return
        with self._lock:
            counts = self._counts.get((bucket, user_id))
            if counts is None:
                if len(self._counts) >= MAX_HOLDERS:
                    return  # not counted: see MAX_HOLDERS
                counts = self._counts[(bucket, user_id)] = {}
            counts[kind] = counts.get(kind, 0) + 1

    def take(self) -> dict[tuple[str, int | None], dict[str, int]]:
        """The counts so far, and a fresh start."""
        with self._lock:
            taken, self._counts = self._counts, {}
        return taken

    def give_back(self, taken: dict[tuple[str, int | None], dict[str, int]]) -> None:
        """Counts taken but not written (the database failed): counted again next time."""
        with self._lock:
            for holder, counts in taken.items():
                mine = self._counts.setdefault(holder, {})
                for kind, n in counts.items():
                    mine[kind] = mine.get(kind, 0) + n


TALLY = RequestTally()  # this process's
