"""A job's checkpoint folder, kept in storage from one attempt of the job to the next.

``cumulo.job.checkpoint_dir`` outlives an attempt: when an attempt ends, whatever its outcome,
the supervisor stores the folder under ``jobs/<id>/checkpoints/``, and before the next attempt
(a retry after a failure, or ``cumulo jobs retry`` after a cancel) it puts the folder back: the
copy still on this disk if there is one, else the stored one, so a retry works after a restart
of the control plane too. A job on a Ray cluster sends its folder through the API instead.

Storage cannot list, so the stored files are named in a manifest beside them,
``jobs/<id>/checkpoints.json``, always written after the files it names.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.errors import Invalid, NotFound
from cumulo.storage.backends import Backend

__all__ = ["check_path", "file_key", "keep", "read_manifest", "restore", "write_manifest"]

# Beside the local folder (not in it, where the job would see it): what of it is in storage.
STAMP = "checkpoints.stored.json"


def file_key(job_id: str, rel: str) -> str:
    return f"jobs/{job_id}/checkpoints/{rel}"


def _manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoints.json"


def check_path(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise Invalid(f"checkpoint path {rel!r} must be relative, without '..'")
    return rel


def _missing(exc: Exception) -> bool:
    """Whether storage said the blob is not there (a local file, or S3's NoSuchKey)."""
    if isinstance(exc, FileNotFoundError | NotFound):
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError, not imported here
    return isinstance(response, dict) and \
        response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


def read_manifest(storage: Backend, job_id: str) -> dict[str, int]:
    """The stored checkpoint files and their sizes; empty when none were ever stored."""
    try:
        reader = storage.open(_manifest_key(job_id))
    except Exception as exc:
        if _missing(exc):
            return {}
        raise
    with reader:
        files: dict[str, int] = json.loads(reader.read())["files"]
    return files


def write_manifest(storage: Backend, job_id: str, files: dict[str, int]) -> None:
    """Name the stored files (stored already); remove the stored files no longer named."""
    before = read_manifest(storage, job_id)
    tmp = storage.spool_dir() / f"checkpoints-{job_id}-{secrets.token_hex(4)}.json"
    tmp.write_text(json.dumps({"files": files}, sort_keys=True))
    try:
        storage.commit(tmp, _manifest_key(job_id))
    finally:
        tmp.unlink(missing_ok=True)
    for rel in sorted(set(before) - set(files)):
        storage.delete(file_key(job_id, rel))


def _stat(folder: Path) -> dict[str, list[int]]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            found[path.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns]
    return found


def _read_stamp(folder: Path) -> dict[str, Any]:
    """Which attempt left the folder as it is, and its files as stored (size, mtime)."""
    try:
        stamp: dict[str, Any] = json.loads((folder.parent / STAMP).read_text())
    except (OSError, ValueError):
        return {"attempt": None, "files": {}}
    return stamp


def _write_stamp(folder: Path, attempt: int | None, files: dict[str, list[int]]) -> None:
    path = folder.parent / STAMP
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"attempt": attempt, "files": files}))
    os.replace(tmp, path)


def keep(storage: Backend, job_id: str, attempt: int, folder: Path,
         store: Callable[[Path, str], None]) -> None:
    """At the end of ``attempt``: store the files of ``folder`` that changed since it was last
    stored, then the manifest.

    ``store(path, key)`` puts one file into storage and leaves the original in place."""
    if not folder.is_dir():
        return  # a remote job sends its checkpoints itself; or a restore never finished
    stored: dict[str, list[int]] = _read_stamp(folder)["files"]
    now = _stat(folder)
    if now != stored:  # most jobs never write a checkpoint: nothing to store
        for rel, seen in now.items():
            if stored.get(rel) != seen:
                store(folder / rel, file_key(job_id, rel))
        write_manifest(storage, job_id, {rel: seen[0] for rel, seen in now.items()})
    _write_stamp(folder, attempt, now)


def restore(storage: Backend, job_id: str, folder: Path, *, after: int) -> int | None:
    """Give ``folder`` the checkpoints that attempt ``after`` left. When that attempt ran on
    this machine, the folder is them already; else (the job ended and its folder was tidied
    away, or it ran elsewhere) they are fetched from storage. Returns how many files were
    fetched; None when none needed fetching.

    Fetched beside the folder and renamed when complete: a restore cut short leaves no
    folder, and so is never taken for the whole of it (and stored over it) when the attempt
    ends."""
    if folder.is_dir() and _read_stamp(folder)["attempt"] == after:
        return None
    shutil.rmtree(folder, ignore_errors=True)
    files = read_manifest(storage, job_id)
    partial = folder.with_name(folder.name + ".restoring")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for rel in files:
        target = partial / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open(file_key(job_id, rel)) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    partial.rename(folder)
    _write_stamp(folder, after, _stat(folder))
    return len(files)
