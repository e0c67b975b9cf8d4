"""Catalog rows: databases, tables, the history of SQL queries, and who sees what of a table
(column masks and row filters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cumulo import state
from cumulo.db import Base, Created, InProject, UTCDateTime

__all__ = ["ColumnMask", "CrawlPolicy", "LakeDatabase", "LakeTable", "RowFilter", "SqlQuery",
           "TableInfo"]

CrawlPolicy = Literal["log", "update"]


class LakeDatabase(Created, InProject, Base):
    __tablename__ = "lake_databases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class LakeTable(Created, InProject, Base):
    """A managed table is a Delta table under the storage root; an external one (made by the
    crawler) points at files in object storage, with the schema the crawler inferred."""

    __tablename__ = "lake_tables"
    __table_args__ = (UniqueConstraint("database_id", "name", name="uq_lake_tables_db_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    database_id: Mapped[int] = mapped_column(ForeignKey("lake_databases.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # managed | external
    format: Mapped[str] = mapped_column(String(16))  # delta | parquet | csv | json
    location: Mapped[str] = mapped_column(String(1024))  # relative to the storage root
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    partition_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SqlQuery(Created, Base):
    __tablename__ = "sql_queries"
    __table_args__ = (Index("ix_sql_queries_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sql: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | cancelled
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_scanned: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    result_location: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # The control plane that runs it (cumulo.leases): where a cancel goes.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ColumnMask(Created, Base):
    """What one user or group sees of a column instead of its values: an SQL expression over
    the row (lake/access.py). Goes with its table."""

    __tablename__ = "table_masks"
    __table_args__ = (UniqueConstraint("table_id", "column", "subject_kind", "subject_id",
                                       name="uq_table_masks_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_id: Mapped[int] = mapped_column(ForeignKey("lake_tables.id", ondelete="CASCADE"),
                                          index=True)
    column: Mapped[str] = mapped_column(String(255))
    expression: Mapped[str] = mapped_column(Text)  # as DuckDB's parser writes it back
    subject_kind: Mapped[str] = mapped_column(String(8))  # "user" or "group"
    subject_id: Mapped[int] = mapped_column(Integer)


class RowFilter(Created, Base):
    """Which rows of a table one user or group sees: those where the predicate holds."""

    __tablename__ = "table_row_filters"
    __table_args__ = (UniqueConstraint("table_id", "subject_kind", "subject_id",
                                       name="uq_table_row_filters_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_id: Mapped[int] = mapped_column(ForeignKey("lake_tables.id", ondelete="CASCADE"),
                                          index=True)
    predicate: Mapped[str] = mapped_column(Text)
    subject_kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int] = mapped_column(Integer)


@dataclass
class TableInfo:
    """What `tables show` answers: the catalog row, and the Delta log's facts at a version."""

    name: str
    kind: str
    format: str
    location: str
    description: str
    tags: dict[str, Any]
    columns: list[dict[str, Any]]
    partition_columns: list[str]
    version: int | None
    rows: int | None
    bytes: int | None
    files: int | None
    created_at: datetime
    updated_at: datetime | None
    project: str | None = None


state.declare("lake", tables=("lake_databases", "lake_tables", "sql_queries", "table_masks",
                              "table_row_filters"),
              # sql/results/: SQL results, kept a day for paging and downloads (results.py).
              # They could be computed again, but a storage prefix is backed up or not held:
              # they are backed up with the rest.
              prefixes=("lake/", "sql/"),
              caches=("results",))  # DuckDB's spill, and the results older versions kept
