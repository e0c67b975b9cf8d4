"""Continuous protection: ``cumulo backup stream`` keeps a backup folder seconds behind the home,
and ``cumulo backup restore --at TIME`` returns the platform as it was at a moment.

The stream starts from a full backup (its base) and then, every ``interval``, looks at the
databases' files: when they changed, it takes a *point* — the databases copied with SQLite's
online backup (stored in small pieces, so an unchanged page range is never stored twice), the
tables' versions at that moment, and what changed in storage since the point before (files
added or changed, with their pieces, and files removed). Storage is looked at with every point,
and at least every ``files_every`` seconds. Every ``full_every`` a new base is made (cheap: it
stores only what no backup has). What a SIGKILLed server committed before its last point is in
the folder: the recovery point is the interval plus the time a point takes.

Restoring at a time takes the last point at or before it, its base, and the changes of the
points between them; tables are cut at the versions the point's database names, and the point's
catalog of objects is made to agree with the objects' bytes (as a backup does).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cumulo.config import Settings
from cumulo.dr.backup import (
    _after_cutoff,
    _copy_sqlite,
    _lake_cutoffs,
    _objects,
    _sqlite_path,
    _store_file,
    create_backup,
    load_declarations,
)
from cumulo.dr.repo import Repository
from cumulo.dr.sources import Source, walk_files
from cumulo.errors import Invalid, NotFound
from cumulo.storage.backends.local import LocalBackend

__all__ = ["at_time", "stream"]

DB_PIECE = 256 << 10  # databases change a few pages at a time: smaller pieces, stored once


def _db_files(settings: Settings) -> dict[str, Path]:
    from cumulo.state import declared

    load_declarations()
    db = _sqlite_path(settings.database_url)
    if db is None:
        raise Invalid("continuous protection of a PostgreSQL database is PostgreSQL's own WAL "
                      "archiving (archive_command); 'cumulo backup stream' follows SQLite")
    found = {"cumulo.db": db}
    for h in declared().values():
        for name in h.databases:
            if name != "cumulo.db" and (settings.home / name).is_file():
                found[name] = settings.home / name
    return found


def _signature(files: dict[str, Path]) -> tuple[tuple[int, int], ...]:
    sig = []
    for path in files.values():
        for suffix in ("", "-wal"):
            try:
                st = Path(f"{path}{suffix}").stat()
                sig.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                sig.append((0, 0))
    return tuple(sig)


def _store_db(repo: Repository, path: Path, stats: dict[str, int]) -> list[str]:
    chunks: list[str] = []
    with open(path, "rb") as f:
        while True:
            data = f.read(DB_PIECE)
            if not data and chunks:
                break
            chunk, written = repo.put(data)
            chunks.append(chunk)
            stats["stored"] += written
            if len(data) < DB_PIECE:
                break
    return chunks


def stream(settings: Settings, repo: Repository, *, interval: float = 1.0,
           files_every: float = 5.0, full_every: float = 3600.0,
           stop: threading.Event | None = None,
           say: Callable[[str], None] = lambda _: None) -> int:
    """Follow the home until ``stop`` is set; the number of points taken."""
    stop = stop or threading.Event()
    dbs = _db_files(settings)
    if settings.storage_url.startswith("s3://"):
        raise Invalid("'cumulo backup stream' follows a local storage folder; for s3:// storage "
                      "run 'cumulo backup create' on a schedule, beside the bucket's own "
                      "versioning")
    storage = Path(settings.storage_url.removeprefix("file://"))
    taken = 0
    while not stop.is_set():
        base = create_backup(settings, repo)
        say(f"base backup {base['id']}")
        state = {f["path"]: f for f in base["files"]}
        based_at, files_at, seq = time.monotonic(), time.monotonic(), 0
        last = _signature(dbs)
        while not stop.is_set() and time.monotonic() - based_at < full_every:
            stop.wait(interval)
            sig = _signature(dbs)
            files_due = time.monotonic() - files_at >= files_every
            if sig == last and not files_due:
                continue
            last = sig
            seq += 1
            point = _point(repo, dbs, storage, base, state, seq, settings)
            files_at = time.monotonic()
            taken += 1
            say(f"point {point['at']}: {len(point['changed'])} file(s) changed, "
                f"{len(point['removed'])} removed")
    return taken


def _point(repo: Repository, dbs: dict[str, Path], storage: Path, base: dict[str, Any],
           state: dict[str, dict[str, Any]], seq: int, settings: Settings) -> dict[str, Any]:
    from cumulo.state import declared

    stats = {"stored": 0, "new_chunks": 0}
    databases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cumulo-point-") as tmp:
        for name, path in dbs.items():
            _copy_sqlite(path, Path(tmp) / name)
        moment = datetime.now(UTC)
        meta = Path(tmp) / "cumulo.db"
        cutoffs = _lake_cutoffs(meta, Source(LocalBackend(storage)))
        for name in dbs:
            copy = Path(tmp) / name
            databases[name] = {"size": copy.stat().st_size,
                               "chunks": _store_db(repo, copy, stats)}
    changed: list[dict[str, Any]] = []
    seen: set[str] = set()
    prefixes = sorted({p for h in declared().values() for p in h.prefixes})
    for prefix in prefixes:
        for rel, size, mtime_ns, _ in walk_files(storage, prefix):
            seen.add(rel)
            known = state.get(rel)
            if known and known["size"] == size and known["mtime_ns"] == mtime_ns:
                continue
            entry: dict[str, Any] = {"path": rel, "size": size, "mtime_ns": mtime_ns}
            try:
                entry["chunks"], entry["sha256"] = _store_file(
                    repo, storage / rel, stats, digest=rel.startswith("buckets/"))
            except FileNotFoundError:
                seen.discard(rel)
                continue
            state[rel] = entry
            changed.append(entry)
    removed = sorted(set(state) - seen)
    for rel in removed:
        del state[rel]
    point = {"id": moment.strftime("%Y%m%dT%H%M%S%fZ") + f"-{seq:06d}", "at": moment.isoformat(),
             "base": base["id"], "seq": seq, "databases": databases, "lake_versions": cutoffs,
             "changed": changed, "removed": removed, "prefixes": prefixes,
             "source": {"home": str(settings.home)}}
    repo.write_point(point)  # last: a point is whole or absent
    return point


def at_time(repo: Repository, when: datetime) -> dict[str, Any]:
    """A manifest of the platform as it was at ``when``: the last point at or before it (or
    the last backup, when no point is later than that backup), ready for
    :func:`cumulo.dr.backup.restore_manifest`."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    snapshots = {i: repo.snapshot(i) for i in repo.snapshot_ids()}
    best_base = max((m for m in snapshots.values()
                     if datetime.fromisoformat(m["created_at"]) <= when),
                    key=lambda m: m["created_at"], default=None)
    points = [p for p in (repo.point(i) for i in repo.point_ids())
              if datetime.fromisoformat(p["at"]) <= when and p["base"] in snapshots]
    point = max(points, key=lambda p: p["at"], default=None)
    if point is None or (best_base is not None and best_base["created_at"] > point["at"]):
        if best_base is None:
            first = min((m["created_at"] for m in snapshots.values()), default=None)
            raise NotFound(f"nothing in {repo.root} is as old as {when.isoformat()}"
                           + (f"; the oldest is {first}" if first else ""))
        return best_base
    base = snapshots[point["base"]]
    files = {f["path"]: f for f in base["files"]}
    same = sorted((p for p in (repo.point(i) for i in repo.point_ids())
                   if p["base"] == point["base"] and p["seq"] <= point["seq"]),
                  key=lambda p: p["seq"])
    for p in same:
        for entry in p["changed"]:
            files[entry["path"]] = entry
        for rel in p["removed"]:
            files.pop(rel, None)
    cutoffs = point["lake_versions"]
    kept = [f for path, f in sorted(files.items()) if not _after_cutoff(path, cutoffs)]
    return {"id": point["id"], "created_at": point["at"], "databases": point["databases"],
            "files": kept, "prefixes": point["prefixes"], "lake_versions": cutoffs,
            "source": point["source"], "totals": {"files": len(kept), "bytes": 0,
                                                  "stored_bytes": 0, "seconds": 0}}


def reconcile_restored(home: Path, manifest: dict[str, Any]) -> int:
    """After a point-in-time restore: the restored catalog made to agree with the objects'
    bytes (an object the point's catalog names whose file had not been shipped yet is left out;
    one written again since is recorded as restored)."""
    db = home / "cumulo.db"
    objects = _objects(db)
    stored = {f["path"]: f for f in manifest["files"] if f["path"].startswith("buckets/")}
    from cumulo.dr.backup import _reconcile

    changed = _reconcile(db, objects, stored)
    # Files of objects the point's catalog does not name were written after it: not restored.
    for path in set(stored) - set(objects):
        (home / "storage" / path).unlink(missing_ok=True)
    return changed
