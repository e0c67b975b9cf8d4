"""Backing up a Cumulo home, checking a backup, and restoring it.

A backup is one moment: the metadata database and MLflow's are copied first, and that moment is
the backup's time. SQLite files are copied with SQLite's online backup (a consistent copy while
the server keeps writing); a PostgreSQL database is read in one read-only snapshot into SQLite
files of the same shape (:mod:`cumulo.dr.sources`), so that a backup is the same whatever the
home runs on. Then every storage prefix a service declares (:mod:`cumulo.state`) is copied from
the storage root (a folder, or an S3 bucket's prefix), cut into chunks that are stored once
(:mod:`cumulo.dr.repo`). What was written after the moment is left out where it would disagree
with the databases: a Delta table's log entries past the version it had at the moment (the table
is restored as it was then; data files only a later version names are harmless extras), and a
bucket's object the catalog copy does not name. A file seen in the previous backup with the same
size and modification time (and, for an object, ETag) is taken from it without being read
again, as restic does.

Restore writes a home: the databases, and the storage root's files, each piece checked against
its checksum. A missing or corrupt piece does not stop the rest: the files it belongs to are
named, and the restore says it is incomplete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cumulo.config import Settings
from cumulo.dr.repo import CHUNK_SIZE, CorruptChunk, Repository
from cumulo.dr.sources import (
    LOG_ENTRY,
    Reader,
    Source,
    copy_postgres,
    open_source,
    walk_files,
)
from cumulo.errors import Conflict, Invalid, Unavailable
from cumulo.storage.backends import Blob

__all__ = ["Problem", "Progress", "create_backup", "restore_backup", "restore_manifest",
           "verify_backup"]

WORKERS = max(2, min(4, os.cpu_count() or 2))  # files backed up or restored at once

Progress = Callable[[str, int, int], None]  # (what, files done, bytes done)


def _quiet(what: str, files: int, size: int) -> None:
    return None


@dataclass
class Problem:
    item: str  # the file or database the piece belongs to
    chunk: str
    why: str


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def _copy_sqlite(source: Path, dest: Path) -> None:
    """SQLite's online backup: a consistent copy while others write."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst, pages=4096)
    finally:
        dst.close()
        src.close()


def load_declarations() -> None:
    """Import every service's models, and so their declarations (cumulo.state).
    tests/test_state.py checks that these are all there are: a new service is added here, or
    its state is not backed up."""
    import cumulo.access.models
    import cumulo.compute.models
    import cumulo.dr.models
    import cumulo.lake.models
    import cumulo.metering.models
    import cumulo.ml.models
    import cumulo.notebooks.models
    import cumulo.pipelines.models
    import cumulo.serving.models
    import cumulo.serving.monitors.models
    import cumulo.storage.models
    import cumulo.streams.models  # noqa: F401


def _store(repo: Repository, f: Reader, stats: dict[str, int], *,
           digest: bool = False) -> tuple[list[str], str | None]:
    """Store what ``f`` reads, in pieces: their ids, and (``digest``) the SHA-256 of the
    whole."""
    chunks: list[str] = []
    whole = hashlib.sha256() if digest else None
    while True:
        data = f.read(CHUNK_SIZE)
        if not data and chunks:
            break
        if whole is not None:
            whole.update(data)
        chunk, written = repo.put(data)
        chunks.append(chunk)
        stats["stored"] += written
        stats["new_chunks"] += 1 if written else 0
        if len(data) < CHUNK_SIZE:
            break
    return chunks, whole.hexdigest() if whole is not None else None


def _store_file(repo: Repository, path: Path, stats: dict[str, int], *,
                digest: bool = False) -> tuple[list[str], str | None]:
    """Store a file's pieces: their ids, and (``digest``) the SHA-256 of the whole."""
    with open(path, "rb") as f:
        return _store(repo, f, stats, digest=digest)


