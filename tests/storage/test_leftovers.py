"""What a crashed server leaves (an upload cut off by SIGKILL, a load's downloads, a partial
SQL result, DuckDB's spill) goes at the next start, and only that: never a file that a live
server may still be writing (issue 18)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from cumulo.lake.leftovers import whole_parquet
from cumulo.storage.leftovers import LOCK_NAME, ended_writer, marked
from tests.services import start_cumulo


def _stalled_upload(url: str, token: str, path: str) -> socket.socket:
    """An upload that announces 10 MB, sends 5 and waits: one in flight."""
    where = urlparse(url)
    sock = socket.create_connection((where.hostname, where.port))
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {10 << 20}\r\n\r\n")
    sock.sendall(head.encode() + b"y" * (5 << 20))
    return sock


def _wait_for(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _partial_parquet(path: Path) -> None:
    """A Parquet file as a writer killed mid-way leaves it: its start, no footer."""
    whole = path.with_suffix(".whole")
    pq.write_table(pa.table({"x": list(range(1000))}), whole)
    path.write_bytes(whole.read_bytes()[:-100])
    whole.unlink()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_start_removes_what_a_killed_server_left(tmp_path: Path) -> None:
    home = tmp_path / ".cumulo"
    server = start_cumulo(home)
    c = server.client()
    c.files.create_bucket("data")
    c.files.upload(b"stored before the crash", "data/kept.txt")
    kept_result = (home / "storage" / "sql" / "results"
                   / f"{c.sql('select 42 as answer').id}.parquet")
    assert whole_parquet(kept_result)
    spool = home / "storage" / ".tmp"
    upload = _stalled_upload(server.url, server.token, "/api/v1/files/buckets/data/objects/big")
    try:
        _wait_for(lambda: any(p.stat().st_size for p in spool.glob("upload-*")))
        server.stop(signal.SIGKILL)  # mid-upload
    finally:
        upload.close()
    # What other writers leave when killed, by the names they use.
    left = [spool / f"keep-{_dead_pid()}-139872-attempt-1.log",
            spool / "checkpoints-job-0123456789-0a1b2c3d.json", spool / "tmpk2j3h4g5.parquet"]
    for path in left:
        path.write_bytes(b"partial")
    (spool / "load-x1y2z3w4").mkdir()
    (spool / "load-x1y2z3w4" / "download.csv").write_text("a,b\n1,")
    partial_result = home / "results" / f"{uuid.uuid4().hex}.parquet"
    _partial_parquet(partial_result)
    spill = home / "results" / "spill" / "0123456789ab"
    spill.mkdir(parents=True)
    (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"\0" * 4096)
    assert [p.name for p in spool.glob("upload-*")]  # the upload the crash cut off

    server = start_cumulo(home, port=int(server.url.rsplit(":", 1)[1]))
    try:
        assert sorted(p.name for p in spool.iterdir()) == [LOCK_NAME]
        assert not list((home / "results").glob("*.parquet"))
        assert kept_result.is_file() and whole_parquet(kept_result)
        assert list((home / "results" / "spill").iterdir()) == []
        c = server.client()
        assert c.files.read_bytes("data/kept.txt") == b"stored before the crash"
        assert not c.files.exists("data/big")
        c.files.upload(b"after", "data/after.txt")  # the spool still works
        assert c.files.read_bytes("data/after.txt") == b"after"
    finally:
        server.stop()


# Runs in a process of its own: a sweep claims the folders for the life of its process.
_SWEEP = """
import json, sys
from pathlib import Path
from cumulo.lake.leftovers import sweep_results
from cumulo.storage.backends.local import LocalBackend
from cumulo.storage.leftovers import sweep_spool
removed = sweep_spool(LocalBackend(Path(sys.argv[1]))) + sweep_results(Path(sys.argv[2]))
print(json.dumps(sorted(p.name for p in removed)))
"""

# A live server's claim, held until its stdin closes.
_HOLD = """
import sys
from pathlib import Path
from cumulo.storage.leftovers import claim
for folder in sys.argv[1:]:
    claim(Path(folder))
print("held", flush=True)
sys.stdin.read()
"""


def _sweep(storage: Path, results: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _SWEEP, str(storage), str(results)],
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_start_beside_a_live_server_removes_only_what_ended_processes_wrote(
        tmp_path: Path) -> None:
    storage, results = tmp_path / "storage", tmp_path / "results"
    spool = storage / ".tmp"
    spool.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", _HOLD, str(spool), str(results)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline() == "held\n"
        host = socket.gethostname()
        dead = _dead_pid()
        names = {"ours": f"upload-{live.pid}@{host}-abcd1234",
                 "dead": f"upload-{dead}@{host}-abcd1234",
                 "elsewhere": f"upload-{dead}@another-{host}-abcd1234",
                 "unmarked": "upload-abcd1234"}
        for name in names.values():
            (spool / name).write_bytes(b"in flight, perhaps")
        (spool / "load-x1y2z3w4").mkdir()
        _partial_parquet(results / "being-written.parquet")
        (results / "spill" / "0123456789ab").mkdir(parents=True)

        # Only the upload of a process of this machine that has ended goes.
        assert _sweep(storage, results) == [names["dead"]]
        assert (results / "being-written.parquet").exists()
        assert (results / "spill" / "0123456789ab").exists()
    finally:
        live.communicate("", timeout=10)
    # The live server has ended: a start alone takes the rest.
    assert _sweep(storage, results) == sorted(
        [names["ours"], names["elsewhere"], names["unmarked"], "load-x1y2z3w4",
         "being-written.parquet", "0123456789ab"])
    assert sorted(p.name for p in spool.iterdir()) == [LOCK_NAME]


def test_names_say_who_writes_them() -> None:
    mine = marked("upload") + "k2j3h4g5"
    assert mine.startswith(f"upload-{os.getpid()}@") and not ended_writer(mine)
    host = socket.gethostname()
    assert ended_writer(f"upload-{_dead_pid()}@{host}-k2j3h4g5.part")
    assert not ended_writer(f"upload-{_dead_pid()}@not-{host}-k2j3h4g5")
    assert not ended_writer("upload-k2j3h4g5") and not ended_writer(f"keep-1-2-{host}.log")


def test_whole_and_partial_parquet(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), whole)
    partial = tmp_path / "partial.parquet"
    _partial_parquet(partial)
    (tmp_path / "empty.parquet").write_bytes(b"")
    assert whole_parquet(whole)
    assert not whole_parquet(partial) and not whole_parquet(tmp_path / "empty.parquet")
