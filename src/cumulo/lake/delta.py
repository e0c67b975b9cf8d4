"""Delta tables: open at a version or a time, write with schema enforcement, merge, history,
restore. Every write commits once at its end, so a failed or killed write leaves the table at
its previous version."""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from cumulo.errors import Conflict, Invalid, NotFound

__all__ = [
    "Location",
    "Mode",
    "WriteResult",
    "history",
    "open_table",
    "restore",
    "schema_diff",
    "table_lock",
    "transaction_versions",
    "write",
]

Mode = Literal["append", "overwrite", "merge", "create"]
_LOCKS = [threading.Lock() for _ in range(64)]


@dataclass(frozen=True)
class Location:
    uri: str
    options: dict[str, str] | None


@contextmanager
def table_lock(uri: str) -> Iterator[None]:
    """Writes to one table go one after another: both succeed, in order."""
    with _LOCKS[zlib.crc32(uri.encode()) % len(_LOCKS)]:
        yield


def open_table(loc: Location, *, version: int | None = None,
               as_of: datetime | None = None, name: str = "table") -> DeltaTable:
    try:
        table = DeltaTable(loc.uri, storage_options=loc.options)
    except TableNotFoundError as exc:
        raise NotFound(f"table {name} has no data yet; load some with 'cumulo tables load'") \
            from exc
    if version is not None:
        latest = table.version()
        if not 0 <= version <= latest:
            raise NotFound(f"table {name} has no version {version}; its versions are 0 to "
                           f"{latest} ('cumulo tables history {name}')")
        try:
            table.load_as_version(version)
        except DeltaError as exc:
            raise NotFound(f"version {version} of {name} is no longer readable (vacuumed?): "
                           f"{exc}") from exc
    elif as_of is not None:
        # The newest version committed at or before as_of, by the commits' own timestamps:
        # the times 'history' shows. (deltalake's load_as_version(datetime) goes by the log
        # files' modification times, a few milliseconds later, so a time read from history
        # could give the version before.)
        stamps = {e["version"]: e["timestamp"] for e in table.history()}
        if not stamps:
            table.load_as_version(as_of)
        else:
            wanted = as_of.timestamp() * 1000
            before = [v for v, ms in stamps.items() if ms <= wanted]
            if not before:
                first = datetime.fromtimestamp(min(stamps.values()) / 1000, UTC)
                raise NotFound(f"table {name} did not exist yet at {as_of.isoformat()}; its "
                               f"first version is from {first.isoformat()}")
            version = max(before)
            try:
                table.load_as_version(version)
            except DeltaError as exc:
                raise NotFound(f"version {version} of {name} is no longer readable "
                               f"(vacuumed?): {exc}") from exc
    if (version is not None or as_of is not None) and not _files_present(table):
        raise NotFound(f"version {table.version()} of {name} is no longer readable: vacuum "
                       f"removed its files ('cumulo tables history {name}' lists versions)")
    return table


def _files_present(table: DeltaTable) -> bool:
    """Whether an old version's files are still there (checked for local tables only)."""
    return all(os.path.exists(p) for p in table.file_uris() if p.startswith("/"))


def exists(loc: Location) -> bool:
    return bool(DeltaTable.is_deltatable(loc.uri, storage_options=loc.options))


# --- schema enforcement ------------------------------------------------------------------------


