"""Migrations apply on SQLite and on a real PostgreSQL, and applying them again is a no-op."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from cumulo.db import check_database, make_engine, upgrade
from cumulo.errors import Invalid, Unavailable


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'cumulo.db'}"
    return request.getfixturevalue("pg").create_database("m" + uuid.uuid4().hex[:10])  # type: ignore[no-any-return]


def test_upgrade_twice(url: str) -> None:
    engine = make_engine(url)
    check_database(engine)
    upgrade(engine)
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"users", "tokens", "buckets", "objects", "lake_databases", "lake_tables",
            "sql_queries", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0002"
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(text("pragma foreign_keys")).scalar() == 1
    engine.dispose()


def test_bad_urls() -> None:
    with pytest.raises(Invalid, match="supports sqlite and postgresql"):
        make_engine("oracle://x@y/z")
    engine = make_engine("postgresql://nobody:secret@127.0.0.1:1/db")
    with pytest.raises(Unavailable, match="cannot reach") as caught:
        check_database(engine)
    assert "secret" not in caught.value.message