def _objects(db: Path) -> dict[str, tuple[int, str]]:
    """Bucket objects as the catalog copy has them: blob path -> (size, SHA-256)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select b.name, o.key, o.size, o.sha256 from objects o "
                           "join buckets b on b.id = o.bucket_id")
        return {f"buckets/{bucket}/{key}": (size, sha) for bucket, key, size, sha in rows}
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def _reconcile(db: Path, objects: dict[str, tuple[int, str]],
               stored: dict[str, dict[str, Any]]) -> int:
    """Make the catalog copy agree with the objects' bytes the backup read: an object read
    with other bytes than the catalog had at the moment (written again since) is recorded as
    read; one whose blob was gone (deleted since) is left out. The number changed."""
    changed = 0
    con = sqlite3.connect(db)
    try:
        for path, (size, sha) in objects.items():
            found = stored.get(path)
            bucket, _, key = path.removeprefix("buckets/").partition("/")
            where = ("where key = ? and bucket_id = (select id from buckets where name = ?)")
            if found is None:
                con.execute(f"delete from objects {where}", (key, bucket))
                changed += 1
            elif found.get("sha256") not in (None, sha) or found["size"] != size:
                con.execute(f"update objects set size = ?, sha256 = ? {where}",
                            (found["size"], found.get("sha256") or sha, key, bucket))
                changed += 1
        con.commit()
    finally:
        con.close()
    return changed


def _lake_cutoffs(db: Path, source: Source) -> dict[str, int]:
    """Each Delta table's latest log version at the moment of the backup (by location)."""
    cutoffs: dict[str, int] = {}
    con = sqlite3.connect(db)
    try:
        locations = [row[0] for row in con.execute("select location from lake_tables")]
    except sqlite3.Error:
        locations = []
    finally:
        con.close()
    for location in locations:
        cutoffs[location.rstrip("/")] = max(source.log_versions(location), default=-1)
    return cutoffs


def _after_cutoff(path: str, cutoffs: dict[str, int]) -> bool:
    head, sep, name = path.rpartition("/_delta_log/")
    if not sep:
        return False
    match = LOG_ENTRY.match(name)
    return match is not None and head in cutoffs and int(match.group(1)) > cutoffs[head]


def create_backup(settings: Settings, repo: Repository, *,
                  progress: Progress = _quiet) -> dict[str, Any]:
    """Back up the home ``settings`` describe into ``repo``; the snapshot's manifest. A target
    that fills up stops it with a clear error; the backups before it stay whole."""
    try:
        return _create_backup(settings, repo, progress=progress)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from cumulo.dr.repo import free_bytes

        free = (f" ({free_bytes(repo.root) / 2**20:.0f} MiB free)"
                if isinstance(repo.root, Path) else "")
        raise Unavailable(
            f"the backup target {repo.root} is full{free}: this backup was not made, and the "
            "ones before it are whole. Free space "
            "('cumulo backup prune --keep-last N' frees what older backups alone hold) or back "
            "up to a bigger target") from exc


def _copy_databases(settings: Settings, dest: Path) -> tuple[list[str], datetime]:
    """The moment: every database copied into ``dest``, first, one after the other (from
    SQLite files with SQLite's online backup; from PostgreSQL in one snapshot). The names
    copied, and the moment."""
    from cumulo.state import declared

    db_path = _sqlite_path(settings.database_url)
    moment = None
    if db_path is None:
        names, moment = copy_postgres(settings.database_url, dest)
        covered = {"cumulo.db", "mlflow.db"}  # MLflow's is on PostgreSQL too
    else:
        if not db_path.is_file():
            raise Invalid(f"no Cumulo database at {db_path}; is --home the server's home?")
        _copy_sqlite(db_path, dest / "cumulo.db")
        names, covered = ["cumulo.db"], {"cumulo.db"}
    for name in sorted({n for h in declared().values() for n in h.databases} - covered):
        found = settings.home / name
        if found.is_file():
            _copy_sqlite(found, dest / name)
            names.append(name)
    # SQLite's online backup copies a database as it is when the copy ends: the moment is
    # after the last one.
    return names, moment or datetime.now(UTC)


