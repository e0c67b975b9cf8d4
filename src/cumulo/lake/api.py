"""REST routes of the lake: ``/api/v1/tables`` (catalog, loads, versions) and ``/api/v1/sql``."""

from __future__ import annotations

import base64
import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access.projects import names_of
from cumulo.access.users import user_names
from cumulo.db import get_session, utcnow
from cumulo.errors import Forbidden, Invalid, NotFound, Unavailable
from cumulo.lake import projects as _projects  # noqa: F401 - places tables in projects
from cumulo.lake import s3view as _s3view  # noqa: F401 - the lake bucket of the S3 API
from cumulo.lake.models import CrawlPolicy, SqlQuery, TableInfo
from cumulo.lake.refs import TableRef, parse_ref, parse_timestamp
from cumulo.leases import live_planes
from cumulo.permissions import PERMISSION_KEY, Holder, allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.storage.backends import Backend, request_backend
from cumulo.storage.transfer import spool_body

__all__ = ["sql_router", "tables_router"]


class _Lazy:
    """A module imported on first use: the lake's engines (pyarrow, deltalake, DuckDB) stay out
    of the control plane's memory until a lake route is called. ``import_module`` holds the
    module's import lock, so requests that arrive together on a fresh server all wait for the
    one import; importlib's LazyLoader let the second thread see a half-run module (a 500)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    import pyarrow as pa

    from cumulo.lake import (
        access,
        catalog,
        crawler,
        delta,
        ingest,
        results,
        sources,
        sql,
        versions,
    )
else:
    access, catalog, crawler, delta, ingest, results, sources, sql, versions = (
        _Lazy(f"cumulo.lake.{m}") for m in
        ("access", "catalog", "crawler", "delta", "ingest", "results", "sources", "sql",
         "versions")
    )

tables_router = APIRouter(prefix="/tables", tags=["tables"])
sql_router = APIRouter(prefix="/sql", tags=["sql"])
# The most versions one history answer lists: Delta's reader takes a machine-sized count, and
# a number past it was an OverflowError (500).
_MAX_HISTORY = 1_000_000
# Arrow counts rows in 64 bits: a read's limit past it broke the stream off after its 200.
_MAX_ROWS = 2**63 - 1
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


Storage = Annotated[Backend, Depends(request_backend)]


def _ref(database: str, table: str, version: int | None = None,
         as_of: str | None = None) -> TableRef:
    ref = parse_ref(f"{database}.{table}")
    if version is not None and as_of is not None:
        raise Invalid("give a version or a timestamp (as_of), not both")
    return TableRef(ref.database, ref.table, version=version,
                    as_of=parse_timestamp(as_of) if as_of else None)


# --- databases ---------------------------------------------------------------------------------


class DatabaseIn(BaseModel):
    name: str
    description: str = ""
    project: str | None = Field(None, description="the project it (and its tables) is in")


class DatabaseOut(BaseModel):
    name: str
    description: str
    project: str | None
    tables: int
    created_at: datetime
    created_by: str | None


@tables_router.get("/databases",
                   dependencies=[allow("tables:List", "database/*", project=query_project)],
                   response_model=list[DatabaseOut],
                   summary="List databases (of one project: ?project=)")
def list_databases(session: DbSession, project: str | None = None) -> list[DatabaseOut]:
    rows = catalog.list_databases(session, project=project)
    names = user_names(session, {db.created_by for db, _ in rows})
    homes = names_of(session, {db.project_id for db, _ in rows})
    return [DatabaseOut(name=db.name, description=db.description, tables=n,
                        project=homes.get(db.project_id) if db.project_id else None,
                        created_at=db.created_at, created_by=names.get(db.created_by))
            for db, n in rows]


@tables_router.post("/databases",
    dependencies=[allow("tables:CreateDatabase", "database/*", project=body_project)],
    status_code=201, response_model=DatabaseOut,
                    summary="Create a database")
def create_database(body: DatabaseIn, session: DbSession, caller: Caller) -> DatabaseOut:
    db = catalog.create_database(session, caller, body.name, body.description,
                                 project=body.project)
    return DatabaseOut(name=db.name, description=db.description, project=body.project,
                       tables=0, created_at=db.created_at, created_by=caller.user_name)


@tables_router.delete("/databases/{database}",
    dependencies=[allow("tables:DropDatabase", "database/{database}")],
    summary="Drop a database")
def drop_database(database: str, session: DbSession, storage: Storage,
                  cascade: bool = False) -> dict[str, Any]:
    return {"database": database,
            "tables_dropped": catalog.drop_database(session, storage, database, cascade=cascade)}


# --- tables ------------------------------------------------------------------------------------


class TableSummary(BaseModel):
    name: str
    kind: str
    format: str
    description: str
    project: str | None
    created_at: datetime
    updated_at: datetime | None


@dataclass
class TableOut(TableInfo):
    """A table as ``show`` answers it, with the full URI of its data (``file:///...`` or
    ``s3://...``), so that other tools (deltalake, DuckDB, Spark) can open it."""

    uri: str = ""


def _table_out(session: Session, storage: Backend, ref: TableRef) -> TableOut:
    info = catalog.table_info(session, storage, ref)
    return TableOut(**vars(info), uri=catalog.full_uri(storage, info.location))


@tables_router.get("",
                   dependencies=[allow("tables:List", "table/*", project=query_project)],
                   response_model=list[TableSummary],
                   summary="List tables (of a database, of a project: ?project=)")
def list_tables(session: DbSession, database: str | None = None,
                project: str | None = None) -> list[TableSummary]:
    rows = catalog.list_tables(session, database, project=project)
    homes = names_of(session, {t.project_id for _, t in rows})
    return [TableSummary(name=f"{d}.{t.name}", kind=t.kind, format=t.format,
                         description=t.description,
                         project=homes.get(t.project_id) if t.project_id else None,
                         created_at=t.created_at, updated_at=t.updated_at)
            for d, t in rows]


@tables_router.get("/{database}/{table}",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   response_model=TableOut, summary="Show a table")
def show_table(database: str, table: str, session: DbSession, storage: Storage,
               version: int | None = None, as_of: str | None = None) -> TableOut:
    return _table_out(session, storage, _ref(database, table, version, as_of))


class TablePatch(BaseModel):
    description: str | None = None
    tags: dict[str, str] | None = None


@tables_router.patch("/{database}/{table}",
    dependencies=[allow("tables:Write", "table/{database}/{table}")],
    response_model=TableOut,
                     summary="Set a table's description or tags")
def patch_table(database: str, table: str, body: TablePatch, session: DbSession,
                storage: Storage) -> TableOut:
    ref = _ref(database, table)
    row = catalog.get_table(session, ref)
    if body.description is not None:
        row.description = body.description
    if body.tags is not None:
        row.tags = body.tags
    row.updated_at = utcnow()
    session.commit()
    return _table_out(session, storage, ref)


@tables_router.delete("/{database}/{table}",
    dependencies=[allow("tables:Drop", "table/{database}/{table}")],
    summary="Drop a table (and a managed one's data)")
def drop_table(database: str, table: str, session: DbSession,
               storage: Storage) -> dict[str, str]:
    ref = _ref(database, table)
    catalog.drop_table(session, storage, ref)
    return {"dropped": ref.name}


class WriteOut(BaseModel):
    table: str
    version: int
    rows_added: int | None
    rows_updated: int | None
    rows_removed: int | None


LoadMode = Literal["append", "overwrite", "merge"]


@tables_router.put(
    "/{database}/{table}/data",
    dependencies=[allow("tables:Write", "table/{database}/{table}")],
    response_model=WriteOut,
    summary="Load a file into a managed table (the raw body, streamed)",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}, "required": True}},
)
async def load_body(
    database: str, table: str, request: Request, session: DbSession, storage: Storage,
    caller: Caller,
    format: Annotated[str, Query(description="csv, parquet, json or jsonl")],
    mode: LoadMode = "append",
    keys: Annotated[list[str] | None, Query(description="merge keys")] = None,
    partition_by: Annotated[list[str] | None, Query()] = None,
    evolve: bool = False,
    filename: str = "upload",
) -> WriteOut:
    ref = _ref(database, table)
    fmt = ingest.detect_format(filename, format)
    await run_in_threadpool(catalog.get_database, session, ref.database)
    tmp, _, _ = await spool_body(request, storage.spool_dir())
    try:
        return await run_in_threadpool(
            _load, session, storage, caller, ref,
            lambda: ingest.open_reader(tmp, fmt, label=filename), mode, keys, partition_by,
            evolve,
        )
    finally:
        tmp.unlink(missing_ok=True)


