"""The catalog: databases and tables, and where each table's data lives."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import projects
from cumulo.db import utcnow
from cumulo.errors import Conflict, NotFound
from cumulo.lake import delta
from cumulo.lake.models import LakeDatabase, LakeTable, TableInfo
from cumulo.lake.projects import table_project
from cumulo.lake.refs import TableRef, validate_name
from cumulo.principal import Principal
from cumulo.storage.backends import Backend

__all__ = [
    "create_database",
    "current_version",
    "drop_database",
    "drop_table",
    "ensure_managed_table",
    "full_uri",
    "get_database",
    "get_table",
    "list_databases",
    "list_tables",
    "location",
    "table_info",
]


def location(backend: Backend, table: LakeTable) -> delta.Location:
    uri, options = backend.table_uri(table.location)
    return delta.Location(uri, options)


def full_uri(backend: Backend, key: str) -> str:
    """The full URI of what lies under the storage key ``key``, for tools outside Cumulo:
    ``file:///abs/path`` on local storage, ``s3://bucket/prefix/...`` on S3."""
    uri, _ = backend.table_uri(key)
    return uri if "://" in uri else Path(uri).as_uri()


def current_version(session: Session, backend: Backend, ref: TableRef) -> int:
    """The table's latest version (a ref that pins one gives that one): what other services
    read to key caches and fire triggers, without opening Delta tables themselves."""
    if ref.version is not None:
        return ref.version
    row = get_table(session, ref)
    return int(delta.open_table(location(backend, row), name=ref.name).version())


# --- databases ---------------------------------------------------------------------------------


def get_database(session: Session, name: str) -> LakeDatabase:
    db = session.scalar(select(LakeDatabase).where(LakeDatabase.name == name))
    if db is None:
        names = list(session.scalars(select(LakeDatabase.name)))
        near = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else (
            f"; create it with 'cumulo tables create-db {name}'")
        raise NotFound(f"database {name!r} does not exist{hint}", details={"database": name})
    return db


def create_database(session: Session, principal: Principal, name: str,
                    description: str = "", *, project: str | None = None) -> LakeDatabase:
    """Make a database, in ``project`` when one is named: the tables made in it are the
    project's too."""
    validate_name(name, "database")
    project_id = projects.project_id_for(session, project)
    db = LakeDatabase(name=name, description=description, created_by=principal.user_id,
                      created_at=utcnow(), project_id=project_id)
    session.add(db)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"database {name!r} already exists") from exc
    return db


def list_databases(session: Session, *,
                   project: str | None = None) -> list[tuple[LakeDatabase, int]]:
    """Every database with its count of tables, or those of ``project``."""
    project_id = projects.project_id_for(session, project)
    counts = (select(LakeTable.database_id, func.count().label("n"))
              .group_by(LakeTable.database_id).subquery())
    query = select(LakeDatabase, counts.c.n).outerjoin(
        counts, counts.c.database_id == LakeDatabase.id)
    if project is not None:
        query = query.where(LakeDatabase.project_id == project_id)
    rows = session.execute(query.order_by(LakeDatabase.name))
    return [(db, int(n or 0)) for db, n in rows]


def drop_database(session: Session, backend: Backend, name: str, *, cascade: bool) -> int:
    db = get_database(session, name)
    tables = list(session.scalars(select(LakeTable).where(LakeTable.database_id == db.id)))
    if tables and not cascade:
        raise Conflict(f"database {name!r} holds {len(tables)} table(s); drop them first or "
                       "pass --cascade", details={"tables": [t.name for t in tables]})
    for table in tables:
        _drop(session, backend, table)
    session.delete(db)
    session.commit()
    return len(tables)


# --- tables ------------------------------------------------------------------------------------


def list_tables(session: Session, database: str | None = None, *,
                project: str | None = None) -> list[tuple[str, LakeTable]]:
    """Every table (of ``database``, of ``project``) with its database's name."""
    project_id = projects.project_id_for(session, project)
    query = select(LakeDatabase.name, LakeTable).join(LakeDatabase)
    if database:
        query = query.where(LakeDatabase.id == get_database(session, database).id)
    if project is not None:
        query = query.where(func.coalesce(LakeTable.project_id, LakeDatabase.project_id)
                            == project_id)
    return [(d, t) for d, t in session.execute(query.order_by(LakeDatabase.name, LakeTable.name))]


def all_table_names(session: Session) -> list[str]:
    return [f"{d}.{t.name}" for d, t in list_tables(session)]


def get_table(session: Session, ref: TableRef) -> LakeTable:
    db = get_database(session, ref.database)
    table = session.scalar(select(LakeTable).where(LakeTable.database_id == db.id,
                                                   LakeTable.name == ref.table))
    if table is None:
        near = difflib.get_close_matches(ref.name, all_table_names(session), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else (
            f"; 'cumulo tables ls {ref.database}' lists its tables")
        raise NotFound(f"table {ref.name} does not exist{hint}", details={"table": ref.name})
    return table


def ensure_managed_table(session: Session, principal: Principal, ref: TableRef) -> LakeTable:
    """The managed table ``ref``, registered now if it is new (its data comes with the load),
    in its database's project."""
    db = get_database(session, ref.database)
    table = session.scalar(select(LakeTable).where(LakeTable.database_id == db.id,
                                                   LakeTable.name == ref.table))
    if table is not None:
        if table.kind != "managed":
            raise Conflict(f"{ref.name} is an external table over files; load into a managed "
                           "table instead, or drop it first")
        return table
    table = LakeTable(
        database_id=db.id, name=ref.table, kind="managed", format="delta",
        location=f"lake/{ref.database}/{ref.table}", description="", tags={}, columns=[],
        partition_columns=[], options={}, created_by=principal.user_id, created_at=utcnow(),
        project_id=db.project_id,
    )
    session.add(table)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return get_table(session, ref)
    return table


def drop_table(session: Session, backend: Backend, ref: TableRef) -> None:
    _drop(session, backend, get_table(session, ref))
    session.commit()


def _drop(session: Session, backend: Backend, table: LakeTable) -> None:
    session.delete(table)
    if table.kind == "managed":
        backend.delete_prefix(table.location.rstrip("/") + "/")


def _columns(schema: Any) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def table_info(session: Session, backend: Backend, ref: TableRef) -> TableInfo:
    table = get_table(session, ref)
    info = TableInfo(
        name=ref.name, kind=table.kind, format=table.format, location=table.location,
        description=table.description, tags=table.tags, columns=table.columns,
        partition_columns=table.partition_columns, version=None, rows=None, bytes=None,
        files=None, created_at=table.created_at, updated_at=table.updated_at,
        project=table_project(session, f"{ref.database}/{ref.table}"),
    )
    # A Delta table's facts come from its log, a managed one's or one another tool wrote
    if table.format == "delta" and delta.exists(location(backend, table)):
        dt = delta.open_table(location(backend, table), version=ref.version, as_of=ref.as_of,
                              name=ref.name)
        add = pa.table(dt.get_add_actions(flatten=True))
        info.version = dt.version()
        info.columns = _columns(delta._delta_schema_to_arrow(dt))
        info.partition_columns = list(dt.metadata().partition_columns)
        info.files = add.num_rows
        info.bytes = int(pc.sum(add["size_bytes"]).as_py() or 0) if add.num_rows else 0
        if "num_records" in add.column_names:
            info.rows = int(pc.sum(add["num_records"]).as_py() or 0) if add.num_rows else 0
    return info
