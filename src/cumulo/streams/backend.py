"""Where streams keep their records: the embedded log on local disk (the default) or NATS
JetStream, behind one small interface, chosen by the ``streams_url`` setting.

The engine (:mod:`cumulo.streams.service`) and every reader (push subscriptions, consumer
groups, delivery, scoring) see a shard's records only through :class:`ShardStore`: sequences
start at 1 and grow by one a record, without gaps, until retention drops the oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cumulo.errors import Invalid
from cumulo.streams.log import Archives, Record

__all__ = ["LogBackend", "Record", "ShardStore", "open_log_backend"]


class ShardStore(Protocol):
    """One shard's records. Thread-safe."""

    @property
    def first_seq(self) -> int:
        """The oldest kept record's seq (next_seq when none is kept)."""

    @property
    def next_seq(self) -> int:
        """The seq the next record appended will get."""

    def append(self, records: Sequence[tuple[str, bytes, int]]) -> list[tuple[int, float]]:
        """Append (partition key, data, hash key) records; return each one's (seq, arrival
        time) once the store has them durably."""

    def read(self, start_seq: int, *, limit: int = 10_000,
             max_bytes: int = 10 << 20) -> list[Record]:
        """Records from ``start_seq`` on (or from the oldest kept one, if later), in order and
        without gaps: at most ``limit`` and about ``max_bytes`` of data, at least one if any."""

    def seq_at(self, when: float) -> int:
        """The first kept record's seq that arrived at ``when`` or later (next_seq if none)."""

    def wait(self, after_seq: int, timeout: float) -> bool:
        """Block until a record past ``after_seq`` exists (True) or ``timeout`` passes."""

    def watch(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(True)`` when records are appended and ``callback(False)`` on
        :meth:`nudge` or close (quick, non-blocking callbacks); returns what stops it."""

    def nudge(self) -> None:
        """Wake the watchers though no record came (the shard was closed by a reshard)."""

    def trim(self, before: float) -> int:
        """Retention: drop records that arrived before ``before``; return about how many."""

    def stats(self) -> dict[str, int]:
        """``records``, ``bytes`` (of data), ``first_seq`` and ``next_seq``."""


class LogBackend(Protocol):
    """The shards' stores, by (stream name, shard id), opened on first use."""

    url: str

    def shard(self, stream: str, shard: str) -> ShardStore: ...

    def drop_stream(self, stream: str) -> None:
        """Delete every shard's records of a stream."""

    def close(self) -> None: ...


def open_log_backend(url: str, home: Path, *, archive: Archives | None = None) -> LogBackend:
    """The backend ``url`` names: empty for the embedded log under ``<home>/streams`` (its
    old segments moved to ``archive``, if given), ``nats://HOST:PORT`` (or ``tls://``) for
    NATS JetStream (imported only then; JetStream keeps its own files)."""
    if not url:
        from cumulo.streams.log import LogStore

        return LogStore(home / "streams", archive=archive)
    if url.startswith(("nats://", "tls://")):
        from cumulo.streams.jetstream import JetStreamStore

        return JetStreamStore(url)
    raise Invalid(f"streams_url {url!r} is not one Cumulo knows: leave it empty for the "
                  "embedded log, or give nats://HOST:4222 for NATS JetStream")
