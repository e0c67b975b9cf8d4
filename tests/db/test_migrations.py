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
            "sql_queries", "table_masks", "table_row_filters", "clusters", "jobs", "job_metrics",
            "job_artifacts", "code_snapshots", "usage_records", "model_alias_events", "endpoints",
            "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0031"
    engine.dispose()


def test_models_match_the_migrations(url: str) -> None:
    """Every model's table as the migrations made it: no column, index or type missing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import cumulo.access.models
    import cumulo.compute.models
    import cumulo.dr.models
    import cumulo.lake.models
    import cumulo.leases
    import cumulo.metering.models
    import cumulo.ml.models
    import cumulo.notebooks.models
    import cumulo.pipelines.models
    import cumulo.serving.models
    import cumulo.serving.monitors.models
    import cumulo.storage.models
    import cumulo.streams.models  # noqa: F401
    from cumulo.db import Base

    engine = make_engine(url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    # A column's inline UNIQUE gets the database's own name (or none, on SQLite), not the
    # naming convention's: a difference of names only, so unique constraints are not compared.
    assert [d for d in diff
            if d[0] not in ("remove_table", "add_constraint", "remove_constraint")] == []


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


def test_a_single_user_home_upgrades_in_place_and_admin_keeps_everything(url: str) -> None:
    """A home made before identity and access (revision 0010: one admin, a user added by
    hand, their tokens) upgrades to the newest schema: the admin holds the admin role
    everywhere, the other user a developer's rights, every token still works."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.orm import Session, sessionmaker

    from cumulo.access.authz import Authorizer
    from cumulo.access.tokens import authenticate
    from cumulo.db import migrate

    engine = make_engine(url)
    check_database(engine)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrate._SCRIPTS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
        for uid, name, admin in ((1, "admin", True), (2, "bob", False)):
            conn.execute(text("insert into users (id, name, is_admin, created_at) values "
                              "(:id, :name, :admin, current_timestamp)"),
                         {"id": uid, "name": name, "admin": admin})
            conn.execute(text(
                "insert into tokens (user_id, name, prefix, secret_hash, created_at) values "
                "(:uid, :name, 'cml_', :hash, current_timestamp)"),
                {"uid": uid, "name": name, "hash": _sha(f"cml_{name}-secret-0123456789")})
    upgrade(engine)
    with Session(engine) as session:
        admin = authenticate(session, "cml_admin-secret-0123456789")
        bob = authenticate(session, "cml_bob-secret-0123456789")
    decider = Authorizer(sessionmaker(engine))
    for action, resource in (("users:Manage", "user/bob"), ("policies:Manage", "policy/x"),
                             ("tables:Drop", "table/sales/orders"), ("audit:Read", "audit")):
        assert decider.check(admin, action, resource) is None, action
    assert decider.check(bob, "jobs:Submit", "job/*") is None
    assert decider.check(bob, "users:Manage", "user/admin") is not None
    engine.dispose()


def _sha(text_: str) -> str:
    import hashlib

    return hashlib.sha256(text_.encode()).hexdigest()
