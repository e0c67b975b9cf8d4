"""Objects as files in a folder: ``<root>/buckets/<bucket>/<key>``."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cumulo.errors import Conflict, Unavailable
from cumulo.storage.backends.blob import Blob

__all__ = ["LocalBackend"]


class LocalBackend:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):  # keys are validated before; this is a last guard
            raise Conflict(f"storage key {key!r} escapes the storage root")
        return path

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.spool_dir().mkdir(exist_ok=True)
            probe = self.spool_dir() / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise Unavailable(f"cannot use the storage folder {self.root}: {exc.strerror}") from exc

    def spool_dir(self) -> Path:
        # Inside the root, so the final rename never crosses a file system.
        return self.root / ".tmp"

    def commit(self, tmp: Path, key: str) -> None:
        path = self._path(key)
        try:
            for attempt in range(3):
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, path)
                    break
                except FileNotFoundError:
                    # A delete pruned the empty folder between mkdir and rename: make it again.
                    if attempt == 2 or not tmp.exists():
                        raise
        except (NotADirectoryError, FileExistsError) as exc:
            raise Conflict(
                f"cannot store {key.split('/', 2)[-1]!r}: part of its path is an existing object; "
                "local storage cannot hold both 'a' and 'a/b' as objects"
            ) from exc
        except IsADirectoryError as exc:
            raise Conflict(
                f"cannot store {key.split('/', 2)[-1]!r}: objects already exist under it as a "
                "folder; local storage cannot hold both 'a' and 'a/b' as objects"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise Unavailable("the storage disk is full") from exc
            raise

    def open(self, key: str, *, offset: int = 0) -> BinaryIO:
        f = open(self._path(key), "rb")  # noqa: SIM115 - the caller closes it
        if offset:
            f.seek(offset)
        return f

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path)
        self._prune(path.parent)

    def walk(self, prefix: str) -> Iterator[Blob]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".tmp"))  # uploads in flight
            for name in sorted(files):
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue  # removed while walked
                if not os.path.islink(full):
                    yield Blob(os.path.relpath(full, self.root), st.st_size, st.st_mtime_ns)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def arrow_path(self, key: str) -> tuple[Any, str]:
        from pyarrow import fs

        return fs.LocalFileSystem(), str(self._path(key))

    def table_uri(self, key: str) -> tuple[str, dict[str, str] | None]:
        return str(self._path(key)), None

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the bucket's own folder."""
        buckets = self.root / "buckets"
        while folder != buckets and folder.parent != buckets and folder.is_relative_to(buckets):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent
