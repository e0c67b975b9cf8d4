"""What a backup reads: the storage root (a local folder, or an S3 bucket's prefix) and, for a
home whose metadata is on PostgreSQL, its databases copied into SQLite files at one moment.

Whatever the home runs on, a backup holds the same things (:mod:`cumulo.dr.backup`): a
``cumulo.db`` and an ``mlflow.db`` as a laptop's home has them, and the storage root's files.
So verify, restore (into a home, or onto PostgreSQL and S3), the drills and pruning never ask
what the source was.

- Storage is a :class:`Source` over the server's own storage backend (chosen by the storage URL):
  it lists the files under a prefix with what says whether one changed (size and modification
  time; an object's ETag too), opens one, and lists a Delta table's log versions.
- PostgreSQL is read in one ``REPEATABLE READ, READ ONLY`` transaction: Cumulo's tables and
  MLflow's (its ``mlflow`` schema) are all read as they were when that transaction's snapshot
  was taken, however long the copy takes and whatever the server writes meanwhile. The SQLite
  files get their schemas from Cumulo's migrations and MLflow's own, as a new home would; rows
  are copied a batch at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cumulo.config import Settings
from cumulo.errors import Invalid

if TYPE_CHECKING:  # SQLAlchemy is imported where PostgreSQL is read: backups of SQLite skip it
    from sqlalchemy import Connection, Table

    from cumulo.storage.backends import Backend, Blob

__all__ = ["LOG_ENTRY", "Reader", "Source", "copy_postgres", "copy_rows", "open_source",
           "walk_files"]

LOG_ENTRY = re.compile(r"^(\d{20})\.json$")  # a Delta log entry: its version, 20 digits
BATCH = 1000  # rows read and written at a time
MLFLOW_SCHEMA = "mlflow"  # where MLflow keeps its tables on PostgreSQL (cumulo.ml.tracking)


class Reader(Protocol):
    """A file or an object's body, open: ``read(n)`` returns ``n`` bytes until the end (so that
    a backup's pieces start at the same offsets every time)."""

    def read(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


class _WholeReads:
    """An object's body read as a file is: ``read(n)`` returns ``n`` bytes until the end (an
    HTTP body may return fewer)."""

    def __init__(self, body: BinaryIO) -> None:
        self._body = body

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        left = size
        while left > 0:
            data = self._body.read(left)
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def close(self) -> None:
        self._body.close()


class Source:
    """The storage root as a backup reads it, through the server's own backend (a folder or a
    bucket's prefix, chosen by the storage URL). Paths are relative to the root."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.url = backend.url

    def walk(self, prefix: str) -> Iterator[Blob]:
        """Every file under ``prefix`` (which ends in '/')."""
        return self.backend.walk(prefix)

    def open(self, path: str) -> Reader:
        """The file, open; FileNotFoundError when it was removed since it was listed."""
        local = self.backend.local_path(path)
        if local is not None:
            return open(local, "rb")  # a file's own reads: the fast path for a folder
        return _WholeReads(self.backend.open(path))

    def log_versions(self, location: str) -> list[int]:
        """The versions in the Delta log of the table at ``location``."""
        log = location.rstrip("/") + "/_delta_log/"
        return [int(m.group(1)) for blob in self.backend.walk(log)
                if (m := LOG_ENTRY.match(blob.key[len(log):]))]


def open_source(settings: Settings) -> Source:
    """The storage the settings name, opened as the server opens it."""
    from cumulo.storage.backends import open_backend

    return Source(open_backend(settings))


def walk_files(root: Path, prefix: str) -> Iterator[Blob]:
    """The files under ``root/prefix`` of a local storage folder (a home being restored)."""
    from cumulo.storage.backends.local import LocalBackend

    return LocalBackend(root).walk(prefix)


# --- PostgreSQL ----------------------------------------------------------------------------


def copy_rows(read: Connection, source: Table, write: Connection, target: Table) -> None:
    """Copy every row of ``source`` into ``target``, :data:`BATCH` rows at a time (a big table
    is never held whole). Columns the target lacks are left out; values bound for its Boolean
    columns are made bools (SQLite keeps them as 0 and 1)."""
    from sqlalchemy import Boolean, select

    keep = set(target.columns.keys())
    flags = {c.key for c in target.columns if isinstance(c.type, Boolean)}
    result = read.execution_options(yield_per=BATCH).execute(select(source))
    for rows in result.partitions():
        batch = []
        for r in rows:
            row = {k: v for k, v in r._mapping.items() if k in keep}
            for column in flags & row.keys():
                if row[column] is not None:
                    row[column] = bool(row[column])
            batch.append(row)
        write.execute(target.insert(), batch)


def copy_postgres(url: str, dest: Path) -> tuple[list[str], datetime]:
    """Copy Cumulo's database on PostgreSQL into ``dest/cumulo.db``, and MLflow's (when it has
    tables there) into ``dest/mlflow.db``, both from one snapshot. The names written, and the
    moment: taken just before the snapshot, so that nothing the copy holds is later than it."""
    from sqlalchemy import text

    from cumulo.db import check_database, make_engine

    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        check_database(engine)  # unreachable: Unavailable, naming the URL without its password
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
            with conn.begin():
                moment = datetime.now(UTC)
                conn.execute(text("select 1"))  # the snapshot is taken at the first statement
                _copy_cumulo(conn, dest / "cumulo.db", url)
                names = ["cumulo.db"]
                if _copy_mlflow(conn, dest / "mlflow.db"):
                    names.append("mlflow.db")
    finally:
        engine.dispose()
    return names, moment


def _schema_version(conn: Connection) -> str | None:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return None
    version: str | None = conn.execute(text("select version_num from alembic_version")).scalar()
    return version


def _copy_cumulo(read: Connection, path: Path, url: str) -> None:
    """Cumulo's tables (every service's models loaded first: :func:`cumulo.dr.backup.
    load_declarations`) into a SQLite file made by Cumulo's migrations, which must be the ones
    the database is at (else a column would be missing on one side)."""
    from sqlalchemy import create_engine

    from cumulo.db import Base, redact_url, upgrade

    theirs = _schema_version(read)
    if theirs is None:
        raise Invalid(f"the database at {redact_url(url)} holds no Cumulo metadata; is "
                      "database_url the server's (and has the server started on it once)?")
    engine = create_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.begin() as write:
            ours = _schema_version(write)
            if ours != theirs:
                raise Invalid(f"the database at {redact_url(url)} is at Cumulo's schema "
                              f"{theirs}, and this Cumulo's is {ours}: back up with the "
                              "Cumulo version the server runs")
            for table in Base.metadata.sorted_tables:
                copy_rows(read, table, write, table)
    finally:
        engine.dispose()


def _copy_mlflow(read: Connection, path: Path) -> bool:
    """MLflow's tables into a SQLite file whose schema MLflow makes (as it does for a new
    home); False when MLflow has no tables yet (it never started), as a home without an
    ``mlflow.db``."""
    from sqlalchemy import MetaData, create_engine

    source = MetaData()
    source.reflect(read, schema=MLFLOW_SCHEMA)
    if not source.tables:
        return False
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError as exc:
        raise Invalid("MLflow's tables are in this database; copying them needs MLflow: "
                      "pip install 'cumulo[ml]'") from exc
    store = SqlAlchemyStore(f"sqlite:///{path}", "mlflow-artifacts:/")  # type: ignore[no-untyped-call]
    store.engine.dispose()
    engine = create_engine(f"sqlite:///{path}")
    try:
        target = MetaData()
        target.reflect(engine)
        pairs = [(source.tables[f"{MLFLOW_SCHEMA}.{t.name}"], t) for t in target.sorted_tables
                 if t.name != "alembic_version" and f"{MLFLOW_SCHEMA}.{t.name}" in source.tables]
        with engine.begin() as write:
            for _, table in reversed(pairs):
                write.execute(table.delete())  # what opening the store made (its Default)
            for mine, table in pairs:
                copy_rows(read, mine, write, table)
    finally:
        engine.dispose()
    return True
