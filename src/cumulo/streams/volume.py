"""How much a stream received after a point: what a pipeline's trigger on a stream's volume
counts (``cumulo pipelines schedule NAME --on-stream clicks --every 1000``).

A point is, per shard, the last sequence counted (as the shard's log numbers its records,
from 1; 0 before the first). Records are counted from the sequences alone; bytes are the
records' data, read from the logs, each record once: a caller keeps the point it was given
back and counts on from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cumulo.streams import service
from cumulo.streams.service import StreamEngine

__all__ = ["Volume", "count", "newest", "sequence_ranges"]

MAX_BYTES_A_COUNT = 64 << 20  # data read by one count, at most: the rest waits for the next


@dataclass(frozen=True)
class Volume:
    """What came after a point: records and bytes, and the point counted up to."""

    records: int
    bytes: int
    counted: dict[str, int]


def newest(session: Session, engine: StreamEngine, name: str) -> dict[str, int]:
    """Each shard's newest sequence now: a count from here takes what comes from now on."""
    stream = service.get_stream(session, name)
    return {shard.shard_id: engine.logs.shard(name, shard.shard_id).next_seq - 1
            for shard in service.shards_of(session, stream)}


def count(session: Session, engine: StreamEngine, name: str, after: dict[str, int], *,
          with_bytes: bool, max_bytes: int = MAX_BYTES_A_COUNT) -> Volume:
    """Records after ``after`` in each shard (a shard it does not name, such as a split's
    child, from its first record), and with ``with_bytes`` their bytes of data (records
    dropped by retention before they were counted count as records, not as bytes)."""
    stream = service.get_stream(session, name)
    counted = dict(after)
    records = size = 0
    budget = max_bytes
    for shard in service.shards_of(session, stream):
        log = engine.logs.shard(name, shard.shard_id)
        start, end = after.get(shard.shard_id, 0), log.next_seq - 1
        if end <= start:
            continue
        upto = end
        if with_bytes:
            upto = start
            while upto < end and budget > 0:
                got = log.read(upto + 1, limit=10_000, max_bytes=min(budget, 8 << 20))
                got = [r for r in got if r.seq <= end]
                if not got:
                    upto = end  # dropped by retention meanwhile: nothing left to read
                    break
                read = sum(len(r.data) for r in got)
                size, budget, upto = size + read, budget - read, got[-1].seq
        records += upto - start
        counted[shard.shard_id] = upto
    return Volume(records, size, counted)


def sequence_ranges(session: Session, name: str, start: dict[str, int],
                    end: dict[str, int]) -> dict[str, list[str]]:
    """The records between two points, per shard: its first and last sequence numbers as
    the API shows them (``cumulo streams get --from SEQUENCE``), for shards that have any."""
    shards = {s.shard_id: s for s in service.shards_of(session, service.get_stream(session,
                                                                                  name))}
    ranges = {}
    for shard_id, last in sorted(end.items()):
        first = start.get(shard_id, 0) + 1
        shard = shards.get(shard_id)
        if shard is not None and last >= first:
            ranges[shard_id] = [service.external_seq(shard, first),
                                service.external_seq(shard, last)]
    return ranges
