"""Starting the control plane: first start, restart, and the failures a user can cause."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.services import CUMULO, base_env, free_port, start_cumulo


def _up(home: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(home), **extra}
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run([CUMULO, "up", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=home.parent)


def test_first_start_creates_admin_and_prints_token_once(home: Path) -> None:
    env = {"CUMULO_ADMIN_TOKEN": ""}  # no preset token: one is generated
    first = start_cumulo(home, env)
    try:
        printed = first.log.read_text()
        creds = tomllib.loads((home.parent / "credentials.toml").read_text())
        token = creds["profiles"][creds["current"]]["token"]
        assert token in printed and "shown once" in printed
        assert oct((home.parent / "credentials.toml").stat().st_mode & 0o777) == "0o600"
        assert httpx.get(f"{first.url}/api/v1/me",
                         headers={"authorization": f"Bearer {token}"}).json()["user"] == "admin"
        first.client(token=token).files.create_bucket("kept")
    finally:
        first.stop()
    with sqlite3.connect(home / "cumulo.db") as db:
        assert token not in "\n".join(db.iterdump())

    second = start_cumulo(home, env)
    try:
        assert token not in second.log.read_text().split("Finished server process")[-1]
        assert "first start" not in second.log.read_text().split("Finished server process")[-1]
        names = [b["name"] for b in second.client(token=token).files.buckets()]
        assert names == ["kept"]
    finally:
        second.stop()


def test_admin_token_from_environment(home: Path) -> None:
    server = start_cumulo(home, {"CUMULO_ADMIN_TOKEN": "my-own-admin-token-123"})
    try:
        assert server.client(token="my-own-admin-token-123").whoami()["user"] == "admin"
    finally:
        server.stop()


def test_short_admin_token_is_refused(home: Path) -> None:
    result = _up(home, {"CUMULO_ADMIN_TOKEN": "short", "CUMULO_PORT": str(free_port())})
    assert result.returncode == 1
    assert result.stderr.strip().endswith("CUMULO_ADMIN_TOKEN must be at least 16 characters long")


@pytest.mark.parametrize(("env", "message"), [
    ({"CUMULO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"},
     "error: cannot reach the metadata database at postgresql+psycopg://nobody@127.0.0.1:1/nothing"),
    ({"CUMULO_DATABASE_URL": "mysql://x@localhost/db"}, "Cumulo supports sqlite and postgresql"),
    ({"CUMULO_DATABASE_URL": "not a url"}, "is not a URL"),
    ({"CUMULO_STORAGE_URL": "s3://bucket/prefix", "CUMULO_S3_ENDPOINT_URL": "http://127.0.0.1:1",
      "CUMULO_S3_ACCESS_KEY_ID": "x", "CUMULO_S3_SECRET_ACCESS_KEY": "y"},
     "error: cannot reach the storage s3://bucket/prefix at http://127.0.0.1:1"),
    ({"CUMULO_STORAGE_URL": "gs://bucket"}, "storage URL 'gs://bucket' is not supported"),
    ({"CUMULO_STORAGE_URL": "/proc/forbidden"}, "error: cannot use the storage folder /proc"),
    ({"CUMULO_PORT": "eighty"}, "port must be a whole number"),
])
def test_unusable_settings_fail_with_one_clear_line(home: Path, env: dict[str, str],
                                                    message: str) -> None:
    result = _up(home, {"CUMULO_PORT": str(free_port()), **env})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr


def test_bad_s3_bucket_names_the_fix(home: Path, s3) -> None:  # type: ignore[no-untyped-def]
    result = _up(home, {"CUMULO_PORT": str(free_port()), **s3.env(),
                        "CUMULO_STORAGE_URL": "s3://no-such-bucket/x"})
    assert result.returncode == 1
    assert "create it first" in result.stderr.strip().splitlines()[-1]


def test_port_in_use(home: Path) -> None:
    server = start_cumulo(home)
    try:
        port = server.url.rsplit(":", 1)[1]
        result = _up(home.parent / "other" / ".cumulo", {"CUMULO_PORT": port})
        assert result.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
        assert "--port N" in result.stderr
    finally:
        server.stop()


def test_config_file_and_port_flag(home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    (home.parent / "cumulo.toml").write_text(f'home = "{home.parent / "from-file"}"\n')
    port = free_port()
    env = {k: v for k, v in base_env(home).items() if k != "CUMULO_HOME"}
    proc = subprocess.Popen([CUMULO, "up", "--port", str(port)], env=env, cwd=home.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from tests.services import wait_for

        log = home.parent / "none.log"
        log.write_text("")
        wait_for(f"http://127.0.0.1:{port}/healthz", proc, log)
        assert (home.parent / "from-file" / "cumulo.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)


def test_logs_are_json_lines_with_request_ids(local_server) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{local_server.url}/api/v1/status",
                         headers={"authorization": f"Bearer {local_server.token}",
                                  "x-request-id": "trace-me-42"})
    assert response.headers["x-request-id"] == "trace-me-42"
    generated = httpx.get(f"{local_server.url}/api/v1/nothing-here")
    rid = generated.headers["x-request-id"]
    assert generated.status_code == 404 and len(rid) == 16
    # The access line is written as the answer goes out: on a busy machine, a moment later.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in local_server.log_lines() if line.startswith("{")]
        if any(line["request_id"] == rid for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    mine = [line for line in lines if line["request_id"] == "trace-me-42"]
    assert mine and mine[-1]["path"] == "/api/v1/status" and mine[-1]["status"] == 200
    assert any(line["request_id"] == rid and line["status"] == 404 for line in lines)
    assert all({"ts", "level", "logger", "msg", "request_id"} <= set(line) for line in lines)


def test_errors_have_one_shape(local_server) -> None:  # type: ignore[no-untyped-def]
    auth = {"authorization": f"Bearer {local_server.token}"}
    cases = [
        ("GET", "/api/v1/files/buckets/nope/objects", None, 404, "not_found"),
        ("POST", "/api/v1/files/buckets", {"wrong": 1}, 400, "invalid"),
        ("GET", "/api/v1/files/buckets/x-y-z/objects?limit=0", None, 400, "invalid"),
        ("PATCH", "/api/v1/status", None, 400, "invalid"),
    ]
    for method, path, body, status, code in cases:
        response = httpx.request(method, local_server.url + path, json=body, headers=auth)
        assert response.status_code in (status, 405), (path, response.text)
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert error["code"] == code and error["message"]


def test_state_is_its_owners_alone_whatever_the_umask(home: Path) -> None:
    # A home made before (by hand, world-readable) and a permissive umask: what Cumulo holds,
    # tokens' database and stored objects included, is readable by its owner only.
    home.mkdir(parents=True)
    home.chmod(0o755)
    previous = os.umask(0o022)
    try:
        server = start_cumulo(home)
    finally:
        os.umask(previous)
    try:
        c = server.client()
        c.files.create_bucket("private")
        c.files.upload(b"secret", "private/note.txt")
    finally:
        server.stop()
    assert home.stat().st_mode & 0o777 == 0o700
    stored = [p for p in (home / "storage").rglob("*") if p.is_file()]
    assert stored and (home / "cumulo.db") in home.iterdir()
    for path in [home / "cumulo.db", *stored]:
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    for path in (p for p in home.rglob("*") if p.is_dir()):
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))


def _raw(url: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; all the server answers before it closes."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_request_heads_past_their_limits_are_refused_before_anything(  # type: ignore[no-untyped-def]
        local_server) -> None:
    # A 60 MiB request line used to hold the control plane for seconds, before its 401: now
    # 414 once the target passes 8 KiB, and 431 for headers past 64 KiB or 100 fields; the
    # connection closes, nothing else waits.
    answer = _raw(local_server.url, b"GET /api/v1/" + b"a" * (64 << 10))
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"] == (
        "the request's target is over 8192 bytes")
    for headers in (b"x-big: " + b"v" * (80 << 10) + b"\r\n",
                    b"".join(b"x-%d: v\r\n" % i for i in range(150))):
        answer = _raw(local_server.url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + headers)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    # Within the limits, as before.
    t0 = time.monotonic()
    ok = httpx.get(f"{local_server.url}/healthz", headers={"x-fine": "v" * 4000})
    assert ok.status_code == 200 and time.monotonic() - t0 < 2


def test_bodies_are_bounded_before_authentication(local_server) -> None:  # type: ignore[no-untyped-def]
    # A 1,000 MiB JSON body without a token took the server from 477 MiB to 3.5 GiB before its
    # 401: now the declared size is refused at once, before a byte of it is read.
    head = (b"POST /api/v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (1000 << 20))
    answer = _raw(local_server.url, head + b"{" + b" " * 65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert b"is over 16777216 bytes" in answer
    # Sent without a declared size (chunked), it is cut off as it passes the limit.
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * (1 << 20)
    refused = httpx.post(f"{local_server.url}/api/v1/tokens", content=chunks(),
                         headers={"Authorization": f"Bearer {local_server.token}"})
    assert refused.status_code == 413 and "is over 16777216 bytes" in refused.text
    # Uploads stream past it, once the caller is known: a 20 MiB object goes in whole.
    c = local_server.client()
    c.files.create_bucket("bounded")
    assert c.files.upload(b"z" * (20 << 20), "bounded/big.bin").size == 20 << 20
    c.files.delete_bucket("bounded", recursive=True)
