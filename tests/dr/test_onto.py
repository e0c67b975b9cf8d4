"""A laptop's home (SQLite and a local folder) restored onto PostgreSQL and S3: the documented
way to move to a server. A server on the new backends serves the same objects, tables, model
and tokens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import backend_env
from tests.services import CUMULO, base_env, register_churn, start_cumulo


def test_sqlite_and_folder_onto_postgres_and_s3(tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    laptop = start_cumulo(tmp_path / "laptop" / ".cumulo")
    try:
        c = laptop.client()
        c.files.create_bucket("raw")
        c.files.upload(b"id,v\n1,a\n", "raw/data.csv")
        c.tables.create_database("sales")
        c.sql("create table sales.orders as select 1 as id, 'x' as item")
        c.sql("insert into sales.orders select 2 as id, 'y' as item")
        register_churn(laptop, "churn", "onto")
        c.users.create("svc", kind="service", role="developer")
        svc_token = c.tokens.create("svc-key", user="svc")["token"]
        target = tmp_path / "backups"
        made = subprocess.run([CUMULO, "backup", "create", "--to", str(target), "--home",
                               str(laptop.home)], capture_output=True, text=True,
                              env=base_env(laptop.home), timeout=300)
        assert made.returncode == 0, made.stderr
    finally:
        laptop.stop()
    env = backend_env("postgres+s3", request)
    server_home = tmp_path / "server" / ".cumulo"
    out = subprocess.run([CUMULO, "backup", "restore", "latest", "--to", str(target),
                          "--to-home", str(server_home),
                          "--database-url", env["CUMULO_DATABASE_URL"],
                          "--storage-url", env["CUMULO_STORAGE_URL"], "--json"],
                         capture_output=True, text=True, timeout=300,
                         env={**base_env(server_home), **env})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["problems"] == []
    server = start_cumulo(server_home, env)
    try:
        from cumulo.client import Client

        s = server.client()
        assert s.files.read_bytes("raw/data.csv") == b"id,v\n1,a\n"
        ids = s.sql("select id from sales.orders order by id").to_arrow().column("id")
        assert ids.to_pylist() == [1, 2]
        assert len(s.tables.history("sales.orders")) >= 2
        assert len(s.models.versions("churn")) == 1  # MLflow's rows, in its own schema
        with Client(server.url, token=svc_token) as svc:
            assert any(b["name"] == "raw" for b in svc.files.buckets())
        # New rows get new ids after the copied ones (the sequences were moved on).
        s.files.create_bucket("after")
        s.users.create("newcomer", kind="service")
    finally:
        server.stop()
    # The same backup onto the same (now full) database is refused.
    again = subprocess.run([CUMULO, "backup", "restore", "latest", "--to", str(target),
                            "--to-home", str(tmp_path / "again"),
                            "--database-url", env["CUMULO_DATABASE_URL"]],
                           capture_output=True, text=True, timeout=300,
                           env={**base_env(tmp_path / "again"), **env})
    assert again.returncode == 1 and "already holds Cumulo's data" in again.stderr
