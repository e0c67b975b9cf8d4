"""``cumulo tables``, ``cumulo sql`` and ``cumulo queries`` as a user types them."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from pathlib import Path

from tests.services import Cumulo, start_cumulo


def test_the_lake_tour(local_server: Cumulo, tmp_path: Path) -> None:
    db = "cli_" + uuid.uuid4().hex[:6]
    orders = tmp_path / "orders.csv"
    orders.write_text("id,amount,region\n1,9.5,eu\n2,3.25,us\n3,1.0,eu\n")
    assert local_server.cli("tables", "create-db", db).returncode == 0
    load = local_server.cli("tables", "load", f"{db}.orders", str(orders))
    assert load.returncode == 0, load.stderr
    assert f"loaded orders.csv into {db}.orders: version 0 (added 3 rows)" in load.stdout
    update = tmp_path / "update.csv"
    update.write_text("id,amount,region\n1,100,eu\n4,4,us\n")
    merged = local_server.cli("tables", "load", f"{db}.orders", str(update), "--mode", "merge",
                              "--keys", "id")
    assert "version 1" in merged.stdout and "updated 1" in merged.stdout

    show = local_server.cli("tables", "show", f"{db}.orders")
    assert "rows: 4" in show.stdout and "amount" in show.stdout and "double" in show.stdout
    history = local_server.cli("tables", "history", f"{db}.orders")
    assert "MERGE" in history.stdout and "admin" in history.stdout
    listing = json.loads(local_server.cli("tables", "ls", db, "--json").stdout)
    assert [t["name"] for t in listing] == [f"{db}.orders"]

    query = local_server.cli("sql", f"select region, sum(amount) total from {db}.orders "
                                    "group by 1 order by 1")
    assert query.returncode == 0, query.stderr
    assert "eu" in query.stdout and "101.0" in query.stdout
    assert "2 row(s)" in query.stderr and "scanned" in query.stderr
    old = local_server.cli("sql", f"select count(*) n from {db}.orders version as of 0",
                           "--json")
    assert json.loads(old.stdout)["page"] == [{"n": 3}]
    out = tmp_path / "all.csv"
    saved = local_server.cli("sql", f"select * from {db}.orders order by id", "-o", str(out))
    assert saved.returncode == 0 and out.read_text().count("\n") == 5
    ctas = local_server.cli("sql", f"create table {db}.eu as select * from {db}.orders "
                                   "where region = 'eu'")
    assert f"wrote 2 row(s) to {db}.eu: version 0" in ctas.stdout

    restored = local_server.cli("tables", "restore", f"{db}.orders", "--version", "0")
    assert "now version 2" in restored.stdout
    head = local_server.cli("tables", "head", f"{db}.orders")
    assert "9.5" in head.stdout

    refused = local_server.cli("sql", "select * from read_csv('/etc/passwd')")
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert "outside the lake" in refused.stderr
    queries = local_server.cli("queries", "ls", "--limit", "3")
    assert "failed" in queries.stdout
    assert local_server.cli("tables", "drop-db", db, "--cascade").returncode == 0


def _arrived(spool: Path, size: int) -> bool:
    for path in spool.glob("upload-*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == size:
                return True
    return False


def test_killed_during_a_load_leaves_the_previous_version(home: Path, tmp_path: Path) -> None:
    server = start_cumulo(home)
    db = "crash"
    try:
        tables = server.client().tables
        tables.create_database(db)
        tables.load(f"{db}.t", b"id,v\n1,a\n2,b\n", format="csv")
        big = tmp_path / "big.csv"
        with open(big, "w") as f:
            f.write("id,v\n")
            for i in range(3_000_000):
                f.write(f"{i},row-{i}\n")
        errors: list[BaseException] = []

        def load() -> None:
            try:
                server.client().tables.load(f"{db}.t", big)
            except BaseException as exc:
                errors.append(exc)

        spool = home / "storage" / ".tmp"
        size = big.stat().st_size
        worker = threading.Thread(target=load)
        worker.start()
        # Kill once the whole file has arrived: the server is then reading it and writing the
        # new version's data files, which it has not committed yet.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _arrived(spool, size):
            time.sleep(0.002)
        time.sleep(0.05)
        server.stop(signal.SIGKILL)
        worker.join(60)
        assert errors, "the load finished before the server was killed; make the file bigger"
    finally:
        server.stop()
    again = start_cumulo(home)
    try:
        tables = again.client().tables
        assert tables.show(f"{db}.t")["version"] == 0
        assert tables.read(f"{db}.t").num_rows == 2
        tables.load(f"{db}.t", b"id,v\n3,c\n", format="csv")
        assert tables.show(f"{db}.t")["version"] == 1
    finally:
        again.stop()


def test_times_and_durations_take_the_one_grammar(local_server: Cumulo, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    db = "cli_" + uuid.uuid4().hex[:6]
    name = f"{db}.t"
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("id\n1\n")
    second.write_text("id\n2\n3\n")
    assert local_server.cli("tables", "create-db", db).returncode == 0
    assert local_server.cli("tables", "load", name, str(first)).returncode == 0
    time.sleep(0.2)
    between = datetime.now(timezone(timedelta(hours=2)))  # written with an offset
    time.sleep(0.2)
    assert local_server.cli("tables", "load", name, str(second), "--mode",
                            "overwrite").returncode == 0
    restored = local_server.cli("tables", "restore", name, "--as-of", between.isoformat(),
                                "--json")
    assert restored.returncode == 0, restored.stderr
    head = json.loads(local_server.cli("tables", "head", name, "--json").stdout)
    assert head == [{"id": 1}]
    now = local_server.cli("tables", "restore", name, "--as-of", "0s")  # a span back from now
    assert now.returncode == 1 and "at version 2 already" in now.stderr, now.stderr
    ago = local_server.cli("tables", "restore", name, "--as-of", "1h30m")  # before it existed
    assert ago.returncode == 1 and "--as-of" not in ago.stderr, ago.stderr
    bad = local_server.cli("tables", "restore", name, "--as-of", "soon")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --as-of 'soon' is not a time")

    dry = local_server.cli("tables", "vacuum", name, "--retain", "1h30m", "--dry-run",
                           "--force", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["retain_hours"] == 2  # 1h30m, never less than asked
    bad = local_server.cli("tables", "vacuum", name, "--retain", "5x")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --retain '5x' is not a duration: use forms like 90s, 30m, 1h30m, 7d, 2w")

    query = local_server.cli("sql", f"select count(*) n from {name}", "--timeout", "1h30m",
                             "--json")
    assert query.returncode == 0 and json.loads(query.stdout)["page"] == [{"n": 1}]
    bad = local_server.cli("sql", "select 1", "--timeout", "5x")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --timeout '5x' is not a dura")
    assert local_server.cli("tables", "drop-db", db, "--cascade").returncode == 0
