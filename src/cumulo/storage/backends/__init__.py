"""Where object bytes live: a local folder or S3, behind one small interface.

Backends store blobs under storage keys such as ``buckets/data/raw/a.csv``. They know nothing
of the metadata database; :mod:`cumulo.storage.service` keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from starlette.requests import Request

from cumulo.config import Settings
from cumulo.errors import Invalid
from cumulo.services import services
from cumulo.storage.backends.blob import Blob

__all__ = ["Backend", "Blob", "open_backend", "request_backend"]


class Backend(Protocol):
    kind: str
    url: str

    def check(self) -> None:
        """Raise Unavailable with a clear message when the storage cannot be used."""

    def spool_dir(self) -> Path:
        """A local folder for uploads in flight (on the same file system, where that matters)."""

    def commit(self, tmp: Path, key: str) -> None:
        """Make the finished upload at ``tmp`` visible at ``key``, all at once."""

    def open(self, key: str, *, offset: int = 0) -> BinaryIO:
        """A reader of the blob at ``key`` from ``offset``: it reads nothing when ``offset`` is
        at or past the end, and FileNotFoundError says there is no such blob."""

    def delete(self, key: str) -> None:
        """Remove a blob; a missing blob is not an error."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under a prefix ending in '/'."""

    def walk(self, prefix: str) -> Iterator[Blob]:
        """Every blob under a prefix ending in '/' (uploads in flight left out), in key order
        within each folder; blobs removed while walked are left out."""

    def local_path(self, key: str) -> Path | None:
        """The blob's file, when the backend keeps blobs as local files; else None."""

    def arrow_path(self, key: str) -> tuple[Any, str]:
        """A pyarrow file system and the path of ``key`` on it, for Arrow datasets."""

    def table_uri(self, key: str) -> tuple[str, dict[str, str] | None]:
        """Where a Delta table under ``key`` lives, as a URI and the storage options that
        deltalake needs to reach it."""


def request_backend(request: Request) -> Backend:
    """FastAPI dependency: the storage backend the server was started with."""
    return services(request).storage


def open_backend(settings: Settings) -> Backend:
    url = settings.storage_url
    if url.startswith("s3://"):
        from cumulo.storage.backends.s3 import S3Backend

        return S3Backend(url, settings.s3, spool=settings.home / "tmp")
    if "://" in url and not url.startswith("file://"):
        raise Invalid(
            f"storage URL {url!r} is not supported; use a folder path, file:///path "
            "or s3://bucket/prefix"
        )
    from cumulo.storage.backends.local import LocalBackend

    return LocalBackend(Path(url.removeprefix("file://")))
