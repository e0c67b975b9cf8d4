"""``cumulo files`` as a user types it, against a real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.services import Cumulo


@pytest.fixture
def bucket(local_server: Cumulo) -> str:
    name = "cli-" + uuid.uuid4().hex[:10]
    result = local_server.cli("files", "mb", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"made bucket {name}"
    return name


def test_the_tour(local_server: Cumulo, bucket: str, tmp_path: Path) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text("id,amount\n1,9.5\n2,3.25\n")
    cp = local_server.cli("files", "cp", str(sales), f"{bucket}/raw/2026/sales.csv")
    assert cp.returncode == 0, cp.stderr
    assert f"to {bucket}/raw/2026/sales.csv" in cp.stdout

    top = local_server.cli("files", "ls", f"{bucket}/raw/")
    assert "PRE" in top.stdout and "raw/2026/" in top.stdout
    deep = local_server.cli("files", "ls", f"{bucket}/raw/", "--recursive")
    assert "raw/2026/sales.csv" in deep.stdout and "PRE" not in deep.stdout

    cat = local_server.cli("files", "cat", f"{bucket}/raw/2026/sales.csv")
    assert cat.stdout == sales.read_text()

    out = tmp_path / "local"
    out.mkdir()
    down = local_server.cli("files", "cp", f"{bucket}/raw/2026/sales.csv", f"{out}/")
    assert down.returncode == 0, down.stderr
    assert (out / "sales.csv").read_text() == sales.read_text()

    listing = json.loads(local_server.cli("files", "ls", bucket, "-r", "--json").stdout)
    assert [o["key"] for o in listing["objects"]] == ["raw/2026/sales.csv"]
    assert listing["objects"][0]["content_type"] == "text/csv"

    buckets = json.loads(local_server.cli("files", "ls", "--json").stdout)
    assert any(b["name"] == bucket and b["objects"] == 1 for b in buckets)

    info = json.loads(local_server.cli("files", "info", f"{bucket}/raw/2026/sales.csv",
                                       "--json").stdout)
    assert info["size"] == len(sales.read_bytes()) and len(info["sha256"]) == 64

    refused = local_server.cli("files", "rb", bucket)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: bucket") and "--recursive" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    rm = local_server.cli("files", "rm", f"{bucket}/raw/2026/sales.csv")
    assert rm.returncode == 0
    assert local_server.cli("files", "rb", bucket).returncode == 0


def test_recursive_upload_download_and_rm(local_server: Cumulo, bucket: str,
                                          tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_text("top")
    (src / "a" / "one.txt").write_text("one")
    (src / "a" / "b" / "two.txt").write_text("two")
    folder_refused = local_server.cli("files", "cp", str(src), f"{bucket}/tree/")
    assert folder_refused.returncode == 1 and "--recursive" in folder_refused.stderr
    up = local_server.cli("files", "cp", "-r", str(src), f"{bucket}/tree/")
    assert up.returncode == 0, up.stderr
    dest = tmp_path / "dest"
    down = local_server.cli("files", "cp", "-r", f"{bucket}/tree/", str(dest))
    assert down.returncode == 0, down.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.txt")) == [
        "a/b/two.txt", "a/one.txt", "top.txt"]
    rm = local_server.cli("files", "rm", "-r", f"{bucket}/tree/a/")
    assert rm.stdout.strip() == f"deleted 2 object(s) under {bucket}/tree/a/"
    assert local_server.cli("files", "rb", "--recursive", bucket).returncode == 0


def test_stdin_and_stdout(local_server: Cumulo, bucket: str) -> None:
    up = local_server.cli("files", "cp", "-", f"{bucket}/piped.bin", input=b"\x00\x01binary")
    assert up.returncode == 0, up.stderr
    down = local_server.cli("files", "cp", f"{bucket}/piped.bin", "-", input=b"")
    assert down.stdout == b"\x00\x01binary"


@pytest.mark.parametrize(("args", "message"), [
    (["files", "cp", "./nope.csv", "data/x"], "does not exist here"),
    (["files", "cp", "/etc/hostname", "/tmp/x"], "one side must be a Cumulo path"),
    (["files", "mb", "Bad_Name"], "bucket name 'Bad_Name' is not allowed"),
    (["files", "cp", "/etc/hostname", "data/../x"], "'..' segment"),
    (["files", "cat", "missing-bucket/x"], "bucket 'missing-bucket' does not exist"),
    (["files", "rm", "missing-bucket"], "names a bucket"),
])
def test_cli_errors_are_one_line(local_server: Cumulo, args: list[str], message: str) -> None:
    result = local_server.cli(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_status(local_server: Cumulo) -> None:
    local_server.client().files.create_bucket("status-check")
    local_server.client().files.upload(b"12345", "status-check/a")
    status = json.loads(local_server.cli("status", "--json").stdout)
    assert status["version"]
    assert status["database"]["dialect"] == "sqlite"
    assert status["storage"]["kind"] == "local"
    assert status["storage"]["buckets"] >= 1 and status["storage"]["bytes"] >= 5
    assert status["compute"] == {"clusters": 1, "running": 0, "queued": 0}
    text = local_server.cli("status").stdout
    assert "database" in text and "storage" in text and "bucket(s)" in text
    used = status["storage"]["used"]
    assert used["buckets"] == status["storage"]["bytes"]
    assert used["total"] == used["buckets"] + sum(used[a] or 0 for a in ("tables", "models",
                                                                          "jobs"))
    assert "used in all (tables" in text
    assert "1 cluster(s), 0 job(s) running, 0 queued" in text


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    import subprocess

    from tests.services import CUMULO, base_env, free_port

    env = {**base_env(tmp_path / ".cumulo"), "CUMULO_URL": f"http://127.0.0.1:{free_port()}",
           "CUMULO_TOKEN": "x"}
    result = subprocess.run([CUMULO, "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach Cumulo at")
    assert "cumulo up" in result.stderr
