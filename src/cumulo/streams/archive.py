"""Old segments of the embedded log in the storage backend (local or S3), so a shard's disk
holds only its recent records: a sealed segment whose newest record is older than the
``stream_archive_seconds`` setting is copied to ``streams/STREAM/SHARD/NAME.seg`` in storage
and removed from the shard's folder (:meth:`cumulo.streams.log.ShardLog.trim` does it, on
each retention pass). A read of its records fetches it back into a small local cache
(``<home>/streams-cache``, the least recently used segments dropped past ``keep``).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cumulo.storage.backends import Backend

__all__ = ["PREFIX", "SegmentArchive", "ShardArchive"]

PREFIX = "streams/"  # in storage; declared in streams/models.py, so backups take it


class SegmentArchive:
    """Segments in ``storage`` under :data:`PREFIX`, fetched back into ``cache``."""

    def __init__(self, storage: Backend, cache: Path, *, after: float, keep: int = 16) -> None:
        self.storage = storage
        self.after = after
        self._cache = Path(cache)
        self._keep = keep
        self._lock = threading.Lock()

    def shard(self, stream: str, shard: str) -> ShardArchive:
        return ShardArchive(self, stream, shard)

    def drop_stream(self, stream: str) -> None:
        self.storage.delete_prefix(f"{PREFIX}{stream}/")
        shutil.rmtree(self._cache / stream, ignore_errors=True)

    def _evict(self) -> None:
        """Keep the ``keep`` most recently used segments of the cache."""
        with self._lock:
            files = sorted(self._cache.glob("*/*/*.seg"), key=_used)
            for path in files[:max(0, len(files) - self._keep)]:
                path.unlink(missing_ok=True)


class ShardArchive:
    """One shard's archived segments (what :class:`cumulo.streams.log.ShardLog` calls)."""

    def __init__(self, owner: SegmentArchive, stream: str, shard: str) -> None:
        self._owner = owner
        self.after = owner.after
        self._prefix = f"{PREFIX}{stream}/{shard}/"
        self._cache = owner._cache / stream / shard

    def put(self, path: Path, name: str) -> None:
        """Copy a sealed segment into storage (whole, or not at all)."""
        spool = self._owner.storage.spool_dir()
        spool.mkdir(parents=True, exist_ok=True)
        tmp = spool / f".segment-{uuid.uuid4().hex}"
        try:
            shutil.copyfile(path, tmp)
            self._owner.storage.commit(tmp, self._prefix + name)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stub(self, name: str, stub: bytes) -> None:
        """Keep a segment's summary beside it, so a new home finds it (a restored backup)."""
        spool = self._owner.storage.spool_dir()
        spool.mkdir(parents=True, exist_ok=True)
        tmp = spool / f".stub-{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(stub)
            self._owner.storage.commit(tmp, self._prefix + name)
        finally:
            tmp.unlink(missing_ok=True)

    def stubs(self) -> dict[str, bytes]:
        """The summaries of the shard's archived segments, by name."""
        found = {}
        for blob in self._owner.storage.walk(self._prefix):
            name = blob.key.removeprefix(self._prefix)
            if name.endswith(".arc"):
                with self._owner.storage.open(blob.key) as f:
                    found[name] = f.read()
        return found

    def fetch(self, name: str) -> Path:
        """A local copy of an archived segment (from the cache, or fetched into it)."""
        path = self._cache / name
        if path.exists():
            os.utime(path)
            return path
        self._cache.mkdir(parents=True, exist_ok=True)
        tmp = self._cache / f".{name}.{uuid.uuid4().hex}"
        try:
            with self._owner.storage.open(self._prefix + name) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._owner._evict()
        return path

    def drop(self, name: str) -> None:
        """Retention took the segment: out of storage and the cache."""
        self._owner.storage.delete(self._prefix + name.removesuffix(".seg") + ".arc")
        self._owner.storage.delete(self._prefix + name)
        (self._cache / name).unlink(missing_ok=True)


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
