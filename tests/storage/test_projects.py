"""Buckets in projects: made in one (``--project``), listed by one, and decided there for
members whose rights are bound in it; the ``storage_gb`` quota counted over the project's
objects and enforced on every upload, announced or streamed, leaving nothing half-stored.
Against one real server."""

from __future__ import annotations

import io
import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from cumulo.errors import Forbidden, NotFound, QuotaExceeded
from tests.services import Cumulo

GB = 1024**3


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(local_server: Cumulo) -> Any:
    return local_server.client()


@pytest.fixture(scope="module")
def member(local_server: Cumulo) -> Any:
    """A developer in project team-a only."""
    return local_server.add_user("ana", "ana-token-" + uuid.uuid4().hex, project="team-a")


@pytest.fixture(scope="module")
def team_b(admin: Any) -> str:
    admin.projects.create("team-b")
    return "team-b"


def test_a_member_works_with_buckets_of_their_project(member: Any) -> None:
    files = member.files
    bucket = _name("raw")
    made = files.create_bucket(bucket, project="team-a")
    assert made["project"] == "team-a"
    files.upload(b"a,b\n1,2\n", f"{bucket}/in/x.csv")
    assert files.read_bytes(f"{bucket}/in/x.csv") == b"a,b\n1,2\n"
    assert [o.key for o in files.list(f"{bucket}/", recursive=True).objects] == ["in/x.csv"]
    listed = {b["name"]: b for b in files.buckets(project="team-a")}
    assert listed[bucket]["project"] == "team-a" and listed[bucket]["objects"] == 1
    assert files.delete(f"{bucket}/in/", recursive=True) == 1  # a pattern: bucket/NAME/*
    assert files.delete_bucket(bucket) == 0


def test_a_member_is_refused_outside_their_project(admin: Any, member: Any,
                                                   team_b: str) -> None:
    files = member.files
    # Refused with a hint: their rights are in team-a, and no project was named.
    with pytest.raises(Forbidden, match="rights given in project team-a hold only on that "
                                        "project's resources: name it with --project"):
        files.create_bucket(_name("nowhere"))
    with pytest.raises(Forbidden):
        files.create_bucket(_name("theirs"), project=team_b)
    with pytest.raises(Forbidden):
        files.buckets()  # every bucket: platform-wide rights only
    plain, other = _name("plain"), _name("other")
    admin.files.create_bucket(plain)
    admin.files.create_bucket(other, project=team_b)
    for bucket in (plain, other):
        admin.files.upload(b"secret", f"{bucket}/s.txt")
        with pytest.raises(Forbidden):
            files.read_bytes(f"{bucket}/s.txt")
        with pytest.raises(Forbidden):
            files.upload(b"x", f"{bucket}/mine.txt")
        with pytest.raises(Forbidden):
            files.list(f"{bucket}/")
        with pytest.raises(Forbidden):
            files.delete(f"{bucket}/", recursive=True)
        with pytest.raises(Forbidden):
            files.delete_bucket(bucket, recursive=True)
        assert admin.files.read_bytes(f"{bucket}/s.txt") == b"secret"
        assert not admin.files.exists(f"{bucket}/mine.txt")
    names = [b["name"] for b in files.buckets(project="team-a")]
    assert plain not in names and other not in names


def test_admin_sees_projects_and_an_unknown_one_is_refused(admin: Any, team_b: str) -> None:
    bucket = _name("b")
    admin.files.create_bucket(bucket, project=team_b)
    assert {b["name"]: b["project"] for b in admin.files.buckets()}[bucket] == team_b
    listed = admin.files.buckets(project=team_b)
    assert bucket in [b["name"] for b in listed] and {b["project"] for b in listed} == {team_b}
    ghost = _name("ghost")
    with pytest.raises(NotFound, match="no project 'no-such-project'"):
        admin.files.create_bucket(ghost, project="no-such-project")
    assert ghost not in [b["name"] for b in admin.files.buckets()]
    with pytest.raises(NotFound, match="no-such-project"):
        admin.files.buckets(project="no-such-project")


