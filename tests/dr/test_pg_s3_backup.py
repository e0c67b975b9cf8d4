"""Backups of a server on PostgreSQL and S3: the same backup a laptop's home makes (SQLite files
and the storage root's files), so that it restores into a laptop's home on which a plain
server serves the same objects, tables, models and tokens; incremental on S3 as on a folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import backend_env
from tests.services import CUMULO, base_env, free_port, register_churn, start_cumulo


def _backup(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CUMULO, "backup", *args], capture_output=True, text=True,
                          timeout=300, env={**base_env(home), **env})


def _made(home: Path, env: dict[str, str], target: Path) -> dict:  # type: ignore[type-arg]
    out = _backup(home, env, "create", "--to", str(target), "--home", str(home), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_postgres_and_s3_back_up_and_restore_into_a_laptops_home(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = backend_env("postgres+s3", request)
    home = tmp_path / "server" / ".cumulo"
    target = tmp_path / "backups"
    blob = os.urandom(2_000_000)
    server = start_cumulo(home, env)
    try:
        c = server.client()
        c.files.create_bucket("raw")
        c.files.upload(b"id,v\n1,a\n", "raw/data.csv")
        c.files.upload(blob, "raw/blob.bin")
        c.tables.create_database("sales")
        c.sql("create table sales.orders as select 1 as id, 'x' as item")
        c.sql("insert into sales.orders select 2 as id, 'y' as item")
        register_churn(server, "churn", "pg-s3-backup")
        c.users.create("svc", kind="service", role="developer")
        svc_token = c.tokens.create("svc-key", user="svc")["token"]
        first = _made(home, env, target)
        c.files.upload(b"id,v\n1,b\n", "raw/data.csv")  # one object changed
        second = _made(home, env, target)
    finally:
        server.stop()
    assert first["source"]["database"] == "postgresql"
    assert set(first["databases"]) == {"cumulo.db", "mlflow.db"}
    assert first["totals"]["files"] >= 4  # the objects, the table's files, the model's
    # The incremental rule on S3: unchanged objects (same size, LastModified and ETag) are
    # taken from the first backup, not read again; the changed one is read.
    assert second["totals"]["reused_files"] >= first["totals"]["files"] - 1
    assert second["totals"]["stored_bytes"] < first["totals"]["stored_bytes"] / 4
    from cumulo.dr.repo import open_repository

    repo = open_repository(target)
    was, now = ({f["path"]: f for f in repo.snapshot(m["id"])["files"]} for m in (first, second))
    assert now["buckets/raw/blob.bin"]["etag"]
    assert now["buckets/raw/blob.bin"]["chunks"] == was["buckets/raw/blob.bin"]["chunks"]
    assert now["buckets/raw/data.csv"]["chunks"] != was["buckets/raw/data.csv"]["chunks"]
    assert _backup(home, env, "verify", "--to", str(target)).returncode == 0

    laptop = tmp_path / "laptop" / ".cumulo"
    restored = subprocess.run([CUMULO, "backup", "restore", "latest", "--to", str(target),
                               "--to-home", str(laptop), "--json"], capture_output=True,
                              text=True, timeout=300, env=base_env(laptop))
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["problems"] == []
    plain = start_cumulo(laptop)  # SQLite and a local folder: no PostgreSQL, no S3
    try:
        from cumulo.client import Client

        s = plain.client()
        assert s.files.read_bytes("raw/data.csv") == b"id,v\n1,b\n"
        assert s.files.read_bytes("raw/blob.bin") == blob
        ids = s.sql("select id from sales.orders order by id").to_arrow().column("id")
        assert ids.to_pylist() == [1, 2]
        assert len(s.tables.history("sales.orders")) >= 2
        assert len(s.models.versions("churn")) == 1  # MLflow's rows, from its schema
        with Client(plain.url, token=svc_token) as svc:
            assert any(b["name"] == "raw" for b in svc.files.buckets())
    finally:
        plain.stop()


def test_an_unreachable_or_foreign_database_is_named_and_nothing_is_listed(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home = tmp_path / ".cumulo"
    home.mkdir()
    target = tmp_path / "backups"
    gone = {"CUMULO_DATABASE_URL": f"postgresql://cumulo:s3cret@127.0.0.1:{free_port()}/cumulo"}
    out = _backup(home, gone, "create", "--to", str(target), "--home", str(home))
    assert out.returncode == 1
    assert "cannot reach the metadata database" in out.stderr
    assert gone["CUMULO_DATABASE_URL"].split("@")[1] in out.stderr
    assert "s3cret" not in out.stderr and "Traceback" not in out.stderr
    # A database that holds no Cumulo metadata (the wrong database_url) is refused as well.
    empty = {"CUMULO_DATABASE_URL": backend_env("postgres+local", request)["CUMULO_DATABASE_URL"]}
    out = _backup(home, empty, "create", "--to", str(target), "--home", str(home))
    assert out.returncode == 1 and "holds no Cumulo metadata" in out.stderr
    listed = _backup(home, {}, "ls", "--to", str(target), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
