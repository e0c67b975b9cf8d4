"""Restoring onto other backends: a backup onto PostgreSQL and S3 (the documented way to move
from a laptop to a server, or to a new server). Every backup holds SQLite files and plain files,
whatever its home ran on (:mod:`cumulo.dr.sources`), so this is one path for all of them.

The backup is restored into a scratch folder first (every piece checked). Then:
- Cumulo's metadata: the target database gets Cumulo's schema (its migrations), and every
  table's rows are copied (a batch at a time) in the order their foreign keys need, through
  the same models the server uses (so times and flags convert as they do there); each id
  sequence then starts after the largest id copied.
- MLflow's database: MLflow makes its own schema in the target (its ``mlflow`` schema), and the
  rows are copied table by table, each value converted to the target column's type.
- Storage: every file is put under the target storage URL, as the server would write it.
A target that already holds Cumulo's rows is refused: restore onto an empty database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, func, inspect, select, text
from sqlalchemy.engine import Engine

from cumulo.config import Settings
from cumulo.dr.backup import Restored, load_declarations, restore_manifest
from cumulo.dr.repo import Repository
from cumulo.dr.sources import copy_rows
from cumulo.errors import Conflict, Invalid

__all__ = ["restore_onto"]


def restore_onto(repo: Repository, manifest: dict[str, Any], settings: Settings, *,
                 say: Any = lambda _: None) -> Restored:
    """Restore ``manifest`` onto the database and storage ``settings`` name."""
    if settings.database_url.startswith("sqlite") and not settings.storage_url.startswith(
            "s3://"):
        raise Invalid("restoring onto other backends is for PostgreSQL and/or S3; for a "
                      "SQLite home with a local folder, restore with --to-home")
    with tempfile.TemporaryDirectory(prefix="cumulo-onto-") as tmp:
        scratch = Path(tmp) / "home"
        say("restoring into a scratch folder")
        done = restore_manifest(repo, manifest, scratch)
        if done.problems:
            return done
        say("copying the metadata")
        _copy_metadata(scratch / "cumulo.db", settings.database_url)
        if (scratch / "mlflow.db").is_file():
            say("copying MLflow's database")
            _copy_mlflow(scratch / "mlflow.db", settings)
        say("copying the files to storage")
        _copy_storage(scratch / "storage", settings)
    done.home = settings.home
    return done


def _copy_metadata(source: Path, url: str) -> None:
    from cumulo.db import Base, make_engine, upgrade

    load_declarations()
    src = create_engine(f"sqlite:///{source}")
    dst = make_engine(url, pool_size=1, max_overflow=0)
    try:
        upgrade(dst)
        with dst.connect() as conn:
            for table in Base.metadata.sorted_tables:
                if conn.execute(select(func.count()).select_from(table)).scalar():
                    raise Conflict(f"the target database already holds Cumulo's data (table "
                                   f"{table.name}); restore onto an empty database")
        with src.connect() as read, dst.begin() as write:
            for table in Base.metadata.sorted_tables:
                copy_rows(read, table, write, table)
            _reset_sequences(write, [t.name for t in Base.metadata.sorted_tables], None)
    finally:
        src.dispose()
        dst.dispose()


def _reset_sequences(conn: Any, tables: list[str], schema: str | None) -> None:
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        qualified = f"{schema}.{table}" if schema else table
        for column in inspect(conn).get_columns(table, schema=schema):
            seq = conn.execute(text("select pg_get_serial_sequence(:t, :c)"),
                               {"t": qualified, "c": column["name"]}).scalar()
            if seq:
                conn.execute(text(f'select setval(:s, coalesce((select max("{column["name"]}") '
                                  f"from {qualified}), 0) + 1, false)"), {"s": seq})


def _copy_mlflow(source: Path, settings: Settings) -> None:
    from cumulo.ml.tracking import backend_store_uri

    target_url = backend_store_uri(settings)
    if target_url.startswith("sqlite"):
        import shutil

        Path(target_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_url.removeprefix("sqlite:///"))
        return
    base = create_engine(settings.database_url.replace("postgresql://",
                                                       "postgresql+psycopg://", 1))
    with base.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS mlflow"))
    base.dispose()
    # MLflow makes its own tables (its migrations) when its store is opened.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(target_url, "mlflow-artifacts:/")  # type: ignore[no-untyped-call]
    src = create_engine(f"sqlite:///{source}")
    dst = create_engine(target_url)
    try:
        _copy_rows(src, dst, schema="mlflow")
    finally:
        src.dispose()
        dst.dispose()


def _copy_rows(src: Engine, dst: Engine, *, schema: str) -> None:
    read_meta, write_meta = MetaData(), MetaData()
    read_meta.reflect(src)
    write_meta.reflect(dst, schema=schema)
    with src.connect() as read, dst.begin() as write:
        targets = {t.name: t for t in write_meta.sorted_tables}
        for table in write_meta.sorted_tables:
            if table.name == "alembic_version" or table.name not in read_meta.tables:
                continue
            if write.execute(select(func.count()).select_from(table)).scalar():
                write.execute(table.delete())  # what opening the store seeded (defaults)
        for name, table in targets.items():
            if name != "alembic_version" and name in read_meta.tables:
                copy_rows(read, read_meta.tables[name], write, table)
        _reset_sequences(write, [n for n in targets if n != "alembic_version"], schema)


def _copy_storage(root: Path, settings: Settings) -> None:
    import os
    import shutil

    from cumulo.storage.backends import open_backend

    backend = open_backend(settings)
    spool_dir = backend.spool_dir()
    spool_dir.mkdir(parents=True, exist_ok=True)
    for n, (dirpath, _, files) in enumerate(os.walk(root)):
        for name in files:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            spool = spool_dir / f"onto-{os.getpid()}-{n}-{name}"
            shutil.copyfile(path, spool)
            backend.commit(spool, key)
