"""The crawler: turn folders of files in object storage into external tables in the catalog.

It reads a prefix, detects each file's format, infers a schema from a sample of files, finds
Hive-style partitions (``year=2026/month=11/``), groups sibling folders with compatible schemas
into one partitioned table, and registers or updates tables by a schema-change policy. A folder
with a ``_delta_log/`` (a Delta table another tool wrote) is one table, read through its log.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.lake import catalog, delta, ingest
from cumulo.lake.models import CrawlPolicy, LakeDatabase, LakeTable
from cumulo.lake.refs import validate_name
from cumulo.principal import Principal
from cumulo.storage import service as storage
from cumulo.storage.backends import Backend
from cumulo.storage.keys import split_path
from cumulo.storage.models import StoredObject

__all__ = ["Policy", "crawl"]

Policy = CrawlPolicy
SAMPLE_FILES = 5
_HIVE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_DELTA_LOG = "_delta_log"


@dataclass
class _Folder:
    base: str  # the table's folder, without partition segments
    fmt: ingest.Format
    keys: list[str]  # object keys
    partitions: list[str]  # hive partition column names, in path order
    schema: pa.Schema | None = None


@dataclass
class CrawlReport:
    database: str
    path: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    files: int = 0


def _list(session: Session, bucket: str, prefix: str) -> list[StoredObject]:
    rows: list[StoredObject] = []
    cursor = None
    while True:
        page = storage.list_objects(session, bucket, prefix=prefix, cursor=cursor)
        rows.extend(page.objects)
        if not page.next_cursor:
            return rows
        cursor = page.next_cursor


def _table_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "files"
    return (name if re.match(r"^[a-z_]", name) else f"t_{name}")[:63]


def _sample_schema(backend: Backend, bucket: str, folder: _Folder) -> pa.Schema:
    schemas = []
    for key in folder.keys[:SAMPLE_FILES]:
        blob = storage.blob_key(bucket, key)
        with _local_copy(backend, blob) as path:
            reader = ingest.open_reader(path, folder.fmt, label=f"{bucket}/{key}")
            schemas.append(reader.schema)
            reader.close()
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise Invalid(f"files under {bucket}/{folder.base} do not share a schema: {exc}") from exc


@contextmanager
def _local_copy(backend: Backend, blob: str) -> Iterator[Path]:
    """The blob as a local file: its own on local storage, a temporary copy otherwise."""
    local = backend.local_path(blob)
    if local is not None:
        yield local
        return
    fd, name = tempfile.mkstemp(dir=backend.spool_dir(), suffix=PurePosixPath(blob).suffix)
    try:
        with backend.open(blob) as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _compatible(a: pa.Schema, b: pa.Schema) -> bool:
    if set(a.names) != set(b.names):
        return False
    try:
        pa.unify_schemas([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def _columns(schema: pa.Schema, partitions: list[str]) -> list[dict[str, Any]]:
    cols = [{"name": f.name, "type": str(f.type), "nullable": True} for f in schema
            if f.name not in partitions]
    return cols + [{"name": p, "type": "string", "nullable": True, "partition": True}
                   for p in partitions]


def _folders(report: CrawlReport, rows: list[StoredObject], prefix: str) -> list[_Folder]:
    groups: dict[tuple[str, str], _Folder] = {}
    for row in rows:
        name = PurePosixPath(row.key).name
        if name.startswith(("_", ".")):
            continue
        try:
            fmt = ingest.detect_format(name)
        except Invalid:
            report.skipped.append({"key": row.key, "reason": "unknown format"})
            continue
        parts = row.key.split("/")[:-1]
        partitions: list[str] = []
        while parts and (m := _HIVE.match(parts[-1])):
            partitions.insert(0, m.group(1))
            parts.pop()
        base = "/".join(parts)
        folder = groups.setdefault((base, fmt), _Folder(base, fmt, [], partitions))
        if folder.partitions != partitions:
            report.skipped.append({"key": row.key, "reason": f"partitions {partitions} differ "
                                   f"from {folder.partitions} elsewhere in {base or prefix}"})
            continue
        folder.keys.append(row.key)
        report.files += 1
    return list(groups.values())


def crawl(session: Session, backend: Backend, principal: Principal, path: str, *,
          database: str, policy: Policy = "log", project: str | None = None) -> CrawlReport:
    """Scan ``BUCKET/PREFIX`` and register what it holds as tables of ``database`` (made in
    ``project`` if it is new; its tables are in its project)."""
    if policy not in ("log", "update"):
        raise Invalid(f"policy must be 'log' or 'update', not {policy!r}")
    validate_name(database, "database")
    project_id = projects.project_id_for(session, project)
    bucket, prefix = split_path(path)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    # The crawler reads as its caller and makes what they could make themselves: each
    # object it reads, the database, each table (the decision point, as the routes ask).
    principal.require("files:List", f"bucket/{bucket}")
    _refuse_inside_delta(session, bucket, prefix)
    rows = _list(session, bucket, prefix)
    if not rows:
        raise NotFound(f"no files under {bucket}/{prefix}")
    for row in rows:
        principal.require("files:Get", f"bucket/{bucket}/{row.key}")
    report = CrawlReport(database=database, path=f"{bucket}/{prefix}")
    deltas, rows = _split_delta(rows)
    tables: list[dict[str, Any]] = []
    for root, keys in sorted(deltas.items()):
        try:
            spec, files = _delta_spec(backend, bucket, root, prefix, keys)
        except Invalid as exc:
            # Like a file of no known format: reported, and the rest of the crawl goes on.
            report.skipped.append({"key": f"{root}/", "reason": exc.message})
            continue
        tables.append(spec)
        report.files += files
    folders = _folders(report, rows, prefix)
    for folder in folders:
        folder.schema = _sample_schema(backend, bucket, folder)

    # Sibling folders (same parent, same format, compatible schemas, no partitions of their
    # own) become one table, partitioned by the folder name.
    by_parent: dict[tuple[str, str], list[_Folder]] = defaultdict(list)
    for folder in folders:
        parent = folder.base.rsplit("/", 1)[0] if "/" in folder.base else ""
        if folder.partitions or folder.base == prefix.rstrip("/") or not folder.base:
            tables.append(_spec(folder, prefix, bucket))
        else:
            by_parent[(parent, folder.fmt)].append(folder)
    for (parent, fmt), siblings in by_parent.items():
        first = siblings[0]
        assert first.schema is not None
        if len(siblings) > 1 and all(_compatible(first.schema, s.schema) for s in siblings
                                     if s.schema is not None):
            schema = pa.unify_schemas([s.schema for s in siblings if s.schema is not None],
                                      promote_options="permissive")
            rel = parent[len(prefix):] if parent.startswith(prefix) else parent
            tables.append({
                "name": _table_name(rel or PurePosixPath(prefix.rstrip("/")).name),
                "format": fmt, "location": f"buckets/{bucket}/{parent}",
                "columns": _columns(schema, ["partition_0"]),
                "partitions": ["partition_0"],
                "options": {"layout": "folders", "bucket": bucket, "prefix": parent + "/",
                            "folders": [s.base.rsplit("/", 1)[-1] for s in siblings]},
            })
        else:
            tables.extend(_spec(s, prefix, bucket) for s in siblings)

    seen: set[str] = set()
    for spec in sorted(tables, key=lambda t: (t["name"], t["location"], t["format"])):
        # Two folders can map to one name (data/x.csv and data/y.json; sales-eu and sales_eu).
        name, n = spec["name"], 1
        while name in seen:
            n += 1
            suffix = f"_{spec['format']}" if n == 2 else f"_{n}"
            name = spec["name"][: 63 - len(suffix)] + suffix
        spec["name"] = name
        seen.add(name)
    # Every right asked before anything is made: a refusal leaves nothing half done.
    # A new database and its tables are decided in the project named; an existing one's
    # tables in its own (the decision point finds it).
    home: str | None = None
    try:
        db = catalog.get_database(session, database)
    except NotFound:
        principal.require("tables:CreateDatabase", f"database/{database}", project=project)
        db, home = None, project
    for spec in tables:
        principal.require("tables:Create", f"table/{database}/{spec['name']}", project=home)
        if policy == "update":
            principal.require("tables:Write", f"table/{database}/{spec['name']}",
                              project=home)
    if db is not None and project is not None and db.project_id != project_id:
        raise Conflict(f"database {database} is not in project {project}: its tables stay in "
                       f"{projects.name_of(session, db.project_id) or 'no project'}; crawl "
                       "into it without a project, or into a new database",
                       details={"database": database, "project": project})
    if db is None:
        db = catalog.create_database(session, principal, database,
                                     f"crawled from {bucket}/{prefix}", project=project)
    for spec in sorted(tables, key=lambda t: (t["name"], t["location"], t["format"])):
        _register(session, principal, db, spec, policy, report)
    session.commit()
    return report


def _name_for(base: str, prefix: str, bucket: str) -> str:
    """A table's name: its folder's path under the crawled prefix (the prefix's own name, or
    the bucket's, for the prefix itself)."""
    rel = base[len(prefix):] if base.startswith(prefix) else base
    return _table_name(rel or PurePosixPath(prefix.rstrip("/")).name or bucket)


def _spec(folder: _Folder, prefix: str, bucket: str) -> dict[str, Any]:
    assert folder.schema is not None
    name = _name_for(folder.base, prefix, bucket)
    return {
        "name": name, "format": folder.fmt, "location": f"buckets/{bucket}/{folder.base}",
        "columns": _columns(folder.schema, folder.partitions), "partitions": folder.partitions,
        "options": {"layout": "hive" if folder.partitions else "flat", "bucket": bucket,
                    "prefix": folder.base + "/" if folder.base else ""},
    }


# --- Delta tables written by other tools --------------------------------------------------------


def _under(key: str, folder: str) -> bool:
    return folder == "" or key.startswith(folder + "/")


def _split_delta(rows: list[StoredObject]) -> tuple[dict[str, set[str]], list[StoredObject]]:
    """The Delta tables among ``rows`` (each folder with a ``_delta_log/``, with the keys of
    everything under it: log, data and any other file of the table), and the other objects.
    A Delta table inside another one's folder is part of the outer one."""
    roots = set()
    for row in rows:
        parts = row.key.split("/")
        if _DELTA_LOG in parts[:-1]:
            roots.add("/".join(parts[:parts.index(_DELTA_LOG)]))
    outer = [r for r in roots if not any(o != r and _under(r, o) for o in roots)]
    tables: dict[str, set[str]] = {root: set() for root in outer}
    rest = []
    for row in rows:
        root = next((r for r in outer if _under(row.key, r)), None)
        if root is None:
            rest.append(row)
        else:
            tables[root].add(row.key)
    return tables, rest


def _refuse_inside_delta(session: Session, bucket: str, prefix: str) -> None:
    """A prefix inside a Delta table's folder holds its log or some of its data files (old
    versions' too): never a table of their own."""
    parts = prefix.rstrip("/").split("/") if prefix else []
    for n in range(len(parts)):
        folder = "/".join(parts[:n])
        page = storage.list_objects(session, bucket, limit=1,
                                    prefix=f"{folder}/{_DELTA_LOG}/" if folder else
                                    f"{_DELTA_LOG}/")
        if page.objects:
            where = f"{bucket}/{folder}/" if folder else f"{bucket}/"
            raise Invalid(f"{bucket}/{prefix} is inside the Delta table {where}; crawl {where} "
                          "(or a folder above it) to register that table")


def _delta_spec(backend: Backend, bucket: str, root: str, prefix: str,
                keys: set[str]) -> tuple[dict[str, Any], int]:
    """The external table over the Delta table in ``bucket/root``, and the count of data
    files its latest version reads. Invalid, naming the folder, when Cumulo cannot read it."""
    where = f"{bucket}/{root}/" if root else f"{bucket}/"
    location = f"buckets/{bucket}/{root}".rstrip("/")
    uri, options = backend.table_uri(location)
    try:
        table = DeltaTable(uri, storage_options=options)
        schema = delta._delta_schema_to_arrow(table)
        metadata, protocol = table.metadata(), table.protocol()
        paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    except Exception as exc:
        # deltalake raises DeltaError for a log it cannot read, and a bare Exception for some
        # contents it has no counterpart for; anything else is a bug, and goes up as one.
        if not isinstance(exc, (DeltaError, OSError, pa.ArrowException)) \
                and type(exc) is not Exception:
            raise
        # Only the first line: the Rust core appends a backtrace of unnamed frames.
        text = str(exc).strip()
        detail = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
        raise Invalid(f"{where} has a {_DELTA_LOG}/ but is not a readable Delta table: "
                      f"{detail}; nothing was registered for it") from exc
    version = table.version()
    # SQL reads the Parquet files the log lists: a table whose files hold other column names
    # than its schema (column mapping) or rows that a deletion vector removes would read wrong.
    unreadable = []
    if (metadata.configuration or {}).get("delta.columnMapping.mode", "none") != "none":
        unreadable.append("column mapping")
    if "deletionVectors" in (protocol.reader_features or []):
        unreadable.append("deletion vectors")
    if unreadable:
        raise Invalid(f"{where} is a Delta table that uses {' and '.join(unreadable)}, which "
                      "Cumulo cannot read yet; nothing was registered for it")
    # Paths in the log are URI-encoded and relative to the table, unless absolute.
    missing = [p for p in map(unquote, paths) if "://" not in p
               and (f"{root}/{p}" if root else p) not in keys]
    if missing:
        raise Invalid(f"{where} is a Delta table whose version {version} reads {len(missing)} "
                      f"file(s) that are not in storage, such as {missing[0]}; upload the whole "
                      "folder, then crawl again. Nothing was registered for it")
    partitions = list(metadata.partition_columns)
    columns = [{"name": f.name, "type": str(f.type), "nullable": f.nullable,
                **({"partition": True} if f.name in partitions else {})} for f in schema]
    return {
        "name": _name_for(root, prefix, bucket), "format": "delta", "location": location,
        "columns": columns, "partitions": partitions,
        "options": {"layout": "delta", "bucket": bucket, "prefix": f"{root}/" if root else ""},
    }, len(paths)


def _register(session: Session, principal: Principal, db: LakeDatabase, spec: dict[str, Any],
              policy: Policy, report: CrawlReport) -> None:
    full = f"{db.name}.{spec['name']}"
    table = session.scalar(select(LakeTable).where(LakeTable.database_id == db.id,
                                                   LakeTable.name == spec["name"]))
    if table is None:
        session.add(LakeTable(
            database_id=db.id, name=spec["name"], kind="external", format=spec["format"],
            location=spec["location"], description="", tags={}, columns=spec["columns"],
            partition_columns=spec["partitions"], options=spec["options"],
            created_by=principal.user_id, created_at=utcnow(), project_id=db.project_id,
        ))
        report.created.append(full)
        return
    if table.kind != "external":
        report.skipped.append({"key": spec["location"],
                               "reason": f"{full} is a managed table; the crawler leaves it"})
        return
    if table.columns == spec["columns"] and table.partition_columns == spec["partitions"] \
            and table.options == spec["options"] and table.format == spec["format"] \
            and table.location == spec["location"]:
        report.unchanged.append(full)
        return
    old = {c["name"]: c["type"] for c in table.columns}
    new = {c["name"]: c["type"] for c in spec["columns"]}
    change = {
        "table": full,
        "added": [n for n in new if n not in old],
        "removed": [n for n in old if n not in new],
        "changed": [{"column": n, "from": old[n], "to": t} for n, t in new.items()
                    if n in old and old[n] != t],
        "applied": policy == "update",
    }
    if change["added"] or change["removed"] or change["changed"]:
        report.schema_changes.append(change)
    if policy == "update":
        table.columns, table.partition_columns = spec["columns"], spec["partitions"]
        table.format, table.location = spec["format"], spec["location"]
        table.options, table.updated_at = spec["options"], utcnow()
        report.updated.append(full)
    else:
        report.unchanged.append(full)