def _create_backup(settings: Settings, repo: Repository, *,
                   progress: Progress = _quiet) -> dict[str, Any]:
    import cumulo
    from cumulo.state import declared

    load_declarations()
    started = time.monotonic()
    source = open_source(settings)
    prefixes = sorted({p for h in declared().values() for p in h.prefixes})
    stats = {"stored": 0, "new_chunks": 0, "files": 0, "bytes": 0, "reused": 0}
    databases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cumulo-backup-") as tmp:
        names, moment = _copy_databases(settings, Path(tmp))
        progress("databases", 0, 0)
        meta = Path(tmp) / "cumulo.db"
        cutoffs = _lake_cutoffs(meta, source)
        objects = _objects(meta)
        wanted = [found for prefix in prefixes for found in source.walk(prefix)
                  if _in_backup(found.key, cutoffs, objects)]
        files = _store_files(repo, source, wanted, _Context(
            _previous_files(repo), objects, (moment.timestamp() - 1) * 1e9), stats, progress)
        # An object written again (or deleted) after the moment: the backup holds the bytes
        # it read, and its copy of the catalog says so, so that the two agree.
        changed = _reconcile(meta, objects, {f["path"]: f for f in files
                                             if f["path"].startswith("buckets/")})
        for name in names:
            copy = Path(tmp) / name
            size = copy.stat().st_size
            databases[name] = {"size": size, "chunks": _store_file(repo, copy, stats)[0]}
    snapshot_id = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z-" + \
        secrets.token_hex(3)
    manifest = {
        "id": snapshot_id, "created_at": moment.isoformat(), "complete": True,
        "cumulo": getattr(cumulo, "__version__", "unknown"),
        "source": {"home": str(settings.home),
                   "database": "sqlite" if _sqlite_path(settings.database_url) else "postgresql",
                   "storage": settings.storage_url},
        "databases": databases, "prefixes": prefixes, "files": files,
        "lake_versions": cutoffs, "objects_changed_during_backup": changed,
        "totals": {"files": stats["files"], "bytes": stats["bytes"]
                   + sum(d["size"] for d in databases.values()),
                   "stored_bytes": stats["stored"], "new_chunks": stats["new_chunks"],
                   "reused_files": stats["reused"],
                   "seconds": round(time.monotonic() - started, 3)},
    }
    repo.write_snapshot(manifest)  # last: only now is the backup listed
    progress("done", stats["files"], stats["bytes"])
    return manifest


def _in_backup(path: str, cutoffs: dict[str, int], objects: dict[str, tuple[int, str]]) -> bool:
    if _after_cutoff(path, cutoffs):
        return False  # committed after the moment: not in this backup
    # A bucket's file the catalog copy does not name: an object made after the moment (or an
    # upload's leftover).
    return not path.startswith("buckets/") or path in objects


@dataclass(frozen=True)
class _Context:
    """What deciding how to back up one file needs to know."""

    previous: dict[str, dict[str, Any]]  # the last backup's files, by path
    objects: dict[str, tuple[int, str]]  # the catalog copy's objects: path -> (size, SHA-256)
    later_ns: float  # written after this (the moment less a second's slack): maybe changed


def _store_files(repo: Repository, source: Source, wanted: list[Blob], ctx: _Context,
                 stats: dict[str, int], progress: Progress) -> list[dict[str, Any]]:
    """Back up each file (a few at a time: hashing, compressing and writing pieces release the
    GIL); the manifest's entries, less files removed since they were listed."""
    lock = threading.Lock()

    def one(found: Blob) -> dict[str, Any] | None:
        mine = {"stored": 0, "new_chunks": 0, "reused": 0}
        entry = _back_up_file(repo, source, found, ctx, mine)
        if entry is None:
            return None
        with lock:
            for k, v in mine.items():
                stats[k] += v
            stats["files"] += 1
            stats["bytes"] += found.size
            if stats["files"] % 200 == 0:
                progress("files", stats["files"], stats["bytes"])
        return entry

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [e for e in pool.map(one, wanted) if e is not None]