def _widens(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether values of ``source`` always fit ``target`` (so a load may cast them)."""
    if source == target:
        return True
    if pa.types.is_null(source):
        return True
    if pa.types.is_integer(source) and (pa.types.is_integer(target)
                                        or pa.types.is_floating(target)):
        return True
    if pa.types.is_floating(source) and pa.types.is_floating(target):
        return True
    if pa.types.is_string(source) and pa.types.is_large_string(target):
        return True
    if pa.types.is_large_string(source) and pa.types.is_string(target):
        return True
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        return True
    return bool(pa.types.is_date(source) and (pa.types.is_date(target)
                                              or pa.types.is_timestamp(target)))


def schema_diff(table: pa.Schema, data: pa.Schema) -> list[dict[str, str]]:
    """Per-column differences that stop an append; empty when the data fits."""
    problems = []
    for field in data:
        if field.name not in table.names:
            problems.append({"column": field.name, "table": "-", "data": str(field.type),
                             "problem": "not in the table (pass --evolve to add it)"})
            continue
        want = table.field(field.name).type
        if not _widens(field.type, want):
            problems.append({"column": field.name, "table": str(want), "data": str(field.type),
                             "problem": "type does not match"})
    for field in table:
        if field.name not in data.names and not field.nullable:
            problems.append({"column": field.name, "table": str(field.type), "data": "-",
                             "problem": "missing, and the table's column is not nullable"})
    return problems


def _conform(reader: pa.RecordBatchReader, target: pa.Schema) -> pa.RecordBatchReader:
    """Cast each batch to the table's schema, adding missing columns as nulls."""

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            arrays = []
            for field in target:
                if field.name in batch.schema.names:
                    arrays.append(batch.column(field.name).cast(field.type))
                else:
                    arrays.append(pa.nulls(batch.num_rows, field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=target)

    return pa.RecordBatchReader.from_batches(target, batches())


def _delta_schema_to_arrow(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    version: int
    rows_added: int | None
    rows_updated: int | None
    rows_removed: int | None


def write(
    loc: Location, reader: pa.RecordBatchReader, *, mode: Mode, user: str, name: str,
    partition_by: list[str] | None = None, keys: list[str] | None = None, evolve: bool = False,
    transactions: dict[str, int] | None = None,
) -> WriteResult:
    """Write a stream of batches to the table at ``loc`` as one commit. ``transactions``
    (application id: version) are committed with it, as Delta's app transactions: a writer
    that must write each batch once keeps where it is there (see :func:`transaction_versions`)."""
    commit = CommitProperties(custom_metadata={"userName": user}, app_transactions=[
        Transaction(app_id, version) for app_id, version in (transactions or {}).items()])
    with table_lock(loc.uri):
        existing = exists(loc)
        if mode == "create" and existing:
            raise Conflict(f"table {name} already exists")
        if mode == "merge":
            if not existing:
                mode = "append"  # merging into nothing is an insert
            elif not keys:
                raise Invalid("merge needs key columns: --keys id (or keys=['id'])")
        if existing and mode in ("append", "merge"):
            table = DeltaTable(loc.uri, storage_options=loc.options)
            current = _delta_schema_to_arrow(table)
            problems = schema_diff(current, reader.schema)
            if evolve:
                problems = [p for p in problems if p["table"] != "-"]
            if problems:
                listed = "; ".join(f"{p['column']}: {p['problem']} (table {p['table']}, "
                                   f"data {p['data']})" for p in problems)
                raise Invalid(f"the data does not match the schema of {name}: {listed}. "
                              "Nothing was written", details={"diff": problems})
            if not evolve:
                reader = _conform(reader, current)
            if mode == "merge":
                return _merge(table, reader, keys or [], commit, name)
        if partition_by:
            missing = [c for c in partition_by if c not in reader.schema.names]
            if missing:
                raise Invalid(f"partition column(s) {missing} are not in the data; its columns "
                              f"are {reader.schema.names}")
        try:
            write_deltalake(
                loc.uri, reader, mode="overwrite" if mode == "overwrite" else "append",
                partition_by=partition_by if not existing or mode == "overwrite" else None,
                schema_mode="merge" if evolve else ("overwrite" if mode == "overwrite" else None),
                storage_options=loc.options, commit_properties=commit,
            )
        except (pa.ArrowInvalid, DeltaError) as exc:
            raise Invalid(f"cannot write {name}: {exc}. Nothing was written") from exc
        except Exception as exc:
            # deltalake raises a bare Exception for data Delta cannot hold: two columns whose
            # names differ only in case, a type it has no counterpart for (an interval)
            if type(exc) is not Exception:
                raise
            raise Invalid(f"cannot write {name}: {exc}. Nothing was written") from exc
        table = DeltaTable(loc.uri, storage_options=loc.options)
        metrics = table.history(1)[0].get("operationMetrics", {})
        return WriteResult(version=table.version(), rows_added=metrics.get("num_added_rows"),
                           rows_updated=None, rows_removed=None)


def _merge(table: DeltaTable, reader: pa.RecordBatchReader, keys: list[str],
           commit: CommitProperties, name: str) -> WriteResult:
    missing = [k for k in keys if k not in reader.schema.names]
    if missing:
        raise Invalid(f"merge key(s) {missing} are not columns of the data")
    predicate = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in keys)
    try:
        metrics: dict[str, Any] = (
            table.merge(reader, predicate, source_alias="s", target_alias="t",
                        commit_properties=commit)
            .when_matched_update_all().when_not_matched_insert_all().execute()
        )
    except (pa.ArrowInvalid, DeltaError) as exc:
        raise Invalid(f"cannot merge into {name}: {exc}. Nothing was written") from exc
    return WriteResult(version=table.version(),
                       rows_added=metrics.get("num_target_rows_inserted"),
                       rows_updated=metrics.get("num_target_rows_updated"),
                       rows_removed=metrics.get("num_target_rows_deleted"))


def quote_ident(name: str) -> str:
    """A quoted SQL identifier: column names come from users' data."""
    return '"' + name.replace('"', '""') + '"'


def transaction_versions(loc: Location, app_ids: list[str]) -> dict[str, int | None]:
    """The version each application last committed to the table with its writes (None: it
    never did), as the table's latest version has them."""
    table = DeltaTable(loc.uri, storage_options=loc.options)
    return {app_id: table.transaction_version(app_id) for app_id in app_ids}


# --- history -----------------------------------------------------------------------------------


def history(loc: Location, *, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    table = open_table(loc, name=name)
    out = []
    for entry in table.history(limit):
        metrics = entry.get("operationMetrics", {}) or {}
        out.append({
            "version": entry["version"],
            "timestamp": datetime.fromtimestamp(entry["timestamp"] / 1000, UTC),
            "operation": entry.get("operation"),
            "parameters": entry.get("operationParameters", {}),
            "rows_added": metrics.get("num_added_rows",
                                      metrics.get("num_target_rows_inserted")),
            "rows_removed": metrics.get("num_removed_rows",
                                        metrics.get("num_target_rows_deleted")),
            "rows_updated": metrics.get("num_target_rows_updated"),
            "user": entry.get("userName"),
        })
    return out


def restore(loc: Location, version: int, *, user: str, name: str) -> int:
    with table_lock(loc.uri):
        table = open_table(loc, name=name)
        open_table(loc, version=version, name=name)  # a clear error for a missing version
        if version == table.version():
            raise Conflict(f"{name} is at version {version} already; nothing to restore")
        table.restore(version, commit_properties=CommitProperties(
            custom_metadata={"userName": user}))
        return table.version()