class LoadIn(BaseModel):
    source: str = Field(description="BUCKET/KEY, BUCKET/PREFIX/ (every file under it), or an "
                        "http(s) URL")
    format: str | None = Field(None, description="csv, parquet, json or jsonl; default: by name")
    mode: LoadMode = "append"
    keys: list[str] | None = None
    partition_by: list[str] | None = None
    evolve: bool = False


@tables_router.post("/{database}/{table}/load",
    dependencies=[allow("tables:Write", "table/{database}/{table}")],
    response_model=WriteOut,
                    summary="Load files from storage or a URL into a managed table")
def load_source(database: str, table: str, body: LoadIn, session: DbSession, storage: Storage,
                caller: Caller, request: Request) -> WriteOut:
    ref = _ref(database, table)
    catalog.get_database(session, ref.database)
    allow_internal = services(request).settings.allow_internal_urls  # for admins too
    with sources.fetch(body.source, session, storage, allow_internal=allow_internal) as files:
        return _load(session, storage, caller, ref, lambda: sources.chain(files, body.format),
                     body.mode, body.keys, body.partition_by, body.evolve)


def _load(session: Session, storage: Backend, caller: Principal, ref: TableRef,
          make_reader: Callable[[], pa.RecordBatchReader], mode: LoadMode,
          keys: list[str] | None, partition_by: list[str] | None, evolve: bool) -> WriteOut:
    fresh = False
    try:
        catalog.get_table(session, ref)
    except NotFound:
        fresh = True
    row = catalog.ensure_managed_table(session, caller, ref)
    try:
        result = delta.write(catalog.location(storage, row), make_reader(), mode=mode,
                             user=caller.user_name, name=ref.name, keys=keys,
                             partition_by=partition_by, evolve=evolve)
    except BaseException:
        if fresh:  # nothing half-registered: a table whose first load failed is not kept
            catalog.drop_table(session, storage, ref)
        raise
    row.updated_at = utcnow()
    session.commit()
    return WriteOut(table=ref.name, version=result.version, rows_added=result.rows_added,
                    rows_updated=result.rows_updated, rows_removed=result.rows_removed)


