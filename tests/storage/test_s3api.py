"""Cumulo's S3 API with the S3 clients users run, none of them mocked: boto3 (every
operation), the aws command line, s3fs, pyarrow's S3FileSystem, polars and rclone, against a
real server whose URL is their endpoint. Objects written through S3 are Cumulo's own (the same
SHA-256, creator and times through ``cumulo files``); a user's grants decide what their key may
do; every bad input named in the issue gets S3's error, and loses nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cumulo.storage.s3api import sigv4
from tests.services import Cumulo, start_cumulo

TOOLS = Path(__file__).resolve().parents[2] / ".venv-s3tools" / "bin"
MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("s3api") / ".cumulo",
                          {"CUMULO_S3_DOMAIN": "s3.test"})
    yield cumulo
    cumulo.stop()


@pytest.fixture(scope="module")
def key(server: Cumulo) -> dict[str, Any]:
    return server.client().keys.create("tests")


def _s3(server: Cumulo, key: dict[str, Any], **config: Any) -> Any:
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}, **config))


@pytest.fixture(scope="module")
def s3(server: Cumulo, key: dict[str, Any]) -> Any:
    return _s3(server, key)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _bucket(s3: Any) -> str:
    name = "b" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    return name


# --- buckets and objects --------------------------------------------------------------------


def test_buckets(s3: Any) -> None:
    name = _bucket(s3)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=name)
    with pytest.raises(ClientError) as caught:
        s3.create_bucket(Bucket=name)
    assert _code(caught) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket=name, Key="x", Body=b"1")
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket=name)
    assert _code(caught) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="x")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as caught:
        s3.head_bucket(Bucket=name)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=name)


def test_objects_are_cumulos_own(server: Cumulo, s3: Any) -> None:
    name = _bucket(s3)
    body = b"tenure,spend\n1,20\n"
    put = s3.put_object(Bucket=name, Key="raw/a b+c.csv", Body=body,
                        Metadata={"owner": "ana"}, ContentType="text/csv",
                        CacheControl="max-age=60", Tagging="team=a&stage=raw")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    info = server.client().files.head(f"{name}/raw/a b+c.csv")
    assert info.sha256 == hashlib.sha256(body).hexdigest() and info.size == len(body)
    assert info.created_by == "admin" and info.content_type == "text/csv"
    got = s3.get_object(Bucket=name, Key="raw/a b+c.csv")
    assert got["Body"].read() == body and got["Metadata"] == {"owner": "ana"}
    assert got["CacheControl"] == "max-age=60" and got["TagCount"] == 2
    # Written through Cumulo's own API, read through S3.
    server.client().files.upload(b"from the SDK", f"{name}/sdk.txt")
    assert s3.get_object(Bucket=name, Key="sdk.txt")["Body"].read() == b"from the SDK"
    assert s3.get_object_tagging(Bucket=name, Key="raw/a b+c.csv")["TagSet"] == [
        {"Key": "team", "Value": "a"}, {"Key": "stage", "Value": "raw"}]
    s3.put_object_tagging(Bucket=name, Key="sdk.txt",
                          Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=name, Key="sdk.txt")["TagSet"] == [
        {"Key": "k", "Value": "v"}]
    s3.delete_object_tagging(Bucket=name, Key="sdk.txt")
    assert s3.get_object_tagging(Bucket=name, Key="sdk.txt")["TagSet"] == []


def test_ranges_and_conditions(s3: Any) -> None:
    name = _bucket(s3)
    body = bytes(range(256)) * 4
    etag = s3.put_object(Bucket=name, Key="r.bin", Body=body)["ETag"]
    assert s3.get_object(Bucket=name, Key="r.bin", Range="bytes=10-19")["Body"].read() == \
        body[10:20]
    assert s3.get_object(Bucket=name, Key="r.bin", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=name, Key="r.bin", Range="bytes=1000-")["Body"].read() == \
        body[1000:]
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=name, Key="r.bin", Range="bytes=5000-6000")
    assert _code(caught) == "InvalidRange"
    assert s3.get_object(Bucket=name, Key="r.bin", IfMatch=etag)["ETag"] == etag
    for kwargs, status in (({"IfMatch": '"nope"'}, 412), ({"IfNoneMatch": etag}, 304),
                           ({"IfModifiedSince": datetime.now(UTC) + timedelta(hours=1)}, 304),
                           ({"IfUnmodifiedSince": datetime(2000, 1, 1, tzinfo=UTC)}, 412)):
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket=name, Key="r.bin", **kwargs)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, kwargs
    # Conditional writes: If-None-Match: * only creates; If-Match only replaces that version.
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=name, Key="r.bin", Body=b"x", IfNoneMatch="*")
    assert _code(caught) == "PreconditionFailed"
    s3.put_object(Bucket=name, Key="new.bin", Body=b"x", IfNoneMatch="*")
    with pytest.raises(ClientError):
        s3.put_object(Bucket=name, Key="r.bin", Body=b"y", IfMatch='"0000"')
    s3.put_object(Bucket=name, Key="r.bin", Body=b"y", IfMatch=etag)
    assert s3.get_object(Bucket=name, Key="r.bin")["Body"].read() == b"y"


def test_listing(s3: Any) -> None:
    name = _bucket(s3)
    keys = [f"logs/2026/{i:03d}.txt" for i in range(25)] + ["logs/top.txt", "other/x",
                                                             "odd key+%&<>.txt"]
    for k in keys:
        s3.put_object(Bucket=name, Key=k, Body=k.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name, PaginationConfig={
        "PageSize": 7})
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    top = s3.list_objects_v2(Bucket=name, Prefix="logs/", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["logs/top.txt"]
    assert top["CommonPrefixes"] == [{"Prefix": "logs/2026/"}] and top["KeyCount"] == 2
    after = s3.list_objects_v2(Bucket=name, StartAfter="logs/2026/020.txt", MaxKeys=3)
    assert [o["Key"] for o in after["Contents"]] == [f"logs/2026/{i:03d}.txt"
                                                      for i in (21, 22, 23)]
    assert after["IsTruncated"]
    v1 = s3.get_paginator("list_objects").paginate(Bucket=name, PaginationConfig={
        "PageSize": 10})
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys)
    from urllib.parse import unquote_plus

    encoded = s3.list_objects_v2(Bucket=name, Prefix="odd", EncodingType="url")
    assert [unquote_plus(o["Key"]) for o in encoded["Contents"]] == ["odd key+%&<>.txt"]


def test_listed_times_from_either_database() -> None:
    """A listing writes S3's time from the raw column: SQLite's text, PostgreSQL's datetime."""
    from datetime import UTC, datetime, timedelta, timezone

    from cumulo.storage.s3api.app import _listed_time

    assert _listed_time("2026-12-04 20:22:52.123456") == "2026-12-04T20:22:52.123Z"
    assert _listed_time("2026-12-04 20:22:52") == "2026-12-04T20:22:52.000Z"
    assert _listed_time(datetime(2026, 12, 4, 20, 22, 52, 999999, tzinfo=UTC)) == \
        "2026-12-04T20:22:52.999Z"
    assert _listed_time(datetime(2026, 12, 4, 22, 0, 0, tzinfo=timezone(timedelta(hours=2)))) \
        == "2026-12-04T20:00:00.000Z"