def _back_up_file(repo: Repository, source: Source, found: Blob, ctx: _Context,
                  mine: dict[str, int]) -> dict[str, Any] | None:
    """One file's manifest entry: the previous backup's pieces when the file is unchanged
    since (same size, time and ETag, as restic does), else its pieces stored now."""
    entry: dict[str, Any] = {"path": found.key, "size": found.size, "mtime_ns": found.mtime_ns}
    if found.etag is not None:
        entry["etag"] = found.etag
    before = ctx.previous.get(found.key)
    if before and before["size"] == found.size and before["mtime_ns"] == found.mtime_ns and \
            before.get("etag") == found.etag and all(repo.has(c) for c in before["chunks"]):
        entry["chunks"] = before["chunks"]
        if "sha256" in before:
            entry["sha256"] = before["sha256"]
        mine["reused"] = 1
        return entry
    # An object's whole SHA-256 is needed only if it was written after the moment (then the
    # catalog copy is made to agree): else it is the catalog's.
    # An object listed with an ETag (S3) is always hashed: its LastModified is the storage's
    # clock, not this machine's, so "after the moment" cannot be told from it.
    later = found.key.startswith("buckets/") and (found.etag is not None or
                                                   found.mtime_ns > ctx.later_ns)
    try:
        f = source.open(found.key)
    except FileNotFoundError:
        return None  # removed while backed up: it was not there at the end
    with contextlib.closing(f):
        entry["chunks"], sha = _store(repo, f, mine, digest=later)
    if sha is not None:
        entry["sha256"] = sha
    elif found.key in ctx.objects and ctx.objects[found.key][0] == found.size:
        entry["sha256"] = ctx.objects[found.key][1]
    return entry


def _previous_files(repo: Repository) -> dict[str, dict[str, Any]]:
    ids = repo.snapshot_ids()
    if not ids:
        return {}
    try:
        last = repo.snapshot(ids[-1])
    except Exception:
        return {}
    return {f["path"]: f for f in last.get("files", [])}


def _items(manifest: dict[str, Any]) -> Iterator[tuple[str, list[str], int | None]]:
    """Each database and file of the backup: its place in the home, its pieces, its time."""
    for name, db in manifest["databases"].items():
        yield name, db["chunks"], None
    for f in manifest["files"]:
        yield f"storage/{f['path']}", f["chunks"], f["mtime_ns"]


def verify_backup(repo: Repository, snapshot_id: str = "latest") -> tuple[dict[str, Any],
                                                                          list[Problem]]:
    """Read every piece the backup names and check it: the problems, by file."""
    manifest = repo.snapshot(snapshot_id)
    problems: list[Problem] = []
    checked: dict[str, str | None] = {}
    for item, chunks, _ in _items(manifest):
        for chunk in chunks:
            if chunk not in checked:
                try:
                    repo.get(chunk)
                    checked[chunk] = None
                except FileNotFoundError:
                    checked[chunk] = "missing"
                except CorruptChunk:
                    checked[chunk] = "corrupt"
            why = checked[chunk]
            if why is not None:
                problems.append(Problem(item, chunk, why))
    return manifest, problems


@dataclass
class Restored:
    manifest: dict[str, Any]
    home: Path
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


def restore_backup(repo: Repository, snapshot_id: str, home: Path, *,
                   force: bool = False) -> Restored:
    """Write the backup into ``home`` (its databases and its storage folder). Refused into a
    home that holds anything, unless ``force`` (then what the backup holds replaces it)."""
    return restore_manifest(repo, repo.snapshot(snapshot_id), home, force=force)


def restore_manifest(repo: Repository, manifest: dict[str, Any], home: Path, *,
                     force: bool = False, sync: bool = False,
                     _skip: set[str] | None = None) -> Restored:
    """Write what ``manifest`` names (a backup's, or one made for a point in time). With
    ``sync`` (a standby keeping a home current), files already there as the manifest has them
    (size and time) are left alone, and files of the backed-up prefixes it does not name go."""
    home = home.expanduser().resolve()
    if sync:
        return _sync(repo, manifest, home)
    if home.exists() and any(home.iterdir()) and not force:
        raise Conflict(f"{home} is not empty; restore into an empty folder, or give --force to "
                       "replace what it holds (stop the server that uses it first)")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = Restored(manifest, home)
    storage = home / "storage"
    skip = _skip or set()
    if force and _skip is None:
        import shutil

        for prefix in manifest.get("prefixes", []):
            shutil.rmtree(storage / prefix, ignore_errors=True)
        for name in manifest["databases"]:
            for suffix in ("", "-wal", "-shm"):
                (home / f"{name}{suffix}").unlink(missing_ok=True)
    lock = threading.Lock()

    def one(item: str, chunks: list[str], mtime_ns: int | None) -> None:
        dest = home / item
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.restore")
        written = 0
        problem = None
        with open(tmp, "wb") as out:
            for chunk in chunks:
                try:
                    data = repo.get(chunk)
                except FileNotFoundError:
                    problem = Problem(item, chunk, "missing")
                    break
                except CorruptChunk:
                    problem = Problem(item, chunk, "corrupt")
                    break
                out.write(data)
                written += len(data)
        if problem is not None:
            tmp.unlink(missing_ok=True)
            with lock:
                done.problems.append(problem)
            return
        os.replace(tmp, dest)
        if mtime_ns is not None:  # as it was: the next backup of this home reuses the pieces
            with contextlib.suppress(OSError):
                os.utime(dest, ns=(mtime_ns, mtime_ns))
        with lock:
            done.files += 1
            done.bytes += written

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(one, *item) for item in _items(manifest)
                       if item[0] not in skip]:
            future.result()
    done.problems.sort(key=lambda p: p.item)
    return done