@pytest.fixture(scope="module")
def small(admin: Any) -> str:
    """A bucket in a project holding at most 0.001 GB (about 1 MB)."""
    admin.projects.create("small", quotas={"storage_gb": 0.001})
    bucket = _name("small")
    admin.files.create_bucket(bucket, project="small")
    return bucket


def _spooled(server: Cumulo) -> list[str]:
    spool = server.home / "storage" / ".tmp"
    return [p.name for p in spool.iterdir() if p.name.startswith("upload")]


def _announce(server: Cumulo, path: str, length: int) -> str:
    """Announce a body of ``length`` bytes, send none of it, and read the answer's status."""
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}"
                     f"\r\nContent-Length: {length}\r\n\r\n".encode())
        sock.settimeout(10)
        return sock.recv(65536).decode().split("\r\n", 1)[0]


def test_storage_quota_is_enforced_on_every_upload(local_server: Cumulo, admin: Any,
                                                   small: str) -> None:
    files = admin.files
    first = b"1" * 600_000
    files.upload(first, f"{small}/first.bin")
    usage = admin.projects.show("small")["usage"]["storage_gb"]
    assert usage == pytest.approx(600_000 / GB, abs=1e-6)

    # Announced (Content-Length): refused before the body is read.
    with pytest.raises(QuotaExceeded, match="storage_gb") as refused:
        files.upload(b"2" * 600_000, f"{small}/second.bin")
    assert "project small" in refused.value.message
    assert refused.value.details["quota"] == "storage_gb"
    assert refused.value.details["limit"] == 0.001
    assert refused.value.details["in_use"] == pytest.approx(600_000 / GB)
    assert not files.exists(f"{small}/second.bin")
    # ... without a byte of it: a 2 GB announcement, no body, is answered at once.
    status = _announce(local_server, f"/api/v1/files/buckets/{small}/objects/huge.bin", 2 * GB)
    assert status.startswith("HTTP/1.1 409")

    # Streamed (no length known up front): measured, then refused before it is published;
    # the version it would have replaced stays.
    with pytest.raises(QuotaExceeded, match="storage_gb"):
        files.upload(io.BytesIO(b"3" * 1_100_000), f"{small}/first.bin")
    assert files.read_bytes(f"{small}/first.bin") == first
    with pytest.raises(QuotaExceeded), files.open(f"{small}/third.bin", "wb") as out:
        out.write(b"4" * 600_000)
    assert not files.exists(f"{small}/third.bin")
    assert _spooled(local_server) == []  # no temporary file left behind
    assert [o.key for o in files.list(f"{small}/").objects] == ["first.bin"]

    # Replacing an object counts only what it adds: a bigger version that still fits, and a
    # smaller one, are fine.
    files.upload(io.BytesIO(b"5" * 900_000), f"{small}/first.bin")
    files.upload(b"6" * 100_000, f"{small}/first.bin")
    files.upload(b"7" * 500_000, f"{small}/second.bin")
    assert admin.projects.show("small")["usage"]["storage_gb"] == pytest.approx(
        600_000 / GB, abs=1e-6)


def test_cli_makes_and_lists_buckets_in_a_project(local_server: Cumulo, admin: Any,
                                                  tmp_path: Path) -> None:
    bucket = _name("cli")
    made = local_server.cli("files", "mb", bucket, "--project", "team-a")
    assert made.returncode == 0, made.stderr
    assert f"made bucket {bucket} in project team-a" in made.stdout
    listed = local_server.cli("files", "ls", "--project", "team-a", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {b["name"]: b for b in json.loads(listed.stdout)}
    assert rows[bucket]["project"] == "team-a"
    table = local_server.cli("files", "ls", "--project", "team-a")
    assert "PROJECT" in table.stdout.upper() and "team-a" in table.stdout
    unknown = local_server.cli("files", "mb", _name("x"), "--project", "nope")
    assert unknown.returncode == 1 and "no project 'nope'" in unknown.stderr
