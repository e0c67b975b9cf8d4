"""Code snapshots: a folder packed as a tar, named by the SHA-256 of its files.

The digest covers each file's path, content hash and executable bit, not the tar's bytes, so the
same folder always has the same name and an unchanged folder is never uploaded twice.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cumulo.errors import Invalid

__all__ = ["Snapshot", "digest_of", "extract", "scan", "verify"]

# Never part of a snapshot: caches, environments, version control. Add more in .cumuloignore.
EXCLUDED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".cumulo",
                 ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".tox"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
IGNORE_FILE = ".cumuloignore"
MAX_SNAPSHOT_BYTES = 2 * 2**30
MAX_SNAPSHOT_FILES = 100_000


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    sha256: str
    size: int
    executable: bool


@dataclass(frozen=True)
class Snapshot:
    folder: Path
    entries: list[Entry]

    @property
    def digest(self) -> str:
        return digest_of(self.entries)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def files(self) -> list[str]:
        return [e.path for e in self.entries]

    def write_tar(self, out: BinaryIO) -> None:
        """Pack the files, in a fixed order, with nothing of the packer's machine in them."""
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w|") as tar:
            for entry in self.entries:
                info = tarfile.TarInfo(entry.path)
                info.size = entry.size
                info.mode = 0o755 if entry.executable else 0o644
                with open(self.folder / entry.path, "rb") as f:
                    tar.addfile(info, f)


def digest_of(entries: Iterable[Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.sha256}\0{int(e.executable)}\n".encode())
    return h.hexdigest()


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _ignore_patterns(folder: Path) -> list[str]:
    path = folder / IGNORE_FILE
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def _ignored(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def scan(folder: str | os.PathLike[str]) -> Snapshot:
    """Hash a code folder's files (skipping caches, environments and .cumuloignore's patterns)."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise Invalid(f"code folder {str(folder)!r} is not a folder")
    patterns = _ignore_patterns(root)
    entries: list[Entry] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in EXCLUDED_DIRS
            and not _ignored(f"{rel_dir}/{d}".lstrip("./"), d, patterns)
        )
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name.endswith(EXCLUDED_SUFFIXES) or _ignored(rel, name, patterns):
                continue
            path = base / name
            st = path.stat()  # follows symlinks: a link's target is packed as a plain file
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if total > MAX_SNAPSHOT_BYTES:
                raise Invalid(
                    f"code folder {root} holds over {MAX_SNAPSHOT_BYTES >> 30} GiB; keep data "
                    f"out of it (use --input) or list what to skip in {IGNORE_FILE}")
            entries.append(Entry(rel, _hash_file(path), st.st_size,
                                 bool(st.st_mode & stat.S_IXUSR)))
    return Snapshot(root, sorted(entries, key=lambda e: e.path))


def verify(tar_path: Path, digest: str) -> tuple[list[str], int]:
    """Check an uploaded tar: plain files with safe names only, and the digest it claims.

    Returns the file list and total size.
    """
    entries: list[Entry] = []
    total = 0
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            for member in tar:
                name = member.name
                parts = name.split("/")
                if name.startswith("/") or ".." in parts or "\0" in name:
                    raise Invalid(f"code snapshot holds an unsafe path {name!r}")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise Invalid(f"code snapshot holds {name!r}, which is not a plain file")
                total += member.size
                if total > MAX_SNAPSHOT_BYTES or len(entries) >= MAX_SNAPSHOT_FILES:
                    raise Invalid(f"code snapshot unpacks to over {MAX_SNAPSHOT_BYTES >> 30} GiB "
                                  f"or {MAX_SNAPSHOT_FILES} files; keep data out of the code "
                                  "folder (use --input)")
                reader = tar.extractfile(member)
                assert reader is not None
                h = hashlib.sha256()
                while chunk := reader.read(1 << 20):
                    h.update(chunk)
                entries.append(Entry(name, h.hexdigest(), member.size,
                                     bool(member.mode & stat.S_IXUSR)))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Invalid(f"code snapshot is not a readable tar.gz: {exc}") from exc
    actual = digest_of(entries)
    if actual != digest:
        raise Invalid(f"code snapshot's files hash to {actual[:12]}, not the {digest[:12]} it "
                      "was sent as; upload it again")
    return sorted(e.path for e in entries), sum(e.size for e in entries)


def extract(source: BinaryIO, dest: Path) -> Path:
    """Unpack a snapshot into ``dest`` once; a concurrent or half-finished unpack is safe."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            tar.extractall(tmp, filter="data")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
