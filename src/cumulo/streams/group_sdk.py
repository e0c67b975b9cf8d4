"""The SDK's member of a consumer group: ``client.streams.consume(name, group=...)``.

::

    with client.streams.consume("clicks", group="sessionizer") as consumer:
        for batch in consumer:            # records of one shard, in order
            for record in batch:
                handle(record["data"])
            batch.checkpoint()            # the group is done with them

A consumer holds some of the stream's shards (the server decides which: a fair share of the
group's, see :mod:`cumulo.streams.groups`), renews its leases on a thread of its own every
``renew`` seconds, and reads the shards it holds from their checkpoints. ``close()`` (or the
end of the ``with``) lets its shards go at once; a consumer that dies without closing loses
them when its leases run out (``lease`` seconds), and whoever takes them over reads again from
the last checkpoint: what was read and not checkpointed comes again (at least once).
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cumulo.client.transport import Transport
from cumulo.errors import Conflict, CumuloError

__all__ = ["Batch", "GroupConsumer"]

log = logging.getLogger("cumulo.streams")


@dataclass
class _Shard:
    counter: int
    after: str | None  # the sequence number read up to; None: from the checkpoint's start
    drained: bool = False  # a closed shard read to its end: nothing more comes


@dataclass
class Batch:
    """Records of one shard, in order: ``{"sequence_number", "partition_key", "data" (bytes),
    "arrived"}``. :meth:`checkpoint` tells the group they are done."""

    shard_id: str
    records: list[dict[str, Any]]
    millis_behind: int
    _consumer: GroupConsumer = field(repr=False)
    _counter: int = field(repr=False)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def checkpoint(self) -> bool:
        """Record that the group is done with this batch (and everything before it in the
        shard). False if the shard was taken over meanwhile: its new holder goes on from the
        last checkpoint, so these records come to it again."""
        return self._consumer._checkpoint(self.shard_id, self._counter,
                                          self.records[-1]["sequence_number"])


class GroupConsumer:
    """One member of a consumer group; iterate it for :class:`Batch` es."""

    def __init__(self, transport: Transport, name: str, group: str, *,
                 start: str = "TRIM_HORIZON", lease: float = 15.0, renew: float | None = None,
                 limit: int = 1000, wait: float = 2.0, idle: float | None = None) -> None:
        self._t = transport
        self._idle = idle  # stop iterating once no record came for this long (a batch job)
        self.name = name
        self.group = group
        self.member = uuid.uuid4().hex
        self._start = start
        self._lease = lease
        self._renew = renew if renew is not None else lease / 3
        self._limit = limit
        self._wait = wait
        self._path = f"/api/v1/streams/{name}/groups/{group}"
        self._lock = threading.Lock()
        self._shards: dict[str, _Shard] = {}
        self._valid_until = 0.0  # monotonic: past it, the leases may be someone else's
        self._closed = threading.Event()
        self._changed = threading.Event()
        self._heartbeat()  # the first one here: a wrong stream or group fails the call
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"consume-{name}-{group}")
        self._thread.start()

    @property
    def shards(self) -> list[str]:
        """The shards this consumer holds now."""
        with self._lock:
            return sorted(self._shards)

    # -- leases ----------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        sent = time.monotonic()
        doc = self._t.json("POST", self._path + "/heartbeat", json={
            "member": self.member, "label": f"{socket.gethostname()}:{os.getpid()}",
            "lease_seconds": self._lease, "start": self._start})
        held = {lease["shard_id"]: lease for lease in doc["leases"]}
        with self._lock:
            for shard_id in [s for s in self._shards if s not in held]:
                del self._shards[shard_id]  # taken over, or done
            for shard_id, lease in held.items():
                mine = self._shards.get(shard_id)
                if mine is None or mine.counter != lease["counter"]:
                    # New to us (or lost and taken again): from the group's checkpoint.
                    self._shards[shard_id] = _Shard(lease["counter"], lease["checkpoint"])
                    self._changed.set()
            self._valid_until = sent + self._lease

    def _run(self) -> None:
        while not self._closed.wait(self._renew):
            try:
                self._heartbeat()
            except Exception as exc:  # the renewals go on: a bad call must not end them
                log.warning("consumer %s of %s/%s could not renew its leases: %s",
                            self.member, self.name, self.group, exc)
                if time.monotonic() >= self._valid_until:
                    with self._lock:
                        self._shards.clear()  # they run out: someone else reads them now

    def _checkpoint(self, shard_id: str, counter: int, sequence_number: str) -> bool:
        try:
            self._t.json("POST", self._path + "/checkpoint", json={
                "member": self.member, "shard_id": shard_id, "counter": counter,
                "sequence_number": sequence_number})
        except Conflict:
            with self._lock:
                mine = self._shards.get(shard_id)
                if mine is not None and mine.counter == counter:
                    del self._shards[shard_id]
            return False
        return True

    # -- reading ---------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        quiet_since = time.monotonic()
        while not self._closed.is_set():
            if self._idle is not None and time.monotonic() - quiet_since >= self._idle:
                return  # caught up: nothing came for `idle` seconds
            with self._lock:
                valid = time.monotonic() < self._valid_until
                ready = [(s, self._shards[s].counter, self._shards[s].after)
                         for s in sorted(self._shards) if not self._shards[s].drained] \
                    if valid else []
            if not ready:
                self._changed.wait(min(self._renew, self._wait))
                self._changed.clear()
                continue
            for shard_id, counter, after in ready:
                batch = self._read(shard_id, counter, after, self._wait / len(ready))
                if batch is not None:
                    yield batch
                    quiet_since = time.monotonic()
                if self._closed.is_set():
                    return

    def _read(self, shard_id: str, counter: int, after: str | None,
              wait: float) -> Batch | None:
        if after == "SHARD_END":
            return None
        params: dict[str, Any] = {"shard": shard_id, "limit": self._limit, "wait": wait}
        if after is None:
            params["from"] = "TRIM_HORIZON"
        else:
            params.update({"from": "AFTER_SEQUENCE_NUMBER", "sequence": after})
        page = self._t.json("GET", f"/api/v1/streams/{self.name}/records", params=params)
        records = [{"sequence_number": r["sequence_number"], "arrived": r["arrived"],
                    "partition_key": r["partition_key"],
                    "data": base64.b64decode(r["data_base64"])} for r in page["records"]]
        with self._lock:
            mine = self._shards.get(shard_id)
            if mine is None or mine.counter != counter:
                return None  # lost while reading: its new holder reads these
            if records:
                mine.after = records[-1]["sequence_number"]
            elif page["iterator"] is None:
                mine.drained = True  # the server lets the lease go at the group's SHARD_END
        if not records:
            return None
        return Batch(shard_id, records, page["millis_behind"], self, counter)

    def close(self) -> None:
        """Stop, and let this consumer's shards go at once (to the group's other members,
        from the checkpoints)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._changed.set()
        self._thread.join(10)
        try:
            self._t.json("DELETE", f"{self._path}/members/{self.member}")
        except CumuloError as exc:  # the leases run out by themselves
            log.warning("consumer %s could not let its leases go: %s", self.member, exc)

    def __enter__(self) -> GroupConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
