"""Object storage through the SDK and REST API, on every metadata x storage backend."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.services import Cumulo


@pytest.fixture
def bucket(server: Cumulo) -> str:
    name = "b-" + uuid.uuid4().hex[:12]
    server.client().files.create_bucket(name)
    return name


def test_upload_download_roundtrip(server: Cumulo, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 2**20 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    files = server.client().files
    info = files.upload(src, f"{bucket}/raw/2026/blob.bin")
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.content_type == "application/octet-stream"
    assert info.created_by == "admin"
    out = tmp_path / "out.bin"
    files.download(f"{bucket}/raw/2026/blob.bin", out)
    assert out.read_bytes() == data
    assert not list(tmp_path.glob(".*partial"))


def test_metadata_content_type_and_overwrite(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    first = files.upload(b"a,b\n1,2\n", f"{bucket}/sales.csv")
    assert first.content_type == "text/csv"
    second = files.upload(b'{"a": 1}', f"{bucket}/sales.csv", content_type="application/json")
    head = files.head(f"{bucket}/sales.csv")
    assert head.size == 8 and head.content_type == "application/json"
    assert head.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert head.created_at == first.created_at
    assert head.modified_at >= second.created_at
    assert files.read_bytes(f"{bucket}/sales.csv") == b'{"a": 1}'


def test_list_prefix_delimiter_and_paging(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    keys = ["a.txt", "raw/2026/01/x.csv", "raw/2026/01/y.csv", "raw/2026/02/z.csv",
            "raw/2025/q.csv", "raw/readme.md", "rawness.txt", "z/last.txt"]
    for key in keys:
        files.upload(key.encode(), f"{bucket}/{key}")

    top = files.list(bucket)
    assert [o.key for o in top.objects] == ["a.txt", "rawness.txt"]
    assert top.prefixes == ["raw/", "z/"]

    raw = files.list(f"{bucket}/raw/")
    assert [o.key for o in raw.objects] == ["raw/readme.md"]
    assert raw.prefixes == ["raw/2025/", "raw/2026/"]

    everything = files.list(bucket, recursive=True)
    assert [o.key for o in everything.objects] == sorted(keys)

    pages = list(files.pages(bucket, recursive=True, page_size=3))
    assert [len(p.objects) for p in pages] == [3, 3, 2]
    assert [o.key for p in pages for o in p.objects] == sorted(keys)

    # Paging with a delimiter: prefixes count towards the page and are never repeated.
    pages = list(files.pages(f"{bucket}/raw/", page_size=1))
    seen = [e for p in pages for e in (*p.prefixes, *(o.key for o in p.objects))]
    assert seen == ["raw/2025/", "raw/2026/", "raw/readme.md"]


def test_listing_is_in_byte_order(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    keys = ["B", "a", "_x", "é", "Z-1", "z"]
    for key in keys:
        files.upload(b"x", f"{bucket}/{key}")
    listed = [o.key for o in files.list(bucket, recursive=True).objects]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_delete_object_prefix_and_bucket(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    for key in ["keep.txt", "tmp/a", "tmp/b/c", "tmpfile"]:
        files.upload(b"x", f"{bucket}/{key}")
    assert files.delete(f"{bucket}/tmp/", recursive=True) == 2
    assert [o.key for o in files.list(bucket, recursive=True).objects] == ["keep.txt", "tmpfile"]
    files.delete(f"{bucket}/keep.txt")
    with pytest.raises(NotFound, match=r"no object 'keep\.txt'"):
        files.head(f"{bucket}/keep.txt")
    with pytest.raises(NotFound):
        files.delete(f"{bucket}/keep.txt")

    with pytest.raises(Conflict, match="holds 1 object"):
        files.delete_bucket(bucket)
    assert files.exists(f"{bucket}/tmpfile")  # nothing was lost
    assert files.delete_bucket(bucket, recursive=True) == 1
    assert bucket not in [b["name"] for b in files.buckets()]
    with pytest.raises(NotFound, match="does not exist"):
        files.list(bucket)


def test_bucket_listing_counts(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    files.upload(b"12345", f"{bucket}/a")
    files.upload(b"123", f"{bucket}/b")
    entry = next(b for b in files.buckets() if b["name"] == bucket)
    assert (entry["objects"], entry["bytes"], entry["created_by"]) == (2, 8, "admin")
    with pytest.raises(Conflict, match="already exists"):
        files.create_bucket(bucket)


def test_range_and_head(server: Cumulo, bucket: str) -> None:
    server.client().files.upload(b"0123456789", f"{bucket}/digits")
    url = f"{server.url}/api/v1/files/buckets/{bucket}/objects/digits"
    auth = {"authorization": f"Bearer {server.token}"}
    part = httpx.get(url, headers={**auth, "range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["content-range"] == "bytes 2-5/10"
    tail = httpx.get(url, headers={**auth, "range": "bytes=-3"})
    assert tail.content == b"789"
    beyond = httpx.get(url, headers={**auth, "range": "bytes=20-"})
    assert beyond.status_code == 416
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200 and head.headers["content-length"] == "10"
    assert head.headers["etag"] == f'"{hashlib.sha256(b"0123456789").hexdigest()}"'


def test_streaming_file_objects(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    with files.open(f"{bucket}/stream.bin", "wb") as out:
        for i in range(50):
            out.write(bytes([i]) * 100_000)
    with files.open(f"{bucket}/stream.bin") as reader:
        got = reader.read()
    assert got == b"".join(bytes([i]) * 100_000 for i in range(50))
    with files.open(f"{bucket}/stream.bin") as reader:
        assert reader.read(5) == b"\x00" * 5


def test_abandoned_writer_stores_nothing(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    with pytest.raises(RuntimeError, match="boom"), files.open(f"{bucket}/half.bin", "wb") as out:
        out.write(b"x" * 3_000_000)
        raise RuntimeError("boom")
    assert not files.exists(f"{bucket}/half.bin")


def test_writer_to_missing_bucket_raises_instead_of_hanging(server: Cumulo) -> None:
    files = server.client().files
    with pytest.raises(NotFound, match="does not exist"), \
            files.open("no-such-bucket-here/x", "wb") as out:
        for _ in range(200):
            out.write(b"x" * 100_000)


def _send_partial_upload(server: Cumulo, path: str, announced: int, sent: bytes) -> None:
    """Announce a body, send only part of it, and hang up: a client dying mid-upload."""
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
                f"Content-Length: {announced}\r\n\r\n")
        sock.sendall(head.encode() + sent)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def test_cut_off_upload_leaves_nothing(server: Cumulo, bucket: str) -> None:
    files = server.client().files
    files.upload(b"old contents", f"{bucket}/data.bin")
    _send_partial_upload(server, f"/api/v1/files/buckets/{bucket}/objects/data.bin",
                         10_000_000, b"y" * 3_000_000)
    _send_partial_upload(server, f"/api/v1/files/buckets/{bucket}/objects/new.bin",
                         10_000_000, b"y" * 1_000)
    assert files.read_bytes(f"{bucket}/data.bin") == b"old contents"
    assert not files.exists(f"{bucket}/new.bin")
    spool = server.home / "storage" / ".tmp" if "CUMULO_STORAGE_URL" not in server.env \
        else server.home / "tmp"
    deadline = 50
    while list(spool.glob("upload-*")) and deadline:
        import time

        time.sleep(0.1)
        deadline -= 1
    assert list(spool.glob("upload-*")) == []


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("a/../../etc/passwd", "'..' segment"),
        ("../x", "'..' segment"),
        ("/etc/passwd", "starts with '/'"),
        ("a\x00b", "NUL byte"),
        ("k" * 1025, "1025 bytes long"),
        ("é" * 513, "1026 bytes long"),
        ("a//b", "empty segment"),
        ("dir/", "ends with '/'"),
        ("report\u202etxt.exe", "bidirectional control character"),
        ("a\x85b", "control character"),
    ],
)
def test_bad_keys_are_refused_by_the_server(server: Cumulo, bucket: str, key: str,
                                             why: str) -> None:
    # Sent percent-encoded, so that no client normalises the path before the server sees it.
    encoded = "".join(f"%{b:02X}" for b in key.encode())
    url = f"{server.url}/api/v1/files/buckets/{bucket}/objects/{encoded}"
    response = httpx.put(url, content=b"data", headers={"authorization": f"Bearer {server.token}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and why in error["message"]
    assert server.client().files.list(bucket, recursive=True).objects == []


def test_keys_that_are_not_utf8_are_refused_not_merged(server: Cumulo, bucket: str) -> None:
    # Decoded lossily, %FF and %FE would both become U+FFFD: two keys, one object.
    auth = {"authorization": f"Bearer {server.token}"}
    for raw in ("bad-%FF.csv", "bad-%FE.csv"):
        response = httpx.put(f"{server.url}/api/v1/files/buckets/{bucket}/objects/{raw}",
                             content=b"data", headers=auth)
        assert response.status_code == 400, response.text
        assert "not valid UTF-8" in response.json()["error"]["message"]
    assert server.client().files.list(bucket, recursive=True).objects == []


@pytest.mark.parametrize("key", ["a/../b", "/abs", "x\x00", "k" * 1025])
def test_bad_keys_are_refused_by_the_sdk(server: Cumulo, bucket: str, key: str) -> None:
    with pytest.raises(Invalid, match="is not allowed"):
        server.client().files.upload(b"x", f"{bucket}/{key}")


@pytest.mark.parametrize("name", ["ab", "UPPER", "under_score", "-lead", "trail-", "a" * 64,
                                  "dots..dots", "spa ce"])
def test_bad_bucket_names(server: Cumulo, name: str) -> None:
    response = httpx.post(f"{server.url}/api/v1/files/buckets", json={"name": name},
                          headers={"authorization": f"Bearer {server.token}"})
    assert response.status_code == 400
    assert "is not allowed" in response.json()["error"]["message"]
    assert name not in [b["name"] for b in server.client().files.buckets()]


def test_upload_to_missing_bucket(server: Cumulo) -> None:
    with pytest.raises(NotFound, match="'cumulo files mb nobucket' creates it"):
        server.client().files.upload(io.BytesIO(b"x"), "nobucket/x")


def test_concurrent_writers_to_one_key_stay_consistent(server: Cumulo, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    files = server.client().files
    bodies = [bytes([i]) * (200_000 + i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: files.upload(b, f"{bucket}/contended.bin"), bodies))
    head = files.head(f"{bucket}/contended.bin")
    data = files.read_bytes(f"{bucket}/contended.bin")
    assert data in bodies
    assert (head.size, head.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_stored_objects_never_run_in_the_consoles_origin(server: Cumulo, bucket: str) -> None:
    # An uploaded page with script, opened from the console's origin, used to run there (and
    # could mint a token): it downloads instead, and even opened it gets no origin to act in.
    c = server.client()
    auth = {"Authorization": f"Bearer {server.token}"}
    page = b"<html><script>fetch('/api/v1/tokens', {method: 'POST'})</script></html>"
    c.files.upload(page, f"{bucket}/site/évil page.html")
    url = f"{server.url}/api/v1/files/buckets/{bucket}/objects/site/%C3%A9vil%20page.html"
    for answer in (httpx.get(url, headers=auth), httpx.head(url, headers=auth)):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-security-policy"] == "sandbox; default-src 'none'"
        assert answer.headers["content-disposition"] == (
            "attachment; filename*=UTF-8''%C3%A9vil%20page.html")
    for name, body in (("notes.txt", b"plain"), ("shape.svg", b"<svg onload='x()'/>")):
        c.files.upload(body, f"{bucket}/site/{name}")
        answer = httpx.get(f"{server.url}/api/v1/files/buckets/{bucket}/objects/site/{name}",
                           headers=auth)
        # Plain text opens in place (sniffing off); SVG can carry script: a download.
        expected = "inline" if name.endswith(".txt") else "attachment"
        assert answer.headers["content-disposition"].startswith(expected + ";"), name
        assert answer.content == body


def test_requests_are_metered_as_the_s3_apis_are(server: Cumulo, bucket: str) -> None:
    """Requests through the Files API (so the SDK's and the console's) that name a bucket are
    counted by S3's price classes, as the S3 API's: a listing in the PUT class, HEAD and the
    object's info in the GET class, a refused GET too, DELETE and presigning free."""
    import json

    c = server.client()
    c.costs.sample()  # what earlier tests sent: written before this one's count
    base = f"{server.url}/api/v1/files/buckets/{bucket}"
    with httpx.Client(headers={"Authorization": f"Bearer {server.token}"}, timeout=30) as h:
        assert h.put(f"{base}/objects/a.txt", content=b"a").status_code < 300  # PUT
        assert h.get(f"{base}/objects").status_code == 200  # a listing: the PUT class
        assert h.get(f"{base}/objects/a.txt").status_code == 200  # GET
        assert h.head(f"{base}/objects/a.txt").status_code == 200
        assert h.get(f"{base}/info/a.txt").status_code == 200
        assert h.get(f"{base}/objects/missing").status_code == 404  # billed, as S3 bills it
        assert h.post(f"{base}/presign/a.txt", json={}).status_code == 200  # not a request
        assert h.delete(f"{base}/objects/a.txt").status_code < 300  # free
    c.costs.sample()
    done = server.cli("costs", "--by", "resource", "--since", "1d", "--json")
    assert done.returncode == 0, done.stderr
    row = {r["resource"]: r for r in json.loads(done.stdout)["rows"]}[f"bucket {bucket}"]
    assert row["put_requests"] == 2 and row["get_requests"] == 4, row