def _sync(repo: Repository, manifest: dict[str, Any], home: Path) -> Restored:
    """Bring ``home`` to what ``manifest`` names, writing only what differs."""
    storage = home / "storage"
    named = {f"storage/{f['path']}": f for f in manifest["files"]}
    skip: set[str] = set()
    for item, f in named.items():
        try:
            st = (home / item).stat()
        except FileNotFoundError:
            continue
        if st.st_size == f["size"] and st.st_mtime_ns == f["mtime_ns"]:
            skip.add(item)
    for prefix in manifest.get("prefixes", []):
        for rel, *_ in list(walk_files(storage, prefix)):
            if f"storage/{rel}" not in named:
                (storage / rel).unlink(missing_ok=True)
    for name in manifest["databases"]:
        for suffix in ("-wal", "-shm"):
            (home / f"{name}{suffix}").unlink(missing_ok=True)
    return restore_manifest(repo, manifest, home, force=True, _skip=skip)


def retained(ids: list[str], created: dict[str, datetime], *, keep_last: int = 0,
             keep_daily: int = 0, keep_weekly: int = 0) -> set[str]:
    """Which backups a retention policy keeps (restic's rules): the ``keep_last`` newest, the
    newest of each of the ``keep_daily`` latest days that have one, and the newest of each of
    the ``keep_weekly`` latest ISO weeks that have one. Pure: tested with made-up times."""
    newest_first = sorted(ids, key=lambda i: created[i], reverse=True)
    keep = set(newest_first[:keep_last])
    for count, bucket in ((keep_daily, lambda t: t.date().isoformat()),
                          (keep_weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]))):
        seen: list[str] = []
        for i in newest_first:
            key = bucket(created[i])
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(i)
    return keep


@dataclass
class Pruned:
    removed: list[str]
    kept: list[str]
    chunks_removed: int
    bytes_freed: int


def prune_backups(repo: Repository, *, keep_last: int = 0, keep_daily: int = 0,
                  keep_weekly: int = 0, dry_run: bool = False) -> Pruned:
    """Forget the backups the policy does not keep, then remove the pieces no kept backup
    names (also those a killed backup left). At least one rule must be given."""
    if keep_last <= 0 and keep_daily <= 0 and keep_weekly <= 0:
        raise Invalid("say what to keep: --keep-last N, --keep-daily N and/or --keep-weekly N")
    ids = repo.snapshot_ids()
    manifests = {i: repo.snapshot(i) for i in ids}
    created = {i: datetime.fromisoformat(m["created_at"]) for i, m in manifests.items()}
    keep = retained(ids, created, keep_last=keep_last, keep_daily=keep_daily,
                    keep_weekly=keep_weekly)
    removed = [i for i in ids if i not in keep]
    used = {c for i in keep for _, chunks, _ in _items(manifests[i]) for c in chunks}
    # Points of continuous protection live as long as the backup they start from.
    points = {i: repo.point(i) for i in repo.point_ids()}
    dropped = [i for i, p in points.items() if p["base"] not in keep]
    for i, p in points.items():
        if i not in dropped:
            used.update(c for db in p["databases"].values() for c in db["chunks"])
            used.update(c for f in p["changed"] for c in f["chunks"])
    unused = [c for c in repo.chunks() if c not in used]
    freed = 0
    if not dry_run:
        for i in dropped:
            repo.remove_point(i)
        for i in removed:  # forgotten first: a piece is never removed from under a backup
            repo.remove_snapshot(i)
        for chunk in unused:
            freed += repo.remove_chunk(chunk)
    return Pruned(removed, sorted(keep), len(unused), freed)
