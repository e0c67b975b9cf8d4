"""What a backend's listing gives for each blob (:meth:`cumulo.storage.backends.Backend.walk`)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Blob"]


class Blob(NamedTuple):
    """A stored blob, and what tells whether it changed since it was last seen."""

    key: str  # relative to the storage root: buckets/raw/data.csv
    size: int
    mtime_ns: int  # a file's modification time; an object's LastModified
    etag: str | None = None  # an object's ETag; None for a file
