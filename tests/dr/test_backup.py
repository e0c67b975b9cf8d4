"""Backups of a real home: made while a server runs, incremental by content, checked piece by
piece, restored into a new home on which a new server serves the same data to the same
tokens."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import CUMULO, Cumulo, base_env, start_cumulo


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    home = tmp_path_factory.mktemp("dr") / ".cumulo"
    server = start_cumulo(home)
    c = server.client()
    c.files.create_bucket("raw")
    c.files.upload(b"id,v\n1,a\n2,b\n", "raw/data.csv")
    c.files.upload(os.urandom(300_000), "raw/blob.bin")
    c.tables.create_database("sales")
    c.sql("create table sales.orders as select 1 as id, 'x' as item")
    c.sql("insert into sales.orders select 2 as id, 'y' as item")
    c.users.create("ana", kind="service", role="developer")
    server.ana_token = c.tokens.create("ana-laptop", user="ana")["token"]  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CUMULO, *args], capture_output=True, text=True, timeout=300,
                          env={**base_env(home)})


def _digests(root: Path) -> dict[str, str]:
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if ".tmp" in path.parts:
                continue
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_backup_restore_round_trip(source: Cumulo, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    made = _cli(source.home, "backup", "create", "--to", str(target), "--home",
                str(source.home), "--json")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    assert first["totals"]["files"] > 0 and first["totals"]["stored_bytes"] > 0
    assert set(first["databases"]) >= {"cumulo.db"}
    # A small change, then a second backup: only what changed is stored.
    source.client().files.upload(b"new", "raw/small.txt")
    again = json.loads(_cli(source.home, "backup", "create", "--to", str(target), "--home",
                            str(source.home), "--json").stdout)
    assert again["totals"]["reused_files"] >= first["totals"]["files"] - 1
    assert again["totals"]["stored_bytes"] < first["totals"]["stored_bytes"] / 2
    listed = json.loads(_cli(source.home, "backup", "ls", "--to", str(target), "--json").stdout)
    assert [b["id"] for b in listed] == [first["id"], again["id"]]
    checked = _cli(source.home, "backup", "verify", "--to", str(target))
    assert checked.returncode == 0 and "every piece checked" in checked.stdout

    home = tmp_path / "restored"
    restored = _cli(source.home, "backup", "restore", again["id"], "--to", str(target),
                    "--to-home", str(home), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["problems"] == []
    # Every restored file is as it is in the source (which writes only its audit log now),
    # and every object and user table's file is there.
    have, was = _digests(home / "storage"), _digests(source.home / "storage")
    assert {k: was.get(k) for k in have} == have
    assert {k for k in was if k.startswith(("buckets/", "lake/sales/"))} <= set(have)
    # A server on the restored home serves the same data to the same token.
    server = start_cumulo(home)
    try:
        from cumulo.client import Client

        c = server.client()
        assert c.files.read_bytes("raw/data.csv") == b"id,v\n1,a\n2,b\n"
        assert c.files.read_bytes("raw/small.txt") == b"new"
        table = c.sql("select id from sales.orders order by id").to_arrow()
        assert table.column("id").to_pylist() == [1, 2]
        assert len(c.tables.history("sales.orders")) >= 2  # every version
        # A user's token made before the backup works against the restored platform.
        with Client(server.url, token=source.ana_token) as ana:  # type: ignore[attr-defined]
            assert any(b["name"] == "raw" for b in ana.files.buckets())
    finally:
        server.stop()


def test_restore_refuses_a_home_in_use_and_names_a_corrupt_piece(source: Cumulo,
                                                                 tmp_path: Path) -> None:
    target = tmp_path / "b"
    assert _cli(source.home, "backup", "create", "--to", str(target), "--home",
                str(source.home)).returncode == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    refused = _cli(source.home, "backup", "restore", "latest", "--to", str(target),
                   "--to-home", str(busy))
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    # Corrupt one piece of the CSV object: verify names the file; restore does the rest.
    manifest_files = json.loads(_cli(source.home, "backup", "show", "latest", "--to",
                                     str(target), "--json").stdout)
    assert manifest_files["totals"]["files"] > 0
    from cumulo.dr.repo import open_repository

    repo = open_repository(target)
    snap = repo.snapshot("latest")
    entry = next(f for f in snap["files"] if f["path"].endswith("raw/data.csv"))
    piece = target / "chunks" / entry["chunks"][0][:2] / entry["chunks"][0]
    piece.write_bytes(b"not what it was")
    checked = _cli(source.home, "backup", "verify", "--to", str(target))
    assert checked.returncode == 1
    assert "corrupt: storage/buckets/raw/data.csv" in checked.stderr
    home = tmp_path / "partial"
    partial = _cli(source.home, "backup", "restore", "latest", "--to", str(target),
                   "--to-home", str(home))
    assert partial.returncode == 1
    assert "not restored: storage/buckets/raw/data.csv" in partial.stderr
    assert (home / "cumulo.db").is_file() and not (home / "storage/buckets/raw/data.csv").exists()


def test_encrypted_backups_need_their_key(source: Cumulo, tmp_path: Path) -> None:
    key, wrong = tmp_path / "backup.key", tmp_path / "other.key"
    key.write_bytes(os.urandom(32))
    wrong.write_bytes(os.urandom(32))
    target = tmp_path / "enc"
    assert _cli(source.home, "backup", "create", "--to", str(target), "--key-file", str(key),
                "--home", str(source.home)).returncode == 0
    assert b"id,v" not in b"".join(p.read_bytes() for p in (target / "chunks").rglob("*")
                                   if p.is_file())
    no_key = _cli(source.home, "backup", "ls", "--to", str(target))
    assert no_key.returncode == 1 and "encrypted: give --key-file" in no_key.stderr
    bad = _cli(source.home, "backup", "ls", "--to", str(target), "--key-file", str(wrong))
    assert bad.returncode == 1 and "does not open" in bad.stderr
    good = _cli(source.home, "backup", "verify", "--to", str(target), "--key-file", str(key))
    assert good.returncode == 0, good.stderr


def test_a_backup_killed_halfway_is_never_listed(source: Cumulo, tmp_path: Path) -> None:
    target = tmp_path / "k"
    assert _cli(source.home, "backup", "create", "--to", str(target), "--home",
                str(source.home)).returncode == 0
    source.client().files.upload(os.urandom(8_000_000), "raw/big.bin")
    proc = subprocess.Popen([CUMULO, "backup", "create", "--to", str(target), "--home",
                             str(source.home)], env=base_env(source.home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            p.stat().st_size > 1_000_000 for p in (target / "chunks").rglob("*") if p.is_file()
            and p.stat().st_mtime > time.time() - 30):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = json.loads(_cli(source.home, "backup", "ls", "--to", str(target),
                             "--json").stdout)
    assert len(listed) in (1, 2)  # the first; the second only if it finished before the kill
    assert _cli(source.home, "backup", "verify", "--to", str(target)).returncode == 0
    source.client().files.delete("raw/big.bin")


def test_writes_during_a_backup_restore_consistent(source: Cumulo, tmp_path: Path) -> None:
    """Objects written again and table versions committed while a backup runs: what it
    restores agrees with itself (each object's bytes match its catalog entry; each table
    reads at a version its catalog names)."""
    import threading
    import time

    c = source.client()
    c.sql("create table sales.stream as select 0 as n")
    stop = threading.Event()
    wrote = {"objects": 0, "versions": 0}

    def write() -> None:
        from cumulo.client import Client

        with Client(source.url, token=source.token) as w:
            n = 0
            while not stop.is_set():
                n += 1
                w.files.upload(f"v{n}".encode() * 50_000, "raw/churning.bin")
                w.sql(f"insert into sales.stream select {n} as n")
                wrote["objects"] += 1
                wrote["versions"] += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(0.5)
    target = tmp_path / "busy-backup"
    try:
        made = _cli(source.home, "backup", "create", "--to", str(target), "--home",
                    str(source.home), "--json")
        assert made.returncode == 0, made.stderr
    finally:
        stop.set()
        writer.join(60)
    assert wrote["objects"] >= 2
    home = tmp_path / "busy-restored"
    assert _cli(source.home, "backup", "restore", "latest", "--to", str(target), "--to-home",
                str(home)).returncode == 0
    server = start_cumulo(home)
    try:
        r = server.client()
        body = r.files.read_bytes("raw/churning.bin")  # checked against its SHA-256
        assert body.startswith(b"v") and len(body) > 0
        head = r.files.head("raw/churning.bin")
        assert head.size == len(body)
        n = r.sql("select count(*) as n, max(n) as top from sales.stream").to_arrow()
        count, top = n.column("n")[0].as_py(), n.column("top")[0].as_py()
        assert count == top + 1  # one row per version 0..top: a whole version, no gaps
    finally:
        server.stop()


def test_drill_restores_serves_checks_and_measures(source: Cumulo, tmp_path: Path) -> None:
    target = tmp_path / "drill"
    assert _cli(source.home, "backup", "create", "--to", str(target), "--home",
                str(source.home)).returncode == 0
    done = _cli(source.home, "backup", "drill", "--to", str(target), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["checked"]["objects"] >= 2 and report["checked"]["table_versions"] >= 2
    assert 0 <= report["rpo_seconds"] < 300 and 0 < report["rto_seconds"] < 120
    # A corrupt piece makes the drill fail, naming it.
    from cumulo.dr.repo import open_repository

    snap = open_repository(target).snapshot("latest")
    entry = next(f for f in snap["files"] if f["path"].endswith("raw/blob.bin"))
    (target / "chunks" / entry["chunks"][0][:2] / entry["chunks"][0]).write_bytes(b"x")
    failed = _cli(source.home, "backup", "drill", "--to", str(target))
    assert failed.returncode == 1 and "raw/blob.bin" in failed.stderr


def test_a_target_that_fills_up_leaves_the_earlier_backups_whole(source: Cumulo,
                                                                 tmp_path: Path) -> None:
    target = tmp_path / "small"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small file system is needed, and mounting one is not permitted here: "
                    f"{mounted.stderr.strip()}")
    try:
        first = _cli(source.home, "backup", "create", "--to", str(target), "--home",
                     str(source.home))
        assert first.returncode == 0, first.stderr
        source.client().files.upload(os.urandom(4_000_000), "raw/too-big.bin")
        full = _cli(source.home, "backup", "create", "--to", str(target), "--home",
                    str(source.home))
        assert full.returncode == 1
        assert "is full" in full.stderr and "ones before it are whole" in full.stderr
        assert "Traceback" not in full.stderr
        listed = json.loads(_cli(source.home, "backup", "ls", "--to", str(target),
                                 "--json").stdout)
        assert len(listed) == 1
        assert _cli(source.home, "backup", "verify", "--to", str(target)).returncode == 0
    finally:
        source.client().files.delete("raw/too-big.bin")
        subprocess.run(["umount", str(target)], check=False)


def test_partial_restores_through_the_running_server(source: Cumulo, tmp_path: Path) -> None:
    c = source.client()
    c.pipelines.create({"name": "daily", "nodes": [
        {"id": "a", "component": "sql_transform", "params": {"query": "select 1 as x"}}]})
    target = tmp_path / "parts"
    assert _cli(source.home, "backup", "create", "--to", str(target), "--home",
                str(source.home)).returncode == 0
    # Things go wrong: an object deleted, a table overwritten, a pipeline deleted.
    c.files.delete("raw/data.csv")
    c.sql("insert into sales.orders select 3 as id, 'z' as item")
    c.pipelines.delete("daily")

    def restore(*args: str) -> dict:  # type: ignore[type-arg]
        out = subprocess.run([CUMULO, "backup", "restore", "latest", "--to", str(target),
                              *args, "--json"], capture_output=True, text=True, timeout=300,
                             env={**base_env(source.home), "CUMULO_URL": source.url,
                                  "CUMULO_TOKEN": source.token})
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    done = restore("--bucket", "raw")
    assert done["restored"] == 1 and done["unchanged"] >= 1
    assert c.files.read_bytes("raw/data.csv") == b"id,v\n1,a\n2,b\n"
    done = restore("--table", "sales.orders", "--version", "0", "--as", "sales.orders_v0")
    assert done["rows"] == 1
    assert c.sql("select count(*) as n from sales.orders_v0").to_arrow().column("n")[0].as_py() == 1
    assert c.sql("select count(*) as n from sales.orders").to_arrow().column("n")[0].as_py() == 3
    done = restore("--pipeline", "daily", "--as", "daily")
    assert c.pipelines.show("daily")["name"] == "daily"
    bad = subprocess.run([CUMULO, "backup", "restore", "latest", "--to", str(target), "--table",
                          "sales.orders", "--version", "9"], capture_output=True, text=True,
                         env={**base_env(source.home), "CUMULO_URL": source.url,
                              "CUMULO_TOKEN": source.token}, timeout=120)
    assert bad.returncode == 1 and "version 9 is not one of them" in bad.stderr


def test_backups_to_an_s3_bucket(source: Cumulo, tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket="backups")
    env = {**base_env(source.home), **s3.env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CUMULO, *args], capture_output=True, text=True, timeout=300,
                              env=env)

    target = "s3://backups/cumulo"
    made = cli("backup", "create", "--to", target, "--home", str(source.home), "--json")
    assert made.returncode == 0, made.stderr
    again = json.loads(cli("backup", "create", "--to", target, "--home", str(source.home),
                           "--json").stdout)
    assert again["totals"]["stored_bytes"] < json.loads(made.stdout)["totals"]["stored_bytes"]
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="backups")["Contents"]]
    assert "cumulo/cumulo-backup.json" in keys and any(k.startswith("cumulo/chunks/")
                                                        for k in keys)
    assert len(json.loads(cli("backup", "ls", "--to", target, "--json").stdout)) == 2
    assert cli("backup", "verify", "--to", target).returncode == 0
    home = tmp_path / "from-s3"
    out = cli("backup", "restore", "latest", "--to", target, "--to-home", str(home), "--json")
    assert out.returncode == 0, out.stderr
    assert (home / "storage/buckets/raw/blob.bin").is_file()
    pruned = cli("backup", "prune", "--to", target, "--keep-last", "1", "--json")
    assert pruned.returncode == 0 and len(json.loads(pruned.stdout)["removed"]) == 1