def test_copy_and_delete_many(s3: Any) -> None:
    src, dst = _bucket(s3), _bucket(s3)
    s3.put_object(Bucket=src, Key="a.csv", Body=b"1,2\n", Metadata={"m": "1"})
    copied = s3.copy_object(Bucket=dst, Key="copy.csv", CopySource={"Bucket": src,
                                                                    "Key": "a.csv"})
    md5 = hashlib.md5(b"1,2\n").hexdigest()
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5}"'
    assert s3.head_object(Bucket=dst, Key="copy.csv")["Metadata"] == {"m": "1"}
    s3.copy_object(Bucket=dst, Key="copy.csv", CopySource=f"{dst}/copy.csv",
                   MetadataDirective="REPLACE", Metadata={"m": "2"})
    assert s3.head_object(Bucket=dst, Key="copy.csv")["Metadata"] == {"m": "2"}
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=dst, Key="c2", CopySource={"Bucket": src, "Key": "missing"})
    assert _code(caught) == "NoSuchKey"
    for i in range(3):
        s3.put_object(Bucket=dst, Key=f"d{i}", Body=b"x")
    done = s3.delete_objects(Bucket=dst, Delete={"Objects": [
        {"Key": "d0"}, {"Key": "d1"}, {"Key": "never-there"}, {"Key": "../up"}]})
    assert sorted(d["Key"] for d in done["Deleted"]) == ["d0", "d1", "never-there"]
    assert [(e["Key"], e["Code"]) for e in done["Errors"]] == [("../up", "InvalidArgument")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=dst)["Contents"]] == ["copy.csv", "d2"]


