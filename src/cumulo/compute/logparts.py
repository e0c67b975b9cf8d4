"""A running local job's log, shipped to storage in parts so that any control plane reads it.

The control plane that runs a local job has its log as a growing file; the others have only the
database and storage. About every second the owner ships the bytes written since the last
time as a part (:func:`ship`), named by the offset where it begins::

    jobs/<id>/logs/attempt-N.parts/0000000000000000
    jobs/<id>/logs/attempt-N.parts/0000000000004096

Parts are never rewritten with other bytes: each begins where the one before it ends, so a
reader that has read a part to its end opens the next by name, without listing
(:class:`PartReader`). When the attempt ends, its whole log is stored as
``jobs/<id>/logs/attempt-N.log`` and the parts are removed (:func:`drop`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from cumulo.storage.backends import Backend
from cumulo.storage.leftovers import marked

__all__ = ["PART_MAX", "SHIP_EVERY_S", "PartReader", "drop", "gather", "log_key", "part_key",
           "parts", "parts_prefix", "ship", "stored_end"]

SHIP_EVERY_S = 1.0  # at most this often per job
PART_MAX = 2**20  # a burst of output becomes several parts of at most this many bytes
SHIP_MAX_PARTS = 8  # per job and ship: a job that writes faster falls behind until it ends


def log_key(job_id: str, attempt: int) -> str:
    """Where an attempt's whole log is kept once it ended."""
    return f"jobs/{job_id}/logs/attempt-{attempt}.log"


def parts_prefix(job_id: str, attempt: int) -> str:
    return f"jobs/{job_id}/logs/attempt-{attempt}.parts/"


def part_key(job_id: str, attempt: int, start: int) -> str:
    return f"{parts_prefix(job_id, attempt)}{start:016d}"


def parts(storage: Backend, job_id: str, attempt: int) -> list[tuple[int, int]]:
    """The stored parts, as (start, size), in order."""
    prefix = parts_prefix(job_id, attempt)
    found = []
    for blob in storage.walk(prefix):
        name = blob.key[len(prefix):]
        if name.isdigit():
            found.append((int(name), blob.size))
    return sorted(found)


def stored_end(storage: Backend, job_id: str, attempt: int) -> int:
    """Where the stored parts end (the first gap ends them): where shipping goes on from."""
    end = 0
    for start, size in parts(storage, job_id, attempt):
        if start > end:
            break
        end = max(end, start + size)
    return end


def ship(storage: Backend, path: Path, job_id: str, attempt: int, start: int, *,
         upto: int, part_max: int = PART_MAX, max_parts: int = SHIP_MAX_PARTS) -> int:
    """Store the log's bytes from ``start`` to ``upto`` (at most ``max_parts`` parts of at most
    ``part_max`` bytes); return where the stored parts end now. Reads only those bytes."""
    with open(path, "rb") as log:
        log.seek(start)
        for _ in range(max_parts):
            data = log.read(min(part_max, upto - start)) if start < upto else b""
            if not data:
                break
            fd, name = tempfile.mkstemp(dir=storage.spool_dir(), prefix=marked("logpart"))
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                storage.commit(tmp, part_key(job_id, attempt, start))
            finally:
                tmp.unlink(missing_ok=True)
            start += len(data)
    return start


def gather(storage: Backend, job_id: str, attempt: int, dest: Path) -> bool:
    """Write the stored parts, from the first byte to the first gap, into ``dest`` (the log of
    an attempt whose machine is gone: what was shipped of it). False: there are none."""
    found = parts(storage, job_id, attempt)
    if not found or found[0][0] != 0:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    end = 0
    with open(dest, "wb") as out:
        for start, size in found:
            if start > end:
                break
            if start + size <= end:
                continue
            with storage.open(part_key(job_id, attempt, start), offset=end - start) as part:
                while chunk := part.read(PART_MAX):
                    out.write(chunk)
                    end += len(chunk)
    return True


def drop(storage: Backend, job_id: str, attempt: int) -> None:
    storage.delete_prefix(parts_prefix(job_id, attempt))


class PartReader:
    """Reads a running attempt's stored parts from an offset, one after the other.

    :meth:`read` answers ``b""`` when nothing more is stored yet; called again later, it goes on
    from where it was. Only a reader starting inside a part lists the parts; from the end of
    a part it opens the next by name."""

    def __init__(self, storage: Backend, job_id: str, attempt: int, offset: int = 0) -> None:
        self.storage, self.job_id, self.attempt = storage, job_id, attempt
        self.offset = offset
        self._reader: BinaryIO | None = None
        self._at_boundary = offset == 0  # the first part begins at 0

    def read(self, size: int) -> bytes:
        while True:
            if self._reader is None:
                self._reader = self._open()
                if self._reader is None:
                    return b""
            data = self._reader.read(size)
            if data:
                self.offset += len(data)
                return data
            self.close()
            self._at_boundary = True  # the next part, if any, begins here

    def _open(self) -> BinaryIO | None:
        with contextlib.suppress(FileNotFoundError):
            return self.storage.open(part_key(self.job_id, self.attempt, self.offset))
        if self._at_boundary:
            return None
        for start, size in parts(self.storage, self.job_id, self.attempt):
            if start <= self.offset < start + size:
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile: it ended
                    return self.storage.open(part_key(self.job_id, self.attempt, start),
                                             offset=self.offset - start)
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
