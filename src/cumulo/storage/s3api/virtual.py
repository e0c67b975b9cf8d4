"""Read-only buckets the S3 API serves from something other than storage's buckets: the lake's
tables (``lake``, registered by :mod:`cumulo.lake.s3view`). A service registers one by name;
the S3 app lists and reads it, and refuses every write into it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlalchemy.orm import Session

from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = ["VirtualBucket", "VirtualObject", "get", "names", "register"]


class VirtualObject(NamedTuple):
    key: str  # within the bucket
    size: int
    modified: datetime
    etag: str  # quoted
    blob: str  # its storage key, to read it from
    content_type: str = "application/octet-stream"


class VirtualBucket(Protocol):
    def list(self, session: Session, backend: Backend, principal: Principal, prefix: str,
             delimiter: str | None) -> tuple[list[VirtualObject], list[str]]:
        """What the caller may read under ``prefix``, sorted by key, and (with a delimiter) the
        common prefixes it rolls up into where the bucket knows them cheaply (it may instead
        list the objects under them)."""

    def get(self, session: Session, backend: Backend, principal: Principal,
            key: str) -> VirtualObject:
        """One object, if the caller may read it; NotFound or Forbidden otherwise."""


_BUCKETS: dict[str, Callable[[], VirtualBucket]] = {}


def register(name: str, make: Callable[[], VirtualBucket]) -> None:
    _BUCKETS[name] = make


def names() -> list[str]:
    return sorted(_BUCKETS)


def get(name: str) -> VirtualBucket | None:
    make = _BUCKETS.get(name)
    return make() if make is not None else None