def test_checksums(s3: Any) -> None:
    name = _bucket(s3)
    body = b"checked" * 1000
    for algorithm in ("CRC32", "SHA256", "SHA1"):  # (boto3 needs awscrt for CRC32C)
        put = s3.put_object(Bucket=name, Key=f"c-{algorithm}", Body=body,
                            ChecksumAlgorithm=algorithm)
        assert put[f"Checksum{algorithm}"]
        got = s3.get_object(Bucket=name, Key=f"c-{algorithm}", ChecksumMode="ENABLED")
        assert got[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]
        assert got["Body"].read() == body  # botocore checks it as it reads
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert s3.head_object(Bucket=name, Key="c-CRC32", ChecksumMode="ENABLED")[
        "ChecksumCRC32"] == crc
    with pytest.raises(ClientError) as caught:  # a checksum that does not match the body
        s3.put_object(Bucket=name, Key="bad", Body=body, ChecksumCRC32="AAAAAA==")
    assert _code(caught) == "BadDigest"
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=name, Key="bad", Body=body,
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert _code(caught) == "BadDigest"
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=name, Key="bad")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_crc32c_checksums(server: Cumulo, s3: Any, key: dict[str, Any]) -> None:
    """CRC32C, checked by the server (boto3 computes it only with awscrt installed)."""
    import crc32c

    name = _bucket(s3)
    body = b"castagnoli" * 100
    value = base64.b64encode(crc32c.crc32c(body).to_bytes(4, "big")).decode()
    good = _raw(server, key, "PUT", f"/{name}/c.bin", body=body,
                headers={"x-amz-checksum-crc32c": value})
    assert good.status_code == 200 and good.headers["x-amz-checksum-crc32c"] == value
    got = s3.head_object(Bucket=name, Key="c.bin", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32C"] == value
    bad = _raw(server, key, "PUT", f"/{name}/d.bin", body=body,
               headers={"x-amz-checksum-crc32c": "AAAAAA=="})
    assert bad.status_code == 400 and b"BadDigest" in bad.content


# --- multipart --------------------------------------------------------------------------------


def test_multipart(server: Cumulo, s3: Any) -> None:
    name = _bucket(s3)
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    up = s3.create_multipart_upload(Bucket=name, Key="big.bin", Metadata={"k": "v"},
                                    ChecksumAlgorithm="CRC32")
    uid = up["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=name)["Uploads"]] == [uid]
    etags = [s3.upload_part(Bucket=name, Key="big.bin", UploadId=uid, PartNumber=i + 1,
                            Body=data, ChecksumAlgorithm="CRC32")
             for i, data in enumerate(parts_data)]
    listed = s3.list_parts(Bucket=name, Key="big.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, 5 * MiB),
                                                              (3, 4)]
    assert not s3.list_objects_v2(Bucket=name).get("Contents")  # nothing visible yet
    done = s3.complete_multipart_upload(Bucket=name, Key="big.bin", UploadId=uid,
                                        MultipartUpload={"Parts": [
                                            {"PartNumber": i + 1, "ETag": e["ETag"],
                                             "ChecksumCRC32": e["ChecksumCRC32"]}
                                            for i, e in enumerate(etags)]})
    whole = b"".join(parts_data)
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    got = s3.get_object(Bucket=name, Key="big.bin")
    assert got["Body"].read() == whole and got["Metadata"] == {"k": "v"}
    info = server.client().files.head(f"{name}/big.bin")
    assert info.sha256 == hashlib.sha256(whole).hexdigest()
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")
    # Upload part copy, from a range of another object.
    up = s3.create_multipart_upload(Bucket=name, Key="copied.bin")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=name, Key="copied.bin", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": name, "Key": "big.bin"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part(Bucket=name, Key="copied.bin", UploadId=up, PartNumber=2, Body=b"end")
    s3.complete_multipart_upload(Bucket=name, Key="copied.bin", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert s3.get_object(Bucket=name, Key="copied.bin")["Body"].read() == \
        parts_data[0] + b"end"
    # boto3's managed transfer: multipart with threads, as users upload big files.
    source = io.BytesIO(os.urandom(20 * MiB))
    s3.upload_fileobj(source, name, "managed.bin")
    out = io.BytesIO()
    s3.download_fileobj(name, "managed.bin", out)
    assert out.getvalue() == source.getvalue()


def test_multipart_parts_are_written_in_place(server: Cumulo, s3: Any) -> None:
    """Parts of one size land in their places in the upload's assembly file, and completing
    the upload makes that file the object: the same file (inode), no copy. Parts that cannot
    take their place (another size, a part sent again, a subset completed) still give the
    right bytes, joined."""
    name = _bucket(s3)
    storage = server.home / "storage"

    def upload(key: str, parts: dict[int, bytes]) -> tuple[str, dict[int, str]]:
        uid = s3.create_multipart_upload(Bucket=name, Key=key)["UploadId"]
        etags = {n: s3.upload_part(Bucket=name, Key=key, UploadId=uid, PartNumber=n,
                                   Body=data)["ETag"] for n, data in parts.items()}
        return uid, etags

    def complete(key: str, uid: str, etags: dict[int, str], **extra: Any) -> Any:
        return s3.complete_multipart_upload(
            Bucket=name, Key=key, UploadId=uid, **extra,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in sorted(etags.items())]})

    def body(key: str) -> bytes:
        return bytes(s3.get_object(Bucket=name, Key=key)["Body"].read())

    # Uniform parts (sent out of order, as threads do): in place, then renamed.
    parts = {2: os.urandom(5 * MiB), 1: os.urandom(5 * MiB), 3: b"last"}
    uid, etags = upload("inplace.bin", parts)
    folder = storage / "s3uploads" / uid
    assert sorted(p.name for p in folder.iterdir()) == [
        "assembly", "slot-00001", "slot-00002", "slot-00003", "stride"]
    inode = (folder / "assembly").stat().st_ino
    complete("inplace.bin", uid, etags)
    whole = parts[1] + parts[2] + parts[3]
    assert body("inplace.bin") == whole
    assert (storage / "buckets" / name / "inplace.bin").stat().st_ino == inode
    assert not folder.exists()
    assert server.client().files.head(f"{name}/inplace.bin").sha256 == \
        hashlib.sha256(whole).hexdigest()

    # A part sent again replaces the first copy; a part over the stride goes on its own.
    uid, etags = upload("mixed.bin", {1: os.urandom(5 * MiB), 2: os.urandom(5 * MiB)})
    again = os.urandom(5 * MiB)
    etags[1] = s3.upload_part(Bucket=name, Key="mixed.bin", UploadId=uid, PartNumber=1,
                              Body=again)["ETag"]
    bigger = os.urandom(6 * MiB)
    etags[3] = s3.upload_part(Bucket=name, Key="mixed.bin", UploadId=uid, PartNumber=3,
                              Body=bigger)["ETag"]
    listed = s3.list_parts(Bucket=name, Key="mixed.bin", UploadId=uid)["Parts"]
    uid_parts = {p["PartNumber"]: p["Size"] for p in listed}
    assert uid_parts == {1: 5 * MiB, 2: 5 * MiB, 3: 6 * MiB}
    folder = storage / "s3uploads" / uid
    first_two = (folder / "assembly").read_bytes()[5 * MiB:10 * MiB]
    complete("mixed.bin", uid, etags)
    assert body("mixed.bin") == again + first_two + bigger

    # Completing with a subset (parts 1 and 3 of 3): joined, not renamed.
    data = {1: os.urandom(5 * MiB), 2: os.urandom(5 * MiB), 3: os.urandom(1000)}
    uid, etags = upload("subset.bin", data)
    del etags[2]
    complete("subset.bin", uid, etags)
    assert body("subset.bin") == data[1] + data[3]

    # A completion that fails its condition leaves the upload whole, to complete later.
    s3.put_object(Bucket=name, Key="taken.bin", Body=b"first")
    data = {1: os.urandom(5 * MiB), 2: b"end"}
    uid, etags = upload("taken.bin", data)
    with pytest.raises(ClientError) as caught:
        complete("taken.bin", uid, etags, IfNoneMatch="*")
    assert _code(caught) == "PreconditionFailed"
    assert body("taken.bin") == b"first"
    complete("taken.bin", uid, etags)
    assert body("taken.bin") == data[1] + data[2]


def test_bad_multipart_uploads(s3: Any) -> None:
    name = _bucket(s3)
    s3.put_object(Bucket=name, Key="kept.bin", Body=b"old version")
    uid = s3.create_multipart_upload(Bucket=name, Key="kept.bin")["UploadId"]
    small = s3.upload_part(Bucket=name, Key="kept.bin", UploadId=uid, PartNumber=1,
                           Body=b"too small")
    last = s3.upload_part(Bucket=name, Key="kept.bin", UploadId=uid, PartNumber=2, Body=b"x")
    parts = [{"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]
    for given, code in ((parts, "EntityTooSmall"), (parts[::-1], "InvalidPartOrder"),
                        ([{"PartNumber": 1, "ETag": '"0123"'}], "InvalidPart"),
                        ([{"PartNumber": 7, "ETag": small["ETag"]}], "InvalidPart")):
        with pytest.raises(ClientError) as caught:
            s3.complete_multipart_upload(Bucket=name, Key="kept.bin", UploadId=uid,
                                         MultipartUpload={"Parts": given})
        assert _code(caught) == code, given
    assert s3.get_object(Bucket=name, Key="kept.bin")["Body"].read() == b"old version"
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=name, Key="kept.bin", UploadId=uid, PartNumber=10001, Body=b"x")
    assert _code(caught) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=name, Key="kept.bin", UploadId=uid)
    with pytest.raises(ClientError) as caught:
        s3.list_parts(Bucket=name, Key="kept.bin", UploadId=uid)
    assert _code(caught) == "NoSuchUpload"
    assert s3.get_object(Bucket=name, Key="kept.bin")["Body"].read() == b"old version"


# --- who may -------------------------------------------------------------------------------------


def test_a_keys_rights_are_its_users(server: Cumulo, s3: Any) -> None:
    name = _bucket(s3)
    s3.put_object(Bucket=name, Key="secret.txt", Body=b"s")
    outsider = server.add_user("s3-outsider", "s3-outsider-" + uuid.uuid4().hex,
                               role="analyst")  # tables and SQL only: no files
    theirs = _s3(server, outsider.keys.create("mine"))
    for call in (lambda: theirs.get_object(Bucket=name, Key="secret.txt"),
                 lambda: theirs.put_object(Bucket=name, Key="x", Body=b"x"),
                 lambda: theirs.list_objects_v2(Bucket=name)):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught) == "AccessDenied"
    events = server.client().audit.list(user="s3-outsider")["events"]
    assert any(e["resource"] == f"bucket/{name}/secret.txt" for e in events)