ReadFormat = Literal["arrow", "parquet", "csv", "json", "jsonl"]
_MEDIA = {"arrow": "application/vnd.apache.arrow.stream", "parquet": "application/x-parquet",
          "csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}
# What the OpenAPI document says a download is: one media type per format.
_DOWNLOAD: dict[int | str, dict[str, Any]] = {200: {"content": {
    media: {"schema": {"type": "array", "items": {"type": "object"}}} if fmt == "json"
    else {"schema": {"type": "string", "format": "binary"}} for fmt, media in _MEDIA.items()}}}


@tables_router.get("/{database}/{table}/data",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   summary="Read a table (at a version or time)",
                   response_class=StreamingResponse, responses=_DOWNLOAD)
def read_table(database: str, table: str, session: DbSession, storage: Storage,
               caller: Caller, version: int | None = None, as_of: str | None = None,
               format: ReadFormat = "arrow",
               limit: Annotated[int | None, Query(ge=0, le=_MAX_ROWS)] = None
               ) -> StreamingResponse:
    import pyarrow as pa

    ref = _ref(database, table, version, as_of)
    row = catalog.get_table(session, ref)
    dt = delta.open_table(catalog.location(storage, row), version=ref.version, as_of=ref.as_of,
                          name=str(ref))
    dataset = dt.to_pyarrow_dataset()
    # What the caller's masks and row filters let them see (jobs read their inputs here too).
    rules = access.rules_for(session, caller.user_id, [row.id]).get(row.id)
    if rules:
        rules = sql.with_current(storage, row, dt, rules)  # a version from before a rename
        batches = access.read_restricted(dataset, rules, dataset.schema.names)
    else:
        batches = dataset.scanner(batch_size=65536).to_reader()
    if limit is not None:
        batches = pa.RecordBatchReader.from_batches(batches.schema, _limited(batches, limit))
    return StreamingResponse(_encode(batches, format), media_type=_MEDIA[format],
                             headers={"x-cumulo-version": str(dt.version())})


def _limited(reader: pa.RecordBatchReader, limit: int) -> Any:
    left = limit
    for batch in reader:
        if left <= 0:
            return
        yield batch.slice(0, left)
        left -= batch.num_rows


class _Sink:
    """A file-like object that collects what a writer produces, for streaming it out."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _encode(reader: pa.RecordBatchReader, fmt: str) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "json":
        yield from _encode_json(reader)
        return
    if fmt == "jsonl":
        yield from _encode_jsonl(reader)
        return
    sink = _Sink()
    if fmt == "arrow":
        writer: Any = pa.ipc.new_stream(sink, reader.schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(sink, reader.schema)
    else:
        writer = pacsv.CSVWriter(sink, reader.schema)
    for batch in reader:
        writer.write_batch(batch)
        if chunk := sink.take():
            yield chunk
    writer.close()
    if chunk := sink.take():
        yield chunk


def _encode_json(reader: pa.RecordBatchReader) -> Any:
    """Rows as one JSON array of objects (nested columns too, which CSV cannot hold), for
    previews: the console's sample of a table. Values JSON has no word for are text: NaN and
    infinities, times, bytes."""
    import pyarrow as pa

    yield b"["
    separator = b""
    for batch in reader:
        rows = _finite(_json_rows(pa.Table.from_batches([batch], schema=reader.schema)))
        if rows:
            yield separator + json.dumps(rows, default=str, allow_nan=False)[1:-1].encode()
            separator = b","
    yield b"]"


def _encode_jsonl(reader: pa.RecordBatchReader) -> Any:
    """Rows as JSON Lines, an object a line, batch by batch: the whole-table download in JSON
    (``cumulo tables read --format jsonl``), with the same values as ``json``."""
    import pyarrow as pa

    for batch in reader:
        rows = _finite(_json_rows(pa.Table.from_batches([batch], schema=reader.schema)))
        if rows:
            yield "".join(json.dumps(row, default=str, allow_nan=False) + "\n"
                          for row in rows).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@tables_router.get("/{database}/{table}/history",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   summary="A table's versions")
def table_history(database: str, table: str, session: DbSession, storage: Storage,
                  limit: Annotated[int | None, Query(ge=1, le=_MAX_HISTORY)] = None
                  ) -> list[dict[str, Any]]:
    ref = _ref(database, table)
    row = catalog.get_table(session, ref)
    return delta.history(catalog.location(storage, row), name=ref.name, limit=limit)


class RestoreIn(BaseModel):
    version: int | None = None
    as_of: str | None = None


def _managed_only(row: Any, doing: str) -> None:
    """An external table's files are another tool's (a Delta folder crawled in): Cumulo reads
    them, and does not write or delete them behind that tool's back."""
    if row.kind != "managed":
        raise Invalid(f"table {row.name!r} is external (crawled from {row.location}): "
                      f"Cumulo does not {doing} it; {doing} it with the tool that writes it, "
                      "or copy it into a managed table (CREATE TABLE ... AS SELECT)")


@tables_router.post("/{database}/{table}/restore",
    dependencies=[allow("tables:Write", "table/{database}/{table}")],
    response_model=WriteOut,
                    summary="Make a new version equal to an old one")
def restore_table(database: str, table: str, body: RestoreIn, session: DbSession,
                  storage: Storage, caller: Caller) -> WriteOut:
    ref = _ref(database, table)
    row = catalog.get_table(session, ref)
    _managed_only(row, "restore")
    loc = catalog.location(storage, row)
    target = body.version
    if target is None:
        if body.as_of is None:
            raise Invalid("restore needs a version (or as_of)")
        target = delta.open_table(loc, as_of=parse_timestamp(body.as_of), name=ref.name).version()
    version = delta.restore(loc, target, user=caller.user_name, name=ref.name)
    row.updated_at = utcnow()
    session.commit()
    return WriteOut(table=ref.name, version=version, rows_added=None, rows_updated=None,
                    rows_removed=None)


@tables_router.get("/{database}/{table}/diff",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   summary="Compare two versions")
def table_diff(database: str, table: str, session: DbSession, storage: Storage,
               caller: Caller, start: Annotated[int, Query(alias="from")],
               end: Annotated[int | None, Query(alias="to")] = None,
               keys: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    ref = _ref(database, table)
    row = catalog.get_table(session, ref)
    if access.rules_for(session, caller.user_id, [row.id]).get(row.id):
        raise Forbidden(f"the diff of {ref.name} shows rows and values that your column masks "
                        "and row filters on it hide; compare its versions with SQL instead "
                        f"(SELECT * FROM {ref.name} VERSION AS OF {end if end is not None else 1}"
                        f" EXCEPT SELECT * FROM {ref.name} VERSION AS OF {start})",
                        details={"table": ref.name})
    loc = catalog.location(storage, row)
    if end is None:
        end = delta.open_table(loc, name=ref.name).version()
    return versions.diff(loc, name=ref.name, start=start, end=end, keys=keys)


class VacuumIn(BaseModel):
    retain: str = Field("168h", description="keep what versions younger than this need")
    dry_run: bool = False
    force: bool = False


@tables_router.post("/{database}/{table}/vacuum",
    dependencies=[allow("tables:Write", "table/{database}/{table}")],
    summary="Remove files old versions needed")
def table_vacuum(database: str, table: str, body: VacuumIn, session: DbSession,
                 storage: Storage) -> dict[str, Any]:
    from datetime import timedelta

    from cumulo.units import parse_duration

    retain = timedelta(seconds=parse_duration(body.retain, what="--retain", allow_zero=True))
    ref = _ref(database, table)
    row = catalog.get_table(session, ref)
    _managed_only(row, "vacuum")
    loc = catalog.location(storage, row)
    return versions.vacuum(loc, name=ref.name, retain=retain, dry_run=body.dry_run,
                           force=body.force)


# --- who sees what: column masks and row filters ----------------------------------------------


class MaskIn(BaseModel):
    expression: str = Field(description="an SQL expression over the row: '***', NULL, "
                            "left(email, 2) || '***'")
    user: str | None = None
    group: str | None = None


class MaskOut(BaseModel):
    table: str
    column: str
    expression: str
    subject: str = Field(description="user:alice or group:analysts")
    created_by: str | None
    created_at: datetime


class FilterIn(BaseModel):
    predicate: str = Field(description="an SQL condition over the row: region = 'EU'")
    user: str | None = None
    group: str | None = None


class FilterOut(BaseModel):
    table: str
    predicate: str
    subject: str
    created_by: str | None
    created_at: datetime


def _subject(user: str | None, group: str | None) -> access.Subject:
    return access.Subject.of(user=user, group=group)


@tables_router.get("/{database}/{table}/masks",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   response_model=list[MaskOut], summary="A table's column masks")
def list_masks(database: str, table: str, session: DbSession, caller: Caller) -> list[MaskOut]:
    return [MaskOut(**m) for m in access.list_masks(session, caller, _ref(database, table))]


@tables_router.put("/{database}/{table}/masks/{column}",
                   dependencies=[allow("tables:Grant", "table/{database}/{table}")],
                   response_model=MaskOut,
                   summary="Set a user's or group's mask on a column (replacing theirs)")
def set_mask(database: str, table: str, column: str, body: MaskIn, session: DbSession,
             storage: Storage, caller: Caller) -> MaskOut:
    ref, subject = _ref(database, table), _subject(body.user, body.group)
    row = access.set_mask(session, storage, caller, ref, column, body.expression, subject)
    return MaskOut(table=ref.name, column=row.column, expression=row.expression,
                   subject=f"{subject.kind}:{subject.name}", created_by=caller.user_name,
                   created_at=row.created_at)


@tables_router.delete("/{database}/{table}/masks/{column}",
                      dependencies=[allow("tables:Grant", "table/{database}/{table}")],
                      summary="Take a user's or group's mask on a column away")
def drop_mask(database: str, table: str, column: str, session: DbSession, caller: Caller,
              user: str | None = None, group: str | None = None) -> dict[str, str]:
    ref, subject = _ref(database, table), _subject(user, group)
    dropped = access.drop_mask(session, caller, ref, column, subject)
    return {"table": ref.name, "column": dropped, "unmasked": f"{subject.kind}:{subject.name}"}


@tables_router.get("/{database}/{table}/filters",
                   dependencies=[allow("tables:Read", "table/{database}/{table}")],
                   response_model=list[FilterOut], summary="A table's row filters")
def list_filters(database: str, table: str, session: DbSession,
                 caller: Caller) -> list[FilterOut]:
    return [FilterOut(**f) for f in access.list_filters(session, caller, _ref(database, table))]


@tables_router.put("/{database}/{table}/filters",
                   dependencies=[allow("tables:Grant", "table/{database}/{table}")],
                   response_model=FilterOut,
                   summary="Set a user's or group's row filter (replacing theirs)")
def set_filter(database: str, table: str, body: FilterIn, session: DbSession,
               storage: Storage, caller: Caller) -> FilterOut:
    ref, subject = _ref(database, table), _subject(body.user, body.group)
    row = access.set_filter(session, storage, caller, ref, body.predicate, subject)
    return FilterOut(table=ref.name, predicate=row.predicate,
                     subject=f"{subject.kind}:{subject.name}", created_by=caller.user_name,
                     created_at=row.created_at)


@tables_router.delete("/{database}/{table}/filters",
                      dependencies=[allow("tables:Grant", "table/{database}/{table}")],
                      summary="Take a user's or group's row filter away")
def drop_filter(database: str, table: str, session: DbSession, caller: Caller,
                user: str | None = None, group: str | None = None) -> dict[str, str]:
    ref, subject = _ref(database, table), _subject(user, group)
    access.drop_filter(session, caller, ref, subject)
    return {"table": ref.name, "unfiltered": f"{subject.kind}:{subject.name}"}


class CrawlIn(BaseModel):
    path: str = Field(description="BUCKET/PREFIX to scan")
    database: str
    policy: CrawlPolicy = "log"
    project: str | None = Field(None, description="the project of the database, if it is new "
                                "(an existing one must be in it)")


@tables_router.post("/crawl",
    dependencies=[allow("tables:Create", "table/*", project=body_project)],
    summary="Crawl files into external tables")
def crawl(body: CrawlIn, session: DbSession, storage: Storage, caller: Caller) -> dict[str, Any]:
    report = crawler.crawl(session, storage, caller, body.path, database=body.database,
                           policy=body.policy, project=body.project)
    return vars(report)


# --- SQL ---------------------------------------------------------------------------------------


class SqlIn(BaseModel):
    sql: str = Field(description="one statement: SELECT, CREATE TABLE db.t AS SELECT, "
                     "INSERT INTO db.t SELECT, GRANT, REVOKE, SHOW GRANTS, or ALTER TABLE's "
                     "masks and row filters; time travel: db.t VERSION AS OF 3")
    timeout_s: float = Field(300, gt=0, le=24 * 3600)
    scan_limit_bytes: int | None = Field(None, gt=0)
    page_size: int = Field(1000, ge=0, le=100_000)


class QueryOut(BaseModel):
    id: str
    sql: str
    state: str
    error: str | None
    rows: int | None
    bytes_scanned: int | None
    cost_usd: float | None
    duration_ms: float | None
    created_at: datetime
    created_by: str | None
    finished_at: datetime | None
    results: bool = Field(False, description="whether its rows are still kept (a day) to page "
                          "through or download")


class SqlResult(QueryOut):
    columns: list[dict[str, str]]
    page: list[dict[str, Any]]
    next_offset: int | None
    written: dict[str, Any] | None


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows for JSON: whole decimals (DuckDB's sums of integers are 128-bit) as numbers, bytes
    (BLOB, BIT, DuckDB's BIGNUM) as base64, and times past Python's (DuckDB's ``'infinity'``)
    as Arrow's text for them. Either of the last two was a 500."""
    columns = [_json_values(field, column)
               for field, column in zip(table.schema, table.columns, strict=True)]
    return [dict(zip(table.column_names, values, strict=True))
            for values in zip(*columns, strict=True)]


def _json_values(field: pa.Field, column: pa.ChunkedArray) -> list[Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values: list[Any] = column.to_pylist()
    except (OverflowError, ValueError):  # a time Python's datetime cannot hold
        try:
            values = pc.cast(column, pa.string()).to_pylist()
        except pa.ArrowException as exc:
            raise Invalid(f"column {field.name!r} ({field.type}) holds values JSON cannot show; "
                          "download the results as parquet or csv instead") from exc
    kind = getattr(field.type, "storage_type", field.type)  # an extension type's values
    if pa.types.is_decimal(kind) or pa.types.is_nested(kind) or _is_bytes(kind):
        values = [_json_value(v) for v in values]
    return values


def _is_bytes(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind))


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _query_out(session: Session, q: SqlQuery) -> QueryOut:
    names = user_names(session, {q.created_by})
    return QueryOut(id=q.id, sql=q.sql, state=q.state, error=q.error, rows=q.rows,
                    bytes_scanned=q.bytes_scanned, cost_usd=q.cost_usd,
                    duration_ms=q.duration_ms, created_at=q.created_at,
                    created_by=names.get(q.created_by), finished_at=q.finished_at,
                    results=results.kept(q, utcnow()))


def _results_dir(request: Request) -> Path:
    return sql.results_dir(services(request).settings.home)


# Running SQL is asked where the caller works (``?project=team-a``: rights bound in team-a
# hold); each table a statement names is then asked on its own, in its own project.
@sql_router.post("",
                 dependencies=[allow("sql:Run", "sql", project=query_project)],
                 response_model=SqlResult, summary="Run a SQL statement")
def run_sql(body: SqlIn, request: Request, session: DbSession, storage: Storage,
            caller: Caller) -> SqlResult:
    try:
        command = access.parse_command(body.sql)
    except Invalid:  # refused, and recorded in the history, by sql.run
        command = None
    if command is not None and command.permission is not None:
        # The audit log records a GRANT or a mask as what it is, not as a query.
        request.scope[PERMISSION_KEY] = command.permission
    outcome = sql.run(session, storage, caller, body.sql, results_dir=_results_dir(request),
                      timeout_s=body.timeout_s, scan_limit_bytes=body.scan_limit_bytes,
                      owner=services(request).plane.id)
    page: list[dict[str, Any]] = []
    if outcome.result_key is not None and body.page_size:
        page = _json_rows(results.read_page(storage, outcome.result_key, offset=0,
                                            limit=body.page_size))
    rows = outcome.query.rows or 0
    more = outcome.result_key is not None and rows > len(page)
    return SqlResult(**_query_out(session, outcome.query).model_dump(), columns=outcome.columns,
                     page=page, next_offset=len(page) if more else None,
                     written=outcome.written)


@sql_router.get("/queries",
                dependencies=[allow("sql:Run", "sql", project=query_project)],
                response_model=list[QueryOut], summary="Query history")
def query_history(session: DbSession, caller: Caller, limit: int = Query(50, ge=1, le=1000),
                  state: str | None = None) -> list[QueryOut]:
    query = select(SqlQuery).order_by(SqlQuery.created_at.desc()).limit(limit)
    if state:
        query = query.where(SqlQuery.state == state)
    if not caller.can("sql:Read", "query/*", owner=""):  # not everyone's: one's own
        query = query.where(SqlQuery.created_by == caller.user_id)
    return [_query_out(session, q) for q in session.scalars(query)]


def _get_query(session: Session, query_id: str) -> SqlQuery:
    q = session.get(SqlQuery, query_id)
    if q is None:
        raise NotFound(f"no query {query_id!r}; 'cumulo queries ls' lists recent ones")
    return q


def query_owner(request: Request) -> Holder | None:
    """Who ran the route's query (for rights on one's own queries); None: no such query."""
    with services(request).sessions() as session:
        q = session.get(SqlQuery, request.path_params["query_id"])
        if q is None:
            return None
        return Holder(user_names(session, {q.created_by}).get(q.created_by, ""))


@sql_router.get("/queries/{query_id}",
                dependencies=[allow("sql:Read", "query/{query_id}", owner=query_owner,
                                    project=query_project)],
                response_model=QueryOut, summary="One query")
def get_query(query_id: str, session: DbSession) -> QueryOut:
    q = _get_query(session, query_id)
    sql.fail_orphaned(session, q, (p.id for p in live_planes(session)))
    return _query_out(session, q)


@sql_router.delete("/queries/{query_id}",
                   dependencies=[allow("sql:Read", "query/{query_id}", owner=query_owner,
                                       project=query_project)],
                   summary="Cancel a running query")
def cancel_query(query_id: str, request: Request, session: DbSession) -> dict[str, Any]:
    q = _get_query(session, query_id)
    if sql.cancel(query_id):
        return {"id": q.id, "cancelled": True, "state": q.state}
    live = {p.id: p for p in live_planes(session)}
    sql.fail_orphaned(session, q, live)
    owner = live.get(q.owner or "")
    if q.state != "running" or owner is None or owner.id == services(request).plane.id:
        return {"id": q.id, "cancelled": False, "state": q.state}
    # Running on another control plane (a load balancer sent this here): the cancel goes
    # there, as the caller.
    import httpx

    try:
        answer = httpx.delete(f"{owner.url}/api/v1/sql/queries/{query_id}", timeout=10,
                              headers={"authorization": "Bearer "
                                       + getattr(request.state, "credential", "")})
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"query {query_id} runs on control plane {owner.id[:8]}, which did "
                          f"not answer the cancel: {exc}", retry_after=1) from exc
    found: dict[str, Any] = answer.json()
    return found


@sql_router.get("/queries/{query_id}/results",
                dependencies=[allow("sql:Read", "query/{query_id}", owner=query_owner,
                                    project=query_project)],
                summary="A query's results: a page or a download",
                responses={200: {"content": {
                    media: {"schema": {"type": "string", "format": "binary"}}
                    for fmt, media in _MEDIA.items() if fmt != "json"}}})
def query_results(query_id: str, session: DbSession, storage: Storage, caller: Caller,
                  format: Literal["json", "csv", "parquet", "arrow", "jsonl"] = "json",
                  offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=100_000)) -> Any:
    q = _get_query(session, query_id)
    if q.created_by != caller.user_id:
        # Its rows were computed under its author's grants, column masks and row filters:
        # served to anyone else, they could show what that caller's own rules hide.
        raise Forbidden(f"the results of query {query_id} are its author's: they were computed "
                        "under their column masks and row filters. Run the query yourself",
                        details={"query": query_id})
    if q.state != "succeeded" or not q.result_location:
        raise Invalid(f"query {query_id} has no results ({q.state})")
    if not results.kept(q, utcnow()):
        raise NotFound(results.GONE)
    if format == "json":
        page = results.read_page(storage, q.result_location, offset=offset, limit=limit)
        more = offset + page.num_rows < (q.rows or 0)
        return {"id": q.id, "offset": offset, "rows": _json_rows(page),
                "columns": [{"name": f.name, "type": str(f.type)} for f in page.schema],
                "next_offset": offset + page.num_rows if more else None}
    reader = results.stream(storage, q.result_location)
    return StreamingResponse(_encode(reader, format), media_type=_MEDIA[format],
                             headers={"content-disposition":
                                      f'attachment; filename="{query_id}.{format}"'})