def test_bad_credentials(server: Cumulo, key: dict[str, Any]) -> None:
    wrong = _s3(server, {**key, "secret_access_key": "x" * 40})
    with pytest.raises(ClientError) as caught:
        wrong.list_buckets()
    assert _code(caught) == "SignatureDoesNotMatch"
    unknown = _s3(server, {**key, "access_key_id": "CKNOSUCHKEY000000000"})
    with pytest.raises(ClientError) as caught:
        unknown.list_buckets()
    assert _code(caught) == "InvalidAccessKeyId"
    c = server.client()
    doomed = c.keys.create("doomed")
    client = _s3(server, doomed)
    client.list_buckets()
    c.keys.revoke(doomed["access_key_id"])
    with pytest.raises(ClientError) as caught:
        client.list_buckets()
    assert _code(caught) == "InvalidAccessKeyId"
    assert [k["state"] for k in c.keys.list() if k["access_key_id"] == doomed["access_key_id"]] \
        == ["revoked"]


def _raw(server: Cumulo, key: dict[str, Any], method: str, path: str, *,
         at: datetime | None = None, body: bytes = b"", host: str | None = None,
         sha: str | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """A request signed by Cumulo's own signer (for the cases boto3 will not make)."""
    at = at or datetime.now(UTC)
    host = host or server.url.split("//", 1)[1]
    amz_date = at.strftime("%Y%m%dT%H%M%SZ")
    sha = sha or hashlib.sha256(body).hexdigest()
    all_headers = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": sha,
                   **(headers or {})}
    credential = sigv4.Credential(key["access_key_id"], amz_date[:8], "us-east-1", "s3")
    names = sorted(all_headers)
    signed = sigv4.Signed(credential, names, "", amz_date, presigned=False)
    canonical = sigv4.canonical_request(method, path.encode(), [], all_headers, signed, sha)
    signature = sigv4.signature(sigv4.signing_key(key["secret_access_key"], credential),
                                sigv4.string_to_sign(signed, canonical))
    all_headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key['access_key_id']}/"
                                    f"{credential.scope}, SignedHeaders={';'.join(names)}, "
                                    f"Signature={signature}")
    return httpx.request(method, server.url + path, headers=all_headers, content=body)


def _chunked(key: dict[str, Any], at: datetime, seed: str, pieces: list[bytes]) -> bytes:
    """An aws-chunked body whose chunks are signed, chained from the request's signature."""
    amz_date = at.strftime("%Y%m%dT%H%M%SZ")
    credential = sigv4.Credential(key["access_key_id"], amz_date[:8], "us-east-1", "s3")
    signed = sigv4.Signed(credential, [], "", amz_date, presigned=False)
    signing = sigv4.signing_key(key["secret_access_key"], credential)
    out, previous = [], seed
    for piece in [*pieces, b""]:
        previous = sigv4.signature(signing, sigv4.chunk_string(
            signed, previous, hashlib.sha256(piece).hexdigest()))
        out.append(f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece + b"\r\n")
    return b"".join(out)


def test_streaming_uploads_and_virtual_hosts(server: Cumulo, s3: Any,
                                             key: dict[str, Any]) -> None:
    """aws-chunked bodies (signed chunks; unsigned chunks with a trailing checksum), as the
    AWS SDKs stream uploads, and BUCKET.DOMAIN addressing where s3_domain is set."""
    name = _bucket(s3)
    data = os.urandom(200_000)
    pieces = [data[:65536], data[65536:131072], data[131072:]]
    at = datetime.now(UTC)
    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    headers = {"content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data))}
    # The request's own signature is the chunks' seed: sign once to learn it, then send.
    probe = _raw(server, key, "PUT", f"/{name}/stream.bin", at=at, sha=streaming,
                 headers=headers, body=b"")
    seed = probe.request.headers["authorization"].rsplit("Signature=", 1)[1]
    body = _chunked(key, at, seed, pieces)
    sent = httpx.put(str(probe.request.url), content=body,
                     headers={**dict(probe.request.headers), "content-length": str(len(body))})
    assert sent.status_code == 200, sent.text
    assert s3.get_object(Bucket=name, Key="stream.bin")["Body"].read() == data
    tampered = bytearray(body)
    tampered[100] ^= 1
    refused = httpx.put(str(probe.request.url), content=bytes(tampered), headers={
        **dict(probe.request.headers), "content-length": str(len(body))})
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content
    assert s3.get_object(Bucket=name, Key="stream.bin")["Body"].read() == data  # kept
    # Unsigned chunks, a CRC32 after them.
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    trailer_body = (f"{len(data):x}\r\n".encode() + data
                    + f"\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode())
    trailed = _raw(server, key, "PUT", f"/{name}/trailer.bin",
                   sha="STREAMING-UNSIGNED-PAYLOAD-TRAILER", body=trailer_body, headers={
                       "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                       "x-amz-decoded-content-length": str(len(data))})
    assert trailed.status_code == 200, trailed.text
    assert s3.head_object(Bucket=name, Key="trailer.bin", ChecksumMode="ENABLED")[
        "ChecksumCRC32"] == crc
    bad = trailer_body.replace(crc.encode(), b"AAAAAA==")
    wrong = _raw(server, key, "PUT", f"/{name}/wrong.bin",
                 sha="STREAMING-UNSIGNED-PAYLOAD-TRAILER", body=bad, headers={
                     "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                     "x-amz-decoded-content-length": str(len(data))})
    assert wrong.status_code == 400 and b"BadDigest" in wrong.content
    # Virtual-host style: the bucket in the host name.
    port = server.url.rsplit(":", 1)[1]
    hosted = _raw(server, key, "GET", "/stream.bin", host=f"{name}.s3.test:{port}")
    assert hosted.status_code == 200 and hosted.content == data


def test_bad_requests(server: Cumulo, s3: Any, key: dict[str, Any]) -> None:
    name = _bucket(s3)
    skewed = _raw(server, key, "GET", f"/{name}", at=datetime.now(UTC) - timedelta(minutes=20))
    assert skewed.status_code == 403 and b"RequestTimeTooSkewed" in skewed.content
    assert _raw(server, key, "GET", f"/{name}").status_code == 200
    # A header changed after signing.
    ok = _raw(server, key, "PUT", f"/{name}/m.txt", body=b"x",
              headers={"x-amz-meta-who": "ana"})
    assert ok.status_code == 200
    request = ok.request
    forged = httpx.put(str(request.url), content=b"x",
                       headers={**dict(request.headers), "x-amz-meta-who": "eve"})
    assert forged.status_code == 403 and b"SignatureDoesNotMatch" in forged.content
    # Keys Cumulo refuses, as its own API does: .., NUL, over 1024 bytes, invalid UTF-8.
    for path in (f"/{name}/a/%2E%2E/b", f"/{name}/a%00b", f"/{name}/" + "k" * 1025,
                 f"/{name}/bad%FFutf8"):
        answer = _raw(server, key, "PUT", path, body=b"x")
        assert answer.status_code == 400, (path, answer.text)
        assert (b"<Code>" in answer.content and b"InvalidArgument" in answer.content) or \
            b"KeyTooLongError" in answer.content
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["m.txt"]
    # An upload cut off halfway: nothing visible, the old version kept.
    s3.put_object(Bucket=name, Key="cut.bin", Body=b"old")
    host, port = server.url.split("//", 1)[1].split(":")
    signed = _raw(server, key, "PUT", f"/{name}/cut.bin", body=b"n" * 100_000)
    assert signed.status_code == 200  # (the signature of a whole body, to send half of)
    s3.put_object(Bucket=name, Key="cut.bin", Body=b"old")
    head = [f"PUT /{name}/cut.bin HTTP/1.1"] + [f"{k}: {v}" for k, v in
                                                signed.request.headers.items()]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"n" * 50_000)
    assert s3.get_object(Bucket=name, Key="cut.bin")["Body"].read() == b"old"
    # A presigned URL that expired.
    url = sigv4.presign("GET", f"{server.url}/{name}/m.txt",
                        access_key=key["access_key_id"], secret=key["secret_access_key"],
                        expires=60, now=datetime.now(UTC) - timedelta(minutes=5))
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    # Signature Version 2 (presigned URLs' default in boto3 and the aws command) is checked too.
    old = httpx.get(f"{server.url}/{name}", headers={"authorization": "AWS CKNOSUCH:abc",
                                                      "date": "Fri, 04 Dec 2026 10:00:00 GMT"})
    assert old.status_code == 403 and b"InvalidAccessKeyId" in old.content


def test_presigned_urls(server: Cumulo, s3: Any) -> None:
    name = _bucket(s3)
    s3.put_object(Bucket=name, Key="share.csv", Body=b"a,b\n")
    c = server.client()
    assert httpx.get(c.files.presign(f"{name}/share.csv", expires_in="10m")).content == \
        b"a,b\n"
    upload = c.files.presign(f"{name}/up.txt", method="PUT")
    assert httpx.put(upload, content=b"uploaded").status_code == 200
    assert s3.get_object(Bucket=name, Key="up.txt")["Body"].read() == b"uploaded"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "share.csv"},
                                    ExpiresIn=60)
    assert httpx.get(url).content == b"a,b\n"
    # (boto3's presigned URLs are Signature Version 2 by default; the bucket's own too)
    listing = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": name},
                                        ExpiresIn=60)
    assert b"<Key>share.csv</Key>" in httpx.get(listing).content
    printed = server.cli("files", "presign", f"{name}/share.csv", "--expires", "1h")
    assert printed.returncode == 0, printed.stderr
    assert httpx.get(printed.stdout.strip()).content == b"a,b\n"


# --- other clients ---------------------------------------------------------------------------


def _tools(tool: str) -> Path:
    path = TOOLS / tool
    assert path.exists(), f"{path} is missing: 'make test' installs the S3 clients there"
    return path


def _env(server: Cumulo, key: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": key["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": key["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": server.url, "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


def test_the_aws_command(server: Cumulo, s3: Any, key: dict[str, Any], tmp_path: Path) -> None:
    name = _bucket(s3)
    aws, env = str(_tools("aws")), _env(server, key)

    def run(*args: str) -> str:
        done = subprocess.run([aws, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "deep" / "b.bin").write_bytes(os.urandom(9 * MiB))  # multipart through the CLI
    run("s3", "cp", str(src / "a.txt"), f"s3://{name}/one/a.txt")
    run("s3", "sync", str(src), f"s3://{name}/tree/")
    listed = run("s3", "ls", "--recursive", f"s3://{name}/")
    assert "one/a.txt" in listed and "tree/deep/b.bin" in listed
    assert run("s3", "sync", str(src), f"s3://{name}/tree/").strip() == ""  # nothing changed
    back = tmp_path / "back"
    run("s3", "sync", f"s3://{name}/tree/", str(back))
    assert (back / "deep" / "b.bin").read_bytes() == (src / "deep" / "b.bin").read_bytes()
    url = run("s3", "presign", f"s3://{name}/one/a.txt", "--expires-in", "60").strip()
    assert httpx.get(url).content == b"a"


def test_s3fs(server: Cumulo, s3: Any, key: dict[str, Any]) -> None:
    name = _bucket(s3)
    s3.put_object(Bucket=name, Key="dir/x.csv", Body=b"a,b\n1,2\n")
    script = f"""
import s3fs, json
fs = s3fs.S3FileSystem(endpoint_url={server.url!r})
fs.pipe({name + '/dir/y.txt'!r}, b"written by s3fs")
with fs.open({name + '/dir/x.csv'!r}, "rb") as f:
    f.seek(4)
    tail = f.read().decode()
print(json.dumps({{"ls": sorted(fs.ls({name + '/dir'!r})), "tail": tail,
                  "size": fs.info({name + '/dir/x.csv'!r})["size"]}}))
"""
    done = subprocess.run([str(_tools("python")), "-c", script], env=_env(server, key),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ls": [f"{name}/dir/x.csv", f"{name}/dir/y.txt"],
                                       "tail": "1,2\n", "size": 8}
    assert s3.get_object(Bucket=name, Key="dir/y.txt")["Body"].read() == b"written by s3fs"


def test_pyarrow_and_polars_read_parquet(server: Cumulo, s3: Any, key: dict[str, Any]) -> None:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    name = _bucket(s3)
    table = pa.table({"id": list(range(1000)), "v": [float(i) / 3 for i in range(1000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=name, Key="t/part-0.parquet", Body=sink.getvalue())
    host = server.url.split("//", 1)[1]
    arrow_fs = fs.S3FileSystem(access_key=key["access_key_id"],
                               secret_key=key["secret_access_key"], endpoint_override=host,
                               scheme="http", region="us-east-1")
    assert pq.read_table(f"{name}/t/part-0.parquet", filesystem=arrow_fs).equals(table)
    options = {"aws_access_key_id": key["access_key_id"],
               "aws_secret_access_key": key["secret_access_key"], "aws_region": "us-east-1",
               "aws_endpoint_url": server.url, "aws_allow_http": "true"}
    frame = pl.read_parquet(f"s3://{name}/t/part-0.parquet", storage_options=options)
    assert frame.height == 1000 and frame["id"].sum() == sum(range(1000))


def test_rclone_sync_both_ways(server: Cumulo, s3: Any, key: dict[str, Any],
                               tmp_path: Path) -> None:
    import shutil

    rclone = shutil.which("rclone")
    assert rclone, "rclone is missing: 'make test' installs it (scripts/install-test-services)"
    name = _bucket(s3)
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("AWS_") and not k.endswith("_CA_BUNDLE")},
           "RCLONE_CONFIG_CUMULO_TYPE": "s3",
           "RCLONE_CONFIG_CUMULO_PROVIDER": "Other",
           "RCLONE_CONFIG_CUMULO_ACCESS_KEY_ID": key["access_key_id"],
           "RCLONE_CONFIG_CUMULO_SECRET_ACCESS_KEY": key["secret_access_key"],
           "RCLONE_CONFIG_CUMULO_ENDPOINT": server.url, "RCLONE_CONFIG": "/dev/null"}
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(MiB))

    def run(*args: str) -> None:
        done = subprocess.run([rclone, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr

    run("sync", str(src), f"cumulo:{name}/mirror")
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]) == [
        "mirror/a.txt", "mirror/sub/b.bin"]
    run("check", str(src), f"cumulo:{name}/mirror")  # sizes and MD5s agree
    s3.put_object(Bucket=name, Key="mirror/new.txt", Body=b"added in Cumulo")
    back = tmp_path / "back"
    run("sync", f"cumulo:{name}/mirror", str(back))
    assert (back / "new.txt").read_text() == "added in Cumulo"
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()


JOB = """\
import boto3, sys
s3 = boto3.client("s3")  # no arguments: the job's environment names Cumulo and its key
bucket = sys.argv[1]
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
s3.put_object(Bucket=bucket, Key="from-the-job.txt", Body=",".join(keys).encode())
print("key", s3._request_signer._credentials.access_key)
"""


def test_a_job_reaches_s3_as_itself(server: Cumulo, s3: Any, tmp_path: Path) -> None:
    name = _bucket(s3)
    s3.put_object(Bucket=name, Key="input.csv", Body=b"x")
    (tmp_path / "job.py").write_text(JOB)
    c = server.client()
    job = c.jobs.run("job.py", code=tmp_path, args=[name])
    assert job.wait(120)["state"] == "succeeded", "\n".join(job.logs())
    assert s3.get_object(Bucket=name, Key="from-the-job.txt")["Body"].read() == b"input.csv"
    assert server.client().files.head(f"{name}/from-the-job.txt").created_by == "admin"
    used = next(line.split()[1] for line in job.logs() if line.startswith("key "))
    gone = _s3(server, {"access_key_id": used, "secret_access_key": "x" * 40})
    with pytest.raises(ClientError) as caught:  # its key ended with it
        gone.list_buckets()
    assert _code(caught) == "InvalidAccessKeyId"


# --- the lake's tables, read-only ------------------------------------------------------------


def test_lake_tables_read_through_s3_with_the_callers_grants(server: Cumulo, s3: Any,
                                                              key: dict[str, Any]) -> None:
    import deltalake
    import polars as pl
    import pyarrow as pa

    c = server.client()
    db = "s3lake" + uuid.uuid4().hex[:6]
    c.tables.create_database(db)
    c.tables.write(f"{db}.orders", pa.table({"id": [1, 2], "amount": [9.5, 3.0]}))
    c.tables.write(f"{db}.orders", pa.table({"id": [3], "amount": [7.25]}))
    assert f"{db}/" in [p["Prefix"] for p in s3.list_objects_v2(
        Bucket="lake", Delimiter="/").get("CommonPrefixes", [])]
    assert [p["Prefix"] for p in s3.list_objects_v2(Bucket="lake", Prefix=f"{db}/",
                                                    Delimiter="/")["CommonPrefixes"]] == [
        f"{db}/orders/"]
    files = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=f"{db}/orders/")[
        "Contents"]]
    assert f"{db}/orders/_delta_log/00000000000000000001.json" in files
    options = {"AWS_ACCESS_KEY_ID": key["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": key["secret_access_key"], "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": server.url, "AWS_ALLOW_HTTP": "true"}
    table = deltalake.DeltaTable(f"s3://lake/{db}/orders", storage_options=options)
    assert table.version() == 1
    assert sorted(table.to_pyarrow_table()["id"].to_pylist()) == [1, 2, 3]
    table.load_as_version(0)
    assert sorted(table.to_pyarrow_table()["id"].to_pylist()) == [1, 2]  # time travel
    frame = pl.read_delta(f"s3://lake/{db}/orders", storage_options=options)
    assert frame["amount"].sum() == 19.75
    # Read-only, for everyone.
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket="lake", Key=f"{db}/orders/x.parquet", Body=b"x")
    assert _code(caught) == "AccessDenied"
    with pytest.raises(ClientError) as caught:
        s3.delete_object(Bucket="lake", Key=f"{db}/orders/_delta_log/00000000000000000000.json")
    assert _code(caught) == "AccessDenied"
    # A caller who may not read the table neither sees nor reads it.
    invoker = server.add_user("s3-invoker", "s3-invoker-" + uuid.uuid4().hex, role="analyst")
    c.sql(f"ALTER TABLE {db}.orders ALTER COLUMN amount SET MASK '0' FOR USER \"s3-invoker\"")
    theirs = _s3(server, invoker.keys.create("lake"))
    assert not [o for o in theirs.list_objects_v2(Bucket="lake", Prefix=f"{db}/").get(
        "Contents", [])]
    with pytest.raises(ClientError) as caught:
        theirs.get_object(Bucket="lake", Key=f"{db}/orders/_delta_log/00000000000000000000.json")
    assert _code(caught) == "AccessDenied"


# --- metering -------------------------------------------------------------------------------


def test_requests_are_metered_by_class(server: Cumulo, s3: Any) -> None:
    """Each signed request is counted for its bucket, by S3's price classes (PUT/COPY/POST/
    LIST and GET/HEAD; DELETE free), and written as the bucket's usage with the next round."""
    import json

    c = server.client()
    c.costs.sample()  # what earlier tests sent: written before this one's count
    name = _bucket(s3)  # PUT (CreateBucket)
    s3.put_object(Bucket=name, Key="a.txt", Body=b"a")  # PUT
    s3.copy_object(Bucket=name, Key="b.txt", CopySource={"Bucket": name, "Key": "a.txt"})
    s3.list_objects_v2(Bucket=name)  # LIST: the PUT class
    s3.get_object(Bucket=name, Key="a.txt")["Body"].read()  # GET
    s3.head_object(Bucket=name, Key="b.txt")  # HEAD: the GET class
    with pytest.raises(ClientError):
        s3.get_object(Bucket=name, Key="missing")  # refused, and billed as S3 does
    s3.delete_object(Bucket=name, Key="b.txt")  # free
    c.costs.sample()
    done = server.cli("costs", "--by", "resource", "--since", "1d", "--json")
    assert done.returncode == 0, done.stderr
    row = {r["resource"]: r for r in json.loads(done.stdout)["rows"]}[f"bucket {name}"]
    assert row["put_requests"] == 4 and row["get_requests"] == 3, row
    assert row["cost_usd"] == pytest.approx(4 / 1000 * 0.005 + 3 / 1000 * 0.0004, rel=1e-3)
