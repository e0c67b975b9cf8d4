"""The S3 REST protocol over Cumulo's buckets and objects, as a plain ASGI app.

Requests signed with Signature Version 4 (an ``AWS4-HMAC-SHA256`` Authorization header, or a
presigned URL's ``X-Amz-*`` query) are S3 requests, whatever their path (:func:`is_s3`): the
server's AWS dispatch (:mod:`cumulo.server.aws`) hands them here, and everything else to
Cumulo's own routes. So boto3, the aws command, rclone and every other S3 client take
Cumulo's URL as their endpoint (path-style addressing: ``/BUCKET/KEY``), or, where the
``s3_domain`` setting names a domain, ``BUCKET.DOMAIN`` (virtual-host style).

Each request acts as the access key's token (:mod:`cumulo.access.keys`): its user's grants
decide (``files:Get`` on ``bucket/B/K``, ...) in the one decision point, refusals and changes
go to the audit log, and objects written here are the objects of ``cumulo files`` (the same
rows: SHA-256, creator, times), with what S3 keeps besides (ETag, stored headers, tags,
checksums).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from anyio import to_thread
from sqlalchemy import String, delete, select, type_coerce
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from cumulo.access.keys import KeyCache
from cumulo.errors import CumuloError, Invalid, NotFound
from cumulo.logs import request_id
from cumulo.principal import Principal, request_project, source_address
from cumulo.storage import service
from cumulo.storage.keys import validate_key
from cumulo.storage.leftovers import marked
from cumulo.storage.models import StoredObject, Upload, UploadPart
from cumulo.storage.requests import TALLY
from cumulo.storage.s3api import sigv2, sigv4, virtual
from cumulo.storage.s3api.assembly import Assembly
from cumulo.storage.s3api.body import CHECKSUMS, Checksum, Payload, Spooled, read_all, spool
from cumulo.storage.s3api.chunked import ChunkedDecoder
from cumulo.storage.s3api.errors import S3Error, from_cumulo, xml_error
from cumulo.storage.s3api.xmlio import children, document, el, http_date, iso, parse, text_of
from cumulo.storage.transfer import join_files

__all__ = ["S3App", "is_s3"]

log = logging.getLogger("cumulo.s3")

MAX_PUT = 5 << 30  # one PUT (an object, or a part), as S3's
MIN_PART = 5 << 20  # every part of a multipart upload but the last
MAX_PARTS = 10_000
MAX_KEYS = 1000
CHUNK = 1 << 20
# Headers stored with an object and given back when it is read.
_STORED = ("cache-control", "content-disposition", "content-encoding", "content-language",
           "expires")
_OVERRIDES = {"response-content-type": "content-type",
              "response-content-language": "content-language",
              "response-expires": "expires", "response-cache-control": "cache-control",
              "response-content-disposition": "content-disposition",
              "response-content-encoding": "content-encoding"}


def is_s3(scope: Scope, domain: str | None = None) -> bool:
    """Whether a request is S3's: signed with SigV4 (or AWS's older scheme, to be told
    so), or addressed to a bucket by host name under ``domain``."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bool(value.startswith((b"AWS4-HMAC-SHA256", b"AWS ")))
        if domain and name == b"host":
            host = value.decode("latin-1").rsplit(":", 1)[0].lower()
            if host.endswith("." + domain):
                return True
    query = scope.get("query_string", b"")
    return b"X-Amz-Algorithm=" in query or b"AWSAccessKeyId=" in query


_DRAIN = 8 << 20  # bytes of a refused request's body read past to keep its connection


class _BodyState:
    """How much of a request's body the app has read."""

    def __init__(self, scope: Scope) -> None:
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        self.declared = int(length) if length.isdigit() else None
        self.done = self.declared == 0 or (self.declared is None
                                           and b"transfer-encoding" not in headers)
        self.read = 0


@dataclass
class _Request:
    method: str
    raw_path: bytes
    raw_query: bytes
    pairs: list[tuple[str, str]]
    query: dict[str, str]
    headers: dict[str, str]
    bucket: str | None
    key: str | None
    client: str | None
    principal: Principal | None = None
    payload: Payload | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class _Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Any = None  # an async iterator of bytes, for GetObject


class S3App:
    def __init__(self, domain: str | None = None) -> None:
        self.domain = domain
        self._keys: KeyCache | None = None

    # --- the request's way through ------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = scope["app"].state.services
        rid = request_id.get() or uuid.uuid4().hex[:16]
        request: _Request | None = None
        body = _BodyState(scope)

        async def tracked() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body.done = True
            else:
                body.read += len(message.get("body", b""))
            return message

        try:
            request = self._request(scope)
            await self._authenticate(running, request)
            answer = await self._dispatch(running, request, tracked)
        except S3Error as exc:
            answer = self._error(exc, scope, request, rid)
        except CumuloError as exc:
            error = from_cumulo(exc, bucket=request.bucket if request else None,
                                key=request.key if request else None)
            answer = self._error(error, scope, request, rid)
        except Exception:
            log.exception("S3 request %s %s failed", scope["method"], scope["path"])
            answer = self._error(S3Error("InternalError", "We encountered an internal error. "
                                         "Please try again.", 500), scope, request, rid)
        if not body.done:
            # Answered before its body was read (refused, say): the connection goes on only
            # if the rest of a small body can be read past; else it is closed after the answer.
            if body.declared is not None and body.declared - body.read <= _DRAIN:
                while not body.done:
                    await tracked()
            else:
                answer.headers["connection"] = "close"
        if request is not None and request.principal is not None and request.bucket:
            # Signed and naming a bucket: metered (S3 bills requests, refused ones too).
            TALLY.count(request.bucket, request.principal.user_id, request.method,
                        has_key=request.key is not None)
        await self._send(scope, send, answer, rid)

    def _error(self, error: S3Error, scope: Scope, request: _Request | None,
               rid: str) -> _Answer:
        resource = scope["path"]
        body = b"" if scope["method"] == "HEAD" else xml_error(error, resource=resource,
                                                               request_id=rid)
        return _Answer(error.status, {"content-type": "application/xml", **error.headers}, body)

    async def _send(self, scope: Scope, send: Send, answer: _Answer, rid: str) -> None:
        headers = {"x-amz-request-id": rid, "server": "Cumulo", **answer.headers}
        if answer.stream is None and "content-length" not in headers:
            headers["content-length"] = str(len(answer.body))
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        if answer.stream is None:
            await send({"type": "http.response.body",
                        "body": b"" if scope["method"] == "HEAD" else answer.body})
            return
        async for chunk in answer.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _request(self, scope: Scope) -> _Request:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        pairs = sigv4.split_query(scope.get("query_string", b""))
        path = unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="replace")
        bucket: str | None = None
        host = headers.get("host", "").rsplit(":", 1)[0].lower()
        if self.domain and host.endswith("." + self.domain):
            bucket = host[: -len(self.domain) - 1]
            rest = path.lstrip("/")
        else:
            first, _, rest = path.lstrip("/").partition("/")
            bucket = first or None
        key = rest or None
        client = scope.get("client")
        return _Request(scope["method"], raw_path, scope.get("query_string", b""), pairs,
                        dict(pairs), headers, bucket, key, client[0] if client else None)

    async def _authenticate(self, running: Any, request: _Request) -> None:
        auth = request.header("authorization") or ""
        if self._keys is None:
            self._keys = KeyCache(running.sessions)
        if auth.startswith("AWS ") or "AWSAccessKeyId" in request.query:
            await self._authenticate_v2(request)
            return
        try:
            signed = (sigv4.parse_header(auth, request.headers) if auth
                      else sigv4.parse_query(request.query))
            sigv4.check_time(signed, datetime.now(UTC))
        except sigv4.SignatureError as exc:
            raise S3Error(exc.code, exc.message, exc.status) from None
        assert self._keys is not None
        secret, principal = await to_thread.run_sync(self._keys.resolve,
                                                     signed.credential.access_key)
        payload_hash = (request.header("x-amz-content-sha256") or "") if auth else \
            request.query.get("X-Amz-Content-Sha256", sigv4.UNSIGNED)
        if not payload_hash:
            raise S3Error("InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256")
        key = sigv4.signing_key(secret, signed.credential)
        expected = ""
        for raw_path in _path_forms(request.raw_path):
            try:
                canonical = sigv4.canonical_request(request.method, raw_path, request.pairs,
                                                    request.headers, signed, payload_hash)
            except sigv4.SignatureError as exc:
                raise S3Error(exc.code, exc.message, exc.status) from None
            expected = sigv4.signature(key, sigv4.string_to_sign(signed, canonical))
            if sigv4.matches(expected, signed.signature):
                break
        else:
            raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does "
                          "not match the signature you provided. Check your key and signing "
                          "method.", 403, AWSAccessKeyId=signed.credential.access_key)
        request.principal = principal
        request.payload = _payload(request, payload_hash, signed, key, expected)
        if request.client:
            source_address.set(request.client)
        request_project.set(None)

    async def _authenticate_v2(self, request: _Request) -> None:
        """Signature Version 2 (:mod:`cumulo.storage.s3api.sigv2`): what boto3's and the aws
        command's presigned URLs use by default; its body is not signed."""
        assert self._keys is not None
        secret, principal = await to_thread.run_sync(
            self._keys.resolve, sigv2.access_key(request.query, request.headers))
        try:
            sigv2.verify(request.method, request.raw_path, request.raw_query, request.query,
                         request.headers, secret, datetime.now(UTC))
        except sigv4.SignatureError as exc:
            raise S3Error(exc.code, exc.message, exc.status) from None
        request.principal = principal
        request.payload = _payload(request, sigv4.UNSIGNED, None, b"", "")
        if request.client:
            source_address.set(request.client)
        request_project.set(None)

    # --- routing ------------------------------------------------------------------------------

    async def _dispatch(self, running: Any, request: _Request, receive: Receive) -> _Answer:
        m, q, bucket, key = request.method, request.query, request.bucket, request.key
        ops = _Ops(running, request, receive)
        if bucket is None:
            if m == "GET":
                return await ops.list_buckets()
            raise S3Error("MethodNotAllowed", f"{m} on the service is not supported", 405)
        view = virtual.get(bucket)
        if view is not None:
            return await ops.read_only_bucket(view)
        if key is None:
            for flag in ("policy", "acl", "cors", "lifecycle", "website", "replication",
                         "encryption", "logging", "notification", "object-lock"):
                if flag in q:
                    raise S3Error("NotImplemented", f"bucket {flag} is not supported by "
                                  "Cumulo's S3 API (docs/storage.md)", 501)
            if m == "GET" and "location" in q:
                return await ops.location()
            if m == "GET" and "versioning" in q:
                return await ops.versioning()
            if m == "GET" and "tagging" in q:
                raise S3Error("NoSuchTagSet", "The TagSet does not exist", 404)
            if m == "GET" and "uploads" in q:
                return await ops.list_uploads()
            if m == "GET":
                return await ops.list_objects()
            if m == "HEAD":
                return await ops.head_bucket()
            if m == "PUT":
                return await ops.create_bucket()
            if m == "DELETE":
                return await ops.delete_bucket()
            if m == "POST" and "delete" in q:
                return await ops.delete_objects()
            raise S3Error("MethodNotAllowed", f"{m} on a bucket is not supported", 405)
        if "tagging" in q:
            if m == "GET":
                return await ops.get_tagging()
            if m == "PUT":
                return await ops.put_tagging()
            if m == "DELETE":
                return await ops.delete_tagging()
        for flag in ("acl", "retention", "legal-hold", "torrent", "restore", "select",
                     "attributes"):
            if flag in q:
                raise S3Error("NotImplemented", f"object {flag} is not supported by "
                              "Cumulo's S3 API (docs/storage.md)", 501)
        if "uploadId" in q:
            if m == "PUT" and "partNumber" in q:
                return await ops.upload_part()
            if m == "POST":
                return await ops.complete_upload()
            if m == "DELETE":
                return await ops.abort_upload()
            if m == "GET":
                return await ops.list_parts()
        if m == "POST" and "uploads" in q:
            return await ops.create_upload()
        if m in ("GET", "HEAD"):
            return await ops.get_object(head=m == "HEAD")
        if m == "PUT":
            if request.header("x-amz-copy-source"):
                return await ops.copy_object()
            return await ops.put_object()
        if m == "DELETE":
            return await ops.delete_object()
        raise S3Error("MethodNotAllowed", f"{m} on an object is not supported", 405)


def _path_forms(raw_path: bytes) -> list[bytes]:
    """The path as the client may have signed it: as S3 encodes it, or as sent."""
    normal = sigv4.canonical_uri(raw_path).encode()
    return [raw_path] if normal == raw_path else [raw_path, normal]


def _payload(request: _Request, payload_hash: str, signed: sigv4.Signed | None, key: bytes,
             seed: str) -> Payload:
    headers = request.headers
    length_text = headers.get("content-length")
    decoder = None
    sha256: str | None = None
    if payload_hash in sigv4.STREAMING and signed is not None:
        length_text = headers.get("x-amz-decoded-content-length", length_text)
        sign_chunk = sign_trailer = None
        if payload_hash.startswith("STREAMING-AWS4-HMAC-SHA256"):
            def sign_chunk(previous: str, digest: str) -> str:
                return sigv4.signature(key, sigv4.chunk_string(signed, previous, digest))

            if payload_hash.endswith("TRAILER"):
                def sign_trailer(previous: str, digest: str) -> str:
                    return sigv4.signature(key, sigv4.trailer_string(signed, previous,
                                                                      digest))
        decoder = ChunkedDecoder(seed, sign_chunk, sign_trailer)
    elif payload_hash != sigv4.UNSIGNED:
        if len(payload_hash) != 64 or any(c not in "0123456789abcdef" for c in payload_hash):
            raise S3Error("InvalidArgument", f"x-amz-content-sha256 {payload_hash[:80]!r} is "
                          "not a SHA-256, UNSIGNED-PAYLOAD or a STREAMING- value")
        sha256 = payload_hash
    length = int(length_text) if length_text and length_text.isdigit() else None
    checksum = None
    for name in CHECKSUMS:
        value = headers.get(f"x-amz-checksum-{name}")
        if value is not None:
            checksum = Checksum(name, value)
    trailer = headers.get("x-amz-trailer")
    if trailer and trailer.lower().startswith("x-amz-checksum-"):
        name = trailer.lower().removeprefix("x-amz-checksum-")
        if name not in CHECKSUMS:
            raise S3Error("InvalidRequest", f"the {name.upper()} checksum is not supported; "
                          "use CRC32, CRC32C, SHA1 or SHA256")
        checksum = Checksum(name)
    if checksum is None:
        algorithm = (headers.get("x-amz-sdk-checksum-algorithm") or "").lower()
        if algorithm and algorithm not in CHECKSUMS:
            raise S3Error("InvalidRequest", f"the {algorithm.upper()} checksum is not "
                          "supported; use CRC32, CRC32C, SHA1 or SHA256")
    return Payload(sha256=sha256, length=length, decoder=decoder,
                   content_md5=headers.get("content-md5"), checksum=checksum)


def _etag(row: StoredObject) -> str:
    return f'"{row.etag or row.sha256}"'


def _quoted(etag: str) -> str:
    etag = etag.strip()
    return etag if etag.startswith('"') else f'"{etag}"'


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def _meta_from(headers: dict[str, str]) -> dict[str, str] | None:
    meta = {k: v for k, v in headers.items() if k.startswith("x-amz-meta-") or k in _STORED}
    if sum(len(k) + len(v) for k, v in meta.items()) > 8 << 10:
        raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed "
                      "metadata size (8 KiB).")
    return meta or None


def _tags_from_header(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    tags = dict(parse_qsl(text, keep_blank_values=True))
    _check_tags(tags)
    return tags


def _check_tags(tags: dict[str, str]) -> None:
    if len(tags) > 10:
        raise S3Error("BadRequest", f"an object has at most 10 tags, not {len(tags)}")
    for k, v in tags.items():
        if not k or len(k) > 128 or len(v) > 256:
            raise S3Error("InvalidTag", f"tag {k[:40]!r}: a key is 1 to 128 characters and a "
                          "value at most 256")


# What a listing shows of each object (ETags and hashes are hex: nothing to escape). The
# time comes as the database gives it: SQLite's text is turned into S3's form by slicing,
# about half of a page's time saved over parsing it into a datetime and formatting that.
_LISTED = (StoredObject.key, StoredObject.size, StoredObject.etag, StoredObject.sha256,
           type_coerce(StoredObject.modified_at, String).label("modified_at"))


def _listed_time(value: object) -> str:
    """S3's time of a listed object from its raw ``modified_at``: SQLite's UTC text
    (``2026-12-04 20:22:52.123456``), or a datetime (PostgreSQL's driver)."""
    if isinstance(value, str):
        if len(value) >= 23 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:23]}Z"
        return iso(datetime.fromisoformat(value).replace(tzinfo=None))
    if isinstance(value, datetime):
        return iso(value.astimezone(UTC) if value.tzinfo else value)
    raise TypeError(f"not a time: {value!r}")


def _when(row: Any) -> datetime:
    at: datetime = row.modified_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class _Ops:
    """One request's operation: the S3 semantics over :mod:`cumulo.storage.service`."""

    def __init__(self, running: Any, request: _Request, receive: Receive) -> None:
        self.running = running
        self.request = request
        self.receive = receive
        self.storage = running.storage
        self.principal: Principal = request.principal  # type: ignore[assignment]

    # helpers ---------------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with self.running.sessions() as session:
                return fn(session, *args, **kwargs)

        return await to_thread.run_sync(run)

    def _require(self, action: str, resource: str) -> None:
        self.principal.require(action, resource)

    def _audit(self, action: str, resource: str, status: int = 200) -> None:
        self.running.trail.change(user=self.principal.user_name, action=action,
                                  resource=resource, status=status,
                                  method=self.request.method,
                                  path=self.request.raw_path.decode("latin-1")[:1024],
                                  source=self.request.client)

    @property
    def bucket(self) -> str:
        assert self.request.bucket is not None
        return self.request.bucket

    @property
    def key(self) -> str:
        assert self.request.key is not None
        return validate_key(self.request.key)

    async def _body(self, limit: int = 1 << 20) -> bytes:
        assert self.request.payload is not None
        return await read_all(self.receive, self.request.payload, limit)

    async def _spool(self) -> Spooled:
        payload = self.request.payload
        assert payload is not None
        if payload.length is not None and payload.length > MAX_PUT:
            raise S3Error("EntityTooLarge", f"one PUT carries at most {MAX_PUT} bytes (5 GiB); "
                          "upload larger objects in parts (multipart)")
        return await spool(self.receive, payload, self.storage.spool_dir())

    def _xml(self, root: str, *parts: str, status: int = 200) -> _Answer:
        return _Answer(status, {"content-type": "application/xml"}, document(root, *parts))

    # buckets ---------------------------------------------------------------------------------

    async def list_buckets(self) -> _Answer:
        def run(session: Session) -> list[service.BucketInfo]:
            self._require("files:ListBuckets", "bucket/*")
            return service.list_buckets(session)

        infos = await self._db(run)
        owner = self._owner()
        made = datetime(2026, 1, 1, tzinfo=UTC)
        names = sorted([(i.bucket.name, i.bucket.created_at) for i in infos]
                       + [(name, made) for name in virtual.names()])
        items = "".join(f"<Bucket>{el('Name', name)}{el('CreationDate', iso(at))}</Bucket>"
                        for name, at in names)
        return self._xml("ListAllMyBucketsResult", owner, f"<Buckets>{items}</Buckets>")

    def _owner(self) -> str:
        return (f"<Owner>{el('ID', self.principal.user_id)}"
                f"{el('DisplayName', self.principal.user_name)}</Owner>")

    def _see_bucket(self, session: Session) -> None:
        self._require("files:List", f"bucket/{self.bucket}")
        service.get_bucket(session, self.bucket)

    async def location(self) -> _Answer:
        await self._db(self._see_bucket)
        return self._xml("LocationConstraint")

    async def versioning(self) -> _Answer:
        await self._db(self._see_bucket)
        return self._xml("VersioningConfiguration")

    async def head_bucket(self) -> _Answer:
        await self._db(self._see_bucket)
        return _Answer(200, {"x-amz-bucket-region": "us-east-1"})

    async def create_bucket(self) -> _Answer:
        await self._body()  # a CreateBucketConfiguration (its region) changes nothing here

        def run(session: Session) -> None:
            service.create_bucket(session, self.principal, self.bucket)

        await self._db(run)
        self._audit("files:CreateBucket", f"bucket/{self.bucket}")
        return _Answer(200, {"location": f"/{self.bucket}"})

    async def delete_bucket(self) -> _Answer:
        def run(session: Session) -> None:
            self._require("files:DeleteBucket", f"bucket/{self.bucket}")
            service.delete_bucket(session, self.storage, self.bucket, recursive=False)

        await self._db(run)
        self._audit("files:DeleteBucket", f"bucket/{self.bucket}", 204)
        return _Answer(204)

    # read-only buckets of other services (the lake's tables) -----------------------------

    async def read_only_bucket(self, view: virtual.VirtualBucket) -> _Answer:
        m, q, key = self.request.method, self.request.query, self.request.key
        if m not in ("GET", "HEAD") or any(flag in q for flag in (
                "uploads", "uploadId", "tagging", "acl", "delete")):
            if m == "PUT" and key is None:
                raise S3Error("BucketAlreadyExists", f"bucket {self.bucket!r} is the lake's "
                              "tables, read-only; choose another name", 409)
            raise S3Error("AccessDenied", f"bucket {self.bucket!r} is read-only: it shows "
                          "the lake's tables as they are; change a table with SQL or "
                          "'cumulo tables'", 403)
        if key is None:
            if "location" in q:
                return self._xml("LocationConstraint")
            if "versioning" in q:
                return self._xml("VersioningConfiguration")
            if m == "HEAD":
                return _Answer(200, {"x-amz-bucket-region": "us-east-1"})
            return await self._list_virtual(view)
        found = await self._db(lambda session: view.get(session, self.storage,
                                                        self.principal, key))
        headers = {"etag": found.etag, "last-modified": http_date(found.modified),
                   "content-type": found.content_type, "accept-ranges": "bytes"}
        status, start, length = 200, 0, found.size
        if (spec := self.request.header("range")) and found.size > 0:
            parsed = _range(spec, found.size)
            if parsed is not None:
                start, length = parsed
                status = 206
                headers["content-range"] = f"bytes {start}-{start + length - 1}/{found.size}"
        headers["content-length"] = str(length)
        if m == "HEAD" or length == 0:
            return _Answer(status, headers)
        from cumulo.storage.transfer import read_range

        reader = await to_thread.run_sync(lambda: self.storage.open(found.blob, offset=start))
        return _Answer(status, headers, stream=read_range(reader, length))

    async def _list_virtual(self, view: virtual.VirtualBucket) -> _Answer:
        q = self.request.query
        v2 = q.get("list-type") == "2"
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter") or None
        url = q.get("encoding-type") == "url"
        limit = max(0, min(int(q.get("max-keys", MAX_KEYS) or MAX_KEYS), MAX_KEYS))
        token = q.get("continuation-token") if v2 else None
        after = (base64.urlsafe_b64decode(token.encode()).decode() if token
                 else q.get("start-after" if v2 else "marker", ""))
        objects, rolled = await self._db(lambda session: view.list(
            session, self.storage, self.principal, prefix, delimiter))
        entries: list[tuple[str, Any]] = [(p, None) for p in rolled]
        seen: set[str] = set(rolled)
        for o in objects:
            cut = o.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = o.key[:cut + len(delimiter or "")]
                if common not in seen:
                    seen.add(common)
                    entries.append((common, None))
            else:
                entries.append((o.key, o))
        entries.sort(key=lambda e: e[0])
        entries = [e for e in entries if e[0] > after]
        page, truncated = entries[:limit], len(entries) > limit
        contents = "".join(
            f"<Contents>{el('Key', k, url=url)}{el('LastModified', iso(o.modified))}"
            f"{el('ETag', o.etag)}{el('Size', o.size)}{el('StorageClass', 'STANDARD')}"
            "</Contents>" for k, o in page if o is not None)
        prefixes = "".join(f"<CommonPrefixes>{el('Prefix', k, url=url)}</CommonPrefixes>"
                           for k, o in page if o is None)
        head = [el("Name", self.bucket), el("Prefix", prefix, url=url),
                el("MaxKeys", limit), el("IsTruncated", truncated)]
        if delimiter:
            head.append(el("Delimiter", delimiter, url=url))
        if url:
            head.append(el("EncodingType", "url"))
        last = page[-1][0] if page else ""
        if v2:
            head.append(el("KeyCount", len(page)))
            if truncated:
                head.append(el("NextContinuationToken",
                               base64.urlsafe_b64encode(last.encode()).decode()))
        elif truncated:
            head.append(el("NextMarker", last, url=url))
        return self._xml("ListBucketResult", *head, contents, prefixes)

    # listing ---------------------------------------------------------------------------------

    async def list_objects(self) -> _Answer:
        q = self.request.query
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter") or None
        url = q.get("encoding-type") == "url"
        if q.get("encoding-type") not in (None, "url"):
            raise S3Error("InvalidArgument", "encoding-type may only be url")
        try:
            max_keys = int(q.get("max-keys", MAX_KEYS))
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be a number") from None
        if max_keys < 0:
            raise S3Error("InvalidArgument", "max-keys must not be negative")
        limit = min(max_keys, MAX_KEYS)
        token = q.get("continuation-token") if v2 else None
        after = q.get("start-after") if v2 else q.get("marker")
        cursor = token or (service.cursor_after(after) if after and after >= prefix else None)

        def run(session: Session) -> service.ListPage:
            self._require("files:List", f"bucket/{self.bucket}")
            if limit == 0:
                service.get_bucket(session, self.bucket)
                return service.ListPage()
            try:
                return service.list_objects(session, self.bucket, prefix=prefix,
                                            delimiter=delimiter, limit=limit, cursor=cursor,
                                            columns=_LISTED)
            except Invalid as exc:
                if "cursor" in exc.message:
                    raise S3Error("InvalidArgument", "The continuation token provided is "
                                  "incorrect") from None
                raise

        page = await self._db(run)
        owner = self._owner() if (not v2 or q.get("fetch-owner") == "true") else ""
        contents = "".join(
            f"<Contents>{el('Key', r.key, url=url)}<LastModified>{_listed_time(r.modified_at)}"
            f"</LastModified>"
            f'<ETag>"{r.etag or r.sha256}"</ETag><Size>{r.size}</Size>'
            f"<StorageClass>STANDARD</StorageClass>{owner}</Contents>"
            for r in page.objects)
        prefixes = "".join(f"<CommonPrefixes>{el('Prefix', p, url=url)}</CommonPrefixes>"
                           for p in page.prefixes)
        truncated = page.next_cursor is not None
        head = [el("Name", self.bucket), el("Prefix", prefix, url=url),
                el("MaxKeys", max_keys), el("IsTruncated", truncated)]
        if delimiter:
            head.append(el("Delimiter", delimiter, url=url))
        if url:
            head.append(el("EncodingType", "url"))
        if v2:
            head.append(el("KeyCount", len(page.objects) + len(page.prefixes)))
            if token:
                head.append(el("ContinuationToken", token))
            if q.get("start-after"):
                head.append(el("StartAfter", q["start-after"], url=url))
            if truncated:
                head.append(el("NextContinuationToken", page.next_cursor))
        else:
            head.append(el("Marker", q.get("marker", ""), url=url))
            if truncated and delimiter:
                last = max([*(r.key for r in page.objects), *page.prefixes])
                head.append(el("NextMarker", last, url=url))
        return self._xml("ListBucketResult", *head, contents, prefixes)

    # objects ---------------------------------------------------------------------------------

    async def get_object(self, *, head: bool) -> _Answer:
        key = self.key
        q, h = self.request.query, self.request.headers

        def run(session: Session) -> StoredObject:
            self._require("files:Get", f"bucket/{self.bucket}/{key}")
            return service.get_object(session, self.bucket, key)

        row: StoredObject = await self._db(run)
        etag = _etag(row)
        modified = _when(row).replace(microsecond=0)
        if (match := h.get("if-match")) and not _etag_in(match, etag):
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                          "specified did not hold", 412, Condition="If-Match")
        since = _parse_date(h.get("if-unmodified-since"))
        if not h.get("if-match") and since is not None and modified > since:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                          "specified did not hold", 412, Condition="If-Unmodified-Since")
        headers = self._object_headers(row)
        if (none := h.get("if-none-match")) and _etag_in(none, etag):
            return _Answer(304, {k: v for k, v in headers.items()
                                 if k in ("etag", "last-modified")})
        since = _parse_date(h.get("if-modified-since"))
        if not h.get("if-none-match") and since is not None and modified <= since:
            return _Answer(304, {k: v for k, v in headers.items()
                                 if k in ("etag", "last-modified")})
        for name, header in _OVERRIDES.items():
            if name in q:
                headers[header] = q[name]
        status, start, length = 200, 0, row.size
        spec = h.get("range")
        if spec and row.size > 0:
            parsed = _range(spec, row.size)
            if parsed is not None:
                start, length = parsed
                status = 206
                headers["content-range"] = f"bytes {start}-{start + length - 1}/{row.size}"
        elif spec and row.size == 0:
            raise S3Error("InvalidRange", "The requested range is not satisfiable", 416,
                          RangeRequested=spec, ActualObjectSize="0")
        if status == 200 and (h.get("x-amz-checksum-mode") or "").upper() == "ENABLED":
            for name, value in (row.checksums or {}).items():
                headers[f"x-amz-checksum-{name}"] = value
                if "-" in value:
                    headers["x-amz-checksum-type"] = "COMPOSITE"
                else:
                    headers["x-amz-checksum-type"] = "FULL_OBJECT"
        headers["content-length"] = str(length)
        if head or length == 0:
            return _Answer(status, headers)
        try:
            reader = await to_thread.run_sync(
                lambda: self.storage.open(service.blob_key(self.bucket, key), offset=start))
        except FileNotFoundError:
            raise S3Error("InternalError", f"object {self.bucket}/{key} is listed but its "
                          "bytes are missing", 500) from None
        from cumulo.storage.transfer import read_range

        return _Answer(status, headers, stream=read_range(reader, length))

    def _object_headers(self, row: StoredObject) -> dict[str, str]:
        headers = {"etag": _etag(row), "last-modified": http_date(_when(row)),
                   "content-type": row.content_type, "accept-ranges": "bytes",
                   "x-amz-storage-class": "STANDARD"}
        for name, value in (row.meta or {}).items():
            headers[name] = value
        if row.tags:
            headers["x-amz-tagging-count"] = str(len(row.tags))
        if row.etag and row.etag.count("-") == 1:
            headers["x-amz-mp-parts-count"] = row.etag.split("-")[1]
        return headers

    async def put_object(self) -> _Answer:
        key = self.key
        h = self.request.headers
        payload = self.request.payload
        assert payload is not None
        size = payload.length

        def ready(session: Session) -> None:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            service.ready_for_upload(session, self.bucket, key, size)

        await self._db(ready)
        tags = _tags_from_header(h.get("x-amz-tagging"))
        meta = _meta_from(h)
        spooled = await self._spool()
        try:
            row = await self._db(self._publish, key, spooled, meta=meta, tags=tags,
                                 content_type=_content_type(h, key), etag=spooled.md5,
                                 checksums=_checksums(spooled))
        finally:
            spooled.file.unlink(missing_ok=True)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}")
        headers = {"etag": _etag(row)}
        if spooled.checksum:
            headers[f"x-amz-checksum-{spooled.checksum[0]}"] = spooled.checksum[1]
        return _Answer(200, headers)

    def _publish(self, session: Session, key: str, spooled: Spooled, *,
                 meta: dict[str, str] | None, tags: dict[str, str] | None, content_type: str,
                 etag: str, checksums: dict[str, str] | None) -> StoredObject:
        return service.put_object(
            session, self.storage, self.principal, bucket=self.bucket, key=key,
            tmp=spooled.file, size=spooled.size, sha256=spooled.sha256,
            content_type=content_type, etag=etag, meta=meta, tags=tags, checksums=checksums,
            expect=self._write_condition())

    def _write_condition(self) -> Callable[[StoredObject | None], None] | None:
        h = self.request.headers
        none, match = h.get("if-none-match"), h.get("if-match")
        if none is None and match is None:
            return None

        def expect(row: StoredObject | None) -> None:
            if none is not None and row is not None and (none.strip() == "*"
                                                          or _etag_in(none, _etag(row))):
                raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                              "specified did not hold", 412, Condition="If-None-Match")
            if match is not None and (row is None or not _etag_in(match, _etag(row))):
                if row is None:
                    raise S3Error("NoSuchKey", "The specified key does not exist.", 404)
                raise S3Error("PreconditionFailed", "At least one of the pre-conditions you "
                              "specified did not hold", 412, Condition="If-Match")

        return expect

    async def delete_object(self) -> _Answer:
        key = self.key

        def run(session: Session) -> None:
            self._require("files:Delete", f"bucket/{self.bucket}/{key}")
            service.get_bucket(session, self.bucket)
            with contextlib.suppress(NotFound):  # deleting what is not there: done, as S3's
                service.delete_object(session, self.storage, self.bucket, key)

        await self._db(run)
        self._audit("files:Delete", f"bucket/{self.bucket}/{key}", 204)
        return _Answer(204)

    async def delete_objects(self) -> _Answer:
        body = await self._body(2 << 20)
        root = parse(body, "Delete")
        quiet = (text_of(root, "Quiet") or "").strip().lower() == "true"
        objects = children(root, "Object")
        if len(objects) > MAX_KEYS:
            raise S3Error("MalformedXML", f"a DeleteObjects asks for at most {MAX_KEYS} keys")
        keys = [text_of(o, "Key") or "" for o in objects]

        def run(session: Session) -> list[tuple[str, str | None, str | None]]:
            service.get_bucket(session, self.bucket)
            done: list[tuple[str, str | None, str | None]] = []
            for key in keys:
                try:
                    validate_key(key)
                    self._require("files:Delete", f"bucket/{self.bucket}/{key}")
                    with contextlib.suppress(NotFound):
                        service.delete_object(session, self.storage, self.bucket, key)
                    done.append((key, None, None))
                except CumuloError as exc:
                    error = from_cumulo(exc, bucket=self.bucket, key=key)
                    done.append((key, error.code, error.message))
            return done

        results = await self._db(run)
        parts = []
        for key, code, message in results:
            if code is None:
                if not quiet:
                    parts.append(f"<Deleted>{el('Key', key)}</Deleted>")
                self._audit("files:Delete", f"bucket/{self.bucket}/{key}", 204)
            else:
                parts.append(f"<Error>{el('Key', key)}{el('Code', code)}"
                             f"{el('Message', message)}</Error>")
        return self._xml("DeleteResult", *parts)

    async def copy_object(self) -> _Answer:
        key = self.key
        h = self.request.headers
        source_bucket, source_key = _copy_source(h["x-amz-copy-source"])
        directive = (h.get("x-amz-metadata-directive") or "COPY").upper()
        tagging = (h.get("x-amz-tagging-directive") or "COPY").upper()

        def run(session: Session) -> StoredObject:
            self._require("files:Get", f"bucket/{source_bucket}/{source_key}")
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            source = service.get_object(session, source_bucket, source_key)
            _copy_conditions(h, source)
            if (source_bucket, source_key) == (self.bucket, key) and directive == "COPY":
                raise S3Error("InvalidRequest", "This copy request is illegal because it is "
                              "trying to copy an object to itself without changing the "
                              "object's metadata.")
            service.ready_for_upload(session, self.bucket, key, source.size)
            tmp = self._copy_bytes(source_bucket, source_key, 0, source.size)
            try:
                etag = source.etag or _md5_of(tmp)
                return service.put_object(
                    session, self.storage, self.principal, bucket=self.bucket, key=key,
                    tmp=tmp, size=source.size, sha256=source.sha256,
                    content_type=(_content_type(h, key) if directive == "REPLACE"
                                  else source.content_type),
                    etag=etag, meta=_meta_from(h) if directive == "REPLACE" else source.meta,
                    tags=(_tags_from_header(h.get("x-amz-tagging")) if tagging == "REPLACE"
                          else source.tags),
                    checksums=source.checksums, expect=self._write_condition())
            finally:
                tmp.unlink(missing_ok=True)

        row = await self._db(run)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}")
        return self._xml("CopyObjectResult", el("LastModified", iso(_when(row))),
                         el("ETag", _etag(row)))

    def _copy_bytes(self, bucket: str, key: str, start: int, length: int) -> Path:
        fd, name = tempfile.mkstemp(dir=self.storage.spool_dir(), prefix=marked("s3copy"))
        tmp = Path(name)
        try:
            with open(fd, "wb") as out, \
                    self.storage.open(service.blob_key(bucket, key), offset=start) as reader:
                left = length
                while left > 0:
                    chunk = reader.read(min(CHUNK * 8, left))
                    if not chunk:
                        raise S3Error("InternalError", f"object {bucket}/{key} is shorter "
                                      "than listed", 500)
                    out.write(chunk)
                    left -= len(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    # tags ------------------------------------------------------------------------------------

    async def get_tagging(self) -> _Answer:
        key = self.key

        def run(session: Session) -> dict[str, str]:
            self._require("files:Get", f"bucket/{self.bucket}/{key}")
            return service.get_object(session, self.bucket, key).tags or {}

        tags = await self._db(run)
        items = "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
        return self._xml("Tagging", f"<TagSet>{items}</TagSet>")

    async def put_tagging(self) -> _Answer:
        key = self.key
        root = parse(await self._body(), "Tagging")
        tags: dict[str, str] = {}
        for tag_set in children(root, "TagSet"):
            for tag in children(tag_set, "Tag"):
                name = text_of(tag, "Key") or ""
                if name in tags:
                    raise S3Error("InvalidTag", f"tag {name!r} is given twice")
                tags[name] = text_of(tag, "Value") or ""
        _check_tags(tags)
        await self._db(self._set_tags, key, tags)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}")
        return _Answer(200)

    async def delete_tagging(self) -> _Answer:
        key = self.key
        await self._db(self._set_tags, key, None)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}", 204)
        return _Answer(204)

    def _set_tags(self, session: Session, key: str, tags: dict[str, str] | None) -> None:
        self._require("files:Put", f"bucket/{self.bucket}/{key}")
        row = service.get_object(session, self.bucket, key)
        row.tags = tags or None
        session.commit()

    # multipart -------------------------------------------------------------------------------

    async def create_upload(self) -> _Answer:
        key = self.key
        h = self.request.headers
        await self._body()
        algorithm = (h.get("x-amz-checksum-algorithm") or "").lower() or None
        if algorithm is not None and algorithm not in CHECKSUMS:
            raise S3Error("InvalidRequest", f"the {algorithm.upper()} checksum is not "
                          "supported; use CRC32, CRC32C, SHA1 or SHA256")
        full = (h.get("x-amz-checksum-type") or "").upper() == "FULL_OBJECT"
        meta = _meta_from(h) or {}
        tags = _tags_from_header(h.get("x-amz-tagging"))

        def run(session: Session) -> str:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            bucket = service.ready_for_upload(session, self.bucket, key, None)
            upload = Upload(id=uuid.uuid4().hex + uuid.uuid4().hex[:16], bucket_id=bucket.id,
                            key=key, content_type=_content_type(h, key), meta=meta or None,
                            tags=tags, created_by=self.principal.user_id,
                            checksum=f"{algorithm}:{'full' if full else 'composite'}"
                            if algorithm else None)
            session.add(upload)
            session.commit()
            return upload.id

        upload_id = await self._db(run)
        headers = {}
        if algorithm:
            headers = {"x-amz-checksum-algorithm": algorithm.upper(),
                       "x-amz-checksum-type": "FULL_OBJECT" if full else "COMPOSITE"}
        answer = self._xml("InitiateMultipartUploadResult", el("Bucket", self.bucket),
                           el("Key", key), el("UploadId", upload_id))
        answer.headers.update(headers)
        return answer

    def _upload(self, session: Session, key: str) -> Upload:
        upload_id = self.request.query.get("uploadId", "")
        upload = session.get(Upload, upload_id)
        bucket = service.get_bucket(session, self.bucket)
        if upload is None or upload.bucket_id != bucket.id or upload.key != key:
            raise S3Error("NoSuchUpload", "The specified multipart upload does not exist. The "
                          "upload ID may be invalid, or the upload may have been aborted or "
                          "completed.", 404, UploadId=upload_id)
        return upload

    def _part_number(self) -> int:
        text = self.request.query.get("partNumber", "")
        if not text.isdigit() or not 1 <= int(text) <= MAX_PARTS:
            raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and "
                          f"{MAX_PARTS}, inclusive", ArgumentName="partNumber",
                          ArgumentValue=text[:20])
        return int(text)

    async def upload_part(self) -> _Answer:
        key = self.key
        number = self._part_number()
        h = self.request.headers

        def check(session: Session) -> None:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            self._upload(session, key)

        await self._db(check)
        if h.get("x-amz-copy-source"):
            return await self._upload_part_copy(key, number)
        payload = self.request.payload
        assert payload is not None
        assembly = Assembly.of(self.storage, _upload_prefix(self.request.query["uploadId"]))
        offset = None
        if assembly is not None and payload.length is not None and payload.length <= MAX_PUT:
            offset = await to_thread.run_sync(assembly.claim, number, payload.length)
        if assembly is not None and offset is not None:
            out = await to_thread.run_sync(assembly.open_writer, offset)
            try:
                spooled = await spool(self.receive, payload, self.storage.spool_dir(), into=out)
            finally:
                await to_thread.run_sync(out.close)  # (and the lock with it)
            await self._db(self._store_part, key, number, spooled)
        else:
            spooled = await self._spool()
            try:
                await self._db(self._store_part, key, number, spooled)
            finally:
                if spooled.path is not None:
                    spooled.path.unlink(missing_ok=True)
        headers = {"etag": f'"{spooled.md5}"'}
        if spooled.checksum:
            headers[f"x-amz-checksum-{spooled.checksum[0]}"] = spooled.checksum[1]
        return _Answer(200, headers)

    def _store_part(self, session: Session, key: str, number: int, spooled: Spooled) -> None:
        upload = self._upload(session, key)
        if spooled.path is not None:
            self.storage.commit(spooled.path, _part_key(upload.id, number))
        else:  # written in place: an older copy stored on its own must not win over it
            self.storage.delete(_part_key(upload.id, number))
        part = session.get(UploadPart, (upload.id, number))
        if part is None:
            part = UploadPart(upload_id=upload.id, number=number)
            session.add(part)
        part.size, part.etag = spooled.size, spooled.md5
        part.checksum = spooled.checksum[1] if spooled.checksum else None
        part.modified_at = datetime.now(UTC)
        session.commit()

    async def _upload_part_copy(self, key: str, number: int) -> _Answer:
        h = self.request.headers
        source_bucket, source_key = _copy_source(h["x-amz-copy-source"])

        def run(session: Session) -> tuple[str, datetime]:
            self._require("files:Get", f"bucket/{source_bucket}/{source_key}")
            source = service.get_object(session, source_bucket, source_key)
            _copy_conditions(h, source)
            start, length = 0, source.size
            if spec := h.get("x-amz-copy-source-range"):
                parsed = _range(spec, source.size)
                if parsed is None:
                    raise S3Error("InvalidArgument", f"x-amz-copy-source-range {spec!r} must "
                                  "be bytes=FIRST-LAST")
                start, length = parsed
            tmp = self._copy_bytes(source_bucket, source_key, start, length)
            try:
                digest = hashlib.sha256()
                md5 = hashlib.md5()
                with tmp.open("rb") as f:
                    while chunk := f.read(CHUNK * 8):
                        digest.update(chunk)
                        md5.update(chunk)
                spooled = Spooled(tmp, length, digest.hexdigest(), md5.hexdigest(), None)
                self._store_part(session, key, number, spooled)
            finally:
                tmp.unlink(missing_ok=True)
            return spooled.md5, datetime.now(UTC)

        etag, at = await self._db(run)
        return self._xml("CopyPartResult", el("LastModified", iso(at)), el("ETag", f'"{etag}"'))

    async def complete_upload(self) -> _Answer:
        key = self.key
        root = parse(await self._body(4 << 20), "CompleteMultipartUpload")
        asked = []
        for part in children(root, "Part"):
            number_text = (text_of(part, "PartNumber") or "").strip()
            if not number_text.isdigit():
                raise S3Error("MalformedXML", "every Part needs its PartNumber")
            checksums = {name: text_of(part, f"Checksum{name.upper()}") for name in CHECKSUMS}
            asked.append((int(number_text), (text_of(part, "ETag") or "").strip().strip('"'),
                          {k: v for k, v in checksums.items() if v}))
        if not asked:
            raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                          "validate against our published schema: it names no parts")
        numbers = [n for n, _, _ in asked]
        if numbers != sorted(set(numbers)):
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. "
                          "Parts must be ordered by part number.")

        def run(session: Session) -> tuple[StoredObject, str]:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            upload = self._upload(session, key)
            stored = {p.number: p for p in session.scalars(
                select(UploadPart).where(UploadPart.upload_id == upload.id))}
            chosen: list[UploadPart] = []
            for i, (number, etag, _) in enumerate(asked):
                part = stored.get(number)
                if part is None or part.etag != etag:
                    raise S3Error("InvalidPart", "One or more of the specified parts could not "
                                  "be found. The part may not have been uploaded, or the "
                                  "specified entity tag may not match the part's entity tag.",
                                  400, PartNumber=str(number), ETag=etag)
                if i < len(asked) - 1 and part.size < MIN_PART:
                    raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the "
                                  f"minimum allowed object size: part {number} is "
                                  f"{part.size} bytes; every part but the last must be at "
                                  "least 5 MiB.", 400, PartNumber=str(number))
                chosen.append(part)
            algorithm, _, kind = (upload.checksum or "").partition(":")
            tmp, sha256, full, assembly = self._concatenate(
                upload.id, chosen, algorithm if kind == "full" else None)
            try:
                md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
                etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
                checksums = None
                if algorithm and kind == "full" and full:
                    checksums = {algorithm: full}
                elif algorithm and all(p.checksum for p in chosen):
                    hasher = CHECKSUMS[algorithm]()
                    hasher.update(b"".join(base64.b64decode(p.checksum or "") for p in chosen))
                    checksums = {algorithm: base64.b64encode(hasher.digest()).decode()
                                 + f"-{len(chosen)}"}
                row = service.put_object(
                    session, self.storage, self.principal, bucket=self.bucket, key=key,
                    tmp=tmp, size=sum(p.size for p in chosen), sha256=sha256,
                    content_type=upload.content_type, etag=etag, meta=upload.meta,
                    tags=upload.tags, checksums=checksums, expect=self._write_condition())
            except BaseException:
                if assembly is not None:  # the object was the assembly: the upload goes on
                    assembly.attach(tmp)
                raise
            finally:
                tmp.unlink(missing_ok=True)
            session.execute(delete(Upload).where(Upload.id == upload.id))
            session.commit()
            self.storage.delete_prefix(_upload_prefix(upload.id))
            return row, etag

        row, etag = await self._db(run)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}")
        location = f"/{self.bucket}/{quote(key)}"
        answer = self._xml("CompleteMultipartUploadResult", el("Location", location),
                           el("Bucket", self.bucket), el("Key", key), el("ETag", f'"{etag}"'))
        for name, value in (row.checksums or {}).items():
            answer.headers[f"x-amz-checksum-{name}"] = value
        return answer

    def _concatenate(self, upload_id: str, parts: list[UploadPart], full: str | None,
                     ) -> tuple[Path, str, str | None, Assembly | None]:
        """The parts as one file in the spool, with its SHA-256 (and the full object's
        checksum, for a FULL_OBJECT upload); and the upload's assembly when that file is it,
        moved (every part was written in place: nothing is copied)."""
        fd, name = tempfile.mkstemp(dir=self.storage.spool_dir(), prefix=marked("s3complete"))
        tmp = Path(name)
        digest = hashlib.sha256()
        hasher = CHECKSUMS[full]() if full else None
        hashers = [digest] if hasher is None else [digest, hasher]
        keys = [_part_key(upload_id, part.number) for part in parts]
        own = [self.storage.local_path(key) for key in keys]
        assembly = Assembly.of(self.storage, _upload_prefix(upload_id))
        try:
            with open(fd, "wb") as out:
                if assembly is None:
                    for key in keys:
                        with self.storage.open(key) as reader:
                            while chunk := reader.read(CHUNK * 8):
                                for each in hashers:
                                    each.update(chunk)
                                out.write(chunk)
                    return tmp, digest.hexdigest(), _b64(hasher), None
                # Where each part lies: its own file when it has one (the newer), else its
                # place in the assembly.
                placed = {part.number for part, path in zip(parts, own, strict=True)
                          if not (path and path.exists()) and assembly.holds(part.number)}
                size = sum(part.size for part in parts)
                if assembly.whole([(p.number, p.size) for p in parts], placed):
                    assembly.detach(tmp, size)
                    join_files([(tmp, 0, size)], None, hashers)
                    return tmp, digest.hexdigest(), _b64(hasher), assembly
                stride = assembly.stride() or 0
                pieces = []
                for part, path in zip(parts, own, strict=True):
                    if part.number in placed:
                        pieces.append((assembly.path, (part.number - 1) * stride, part.size))
                    elif path is not None and path.exists():
                        pieces.append((path, 0, part.size))
                    else:
                        raise S3Error("InvalidPart", f"part {part.number}'s bytes are missing "
                                      "from storage; upload it again", 400,
                                      PartNumber=str(part.number))
                join_files(pieces, out.fileno(), hashers)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest.hexdigest(), _b64(hasher), None

    async def abort_upload(self) -> _Answer:
        key = self.key

        def run(session: Session) -> None:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            upload = self._upload(session, key)
            session.delete(upload)
            session.commit()
            self.storage.delete_prefix(_upload_prefix(upload.id))

        await self._db(run)
        self._audit("files:Put", f"bucket/{self.bucket}/{key}", 204)
        return _Answer(204)

    async def list_parts(self) -> _Answer:
        key = self.key
        q = self.request.query
        marker = int(q.get("part-number-marker", "0") or 0)
        most = min(int(q.get("max-parts", "1000") or 1000), 1000)

        def run(session: Session) -> tuple[Upload, list[UploadPart], bool]:
            self._require("files:Put", f"bucket/{self.bucket}/{key}")
            upload = self._upload(session, key)
            parts = list(session.scalars(
                select(UploadPart).where(UploadPart.upload_id == upload.id,
                                         UploadPart.number > marker)
                .order_by(UploadPart.number).limit(most + 1)))
            return upload, parts[:most], len(parts) > most

        upload, parts, truncated = await self._db(run)
        algorithm = (upload.checksum or "").partition(":")[0]
        items = "".join(
            f"<Part>{el('PartNumber', p.number)}{el('LastModified', iso(p.modified_at))}"
            f"{el('ETag', chr(34) + p.etag + chr(34))}{el('Size', p.size)}"
            + (el(f"Checksum{algorithm.upper()}", p.checksum) if algorithm and p.checksum
               else "") + "</Part>" for p in parts)
        return self._xml("ListPartsResult", el("Bucket", self.bucket), el("Key", key),
                         el("UploadId", upload.id), el("PartNumberMarker", marker),
                         el("NextPartNumberMarker", parts[-1].number if parts else marker),
                         el("MaxParts", most), el("IsTruncated", truncated),
                         el("StorageClass", "STANDARD"), self._owner(), items)

    async def list_uploads(self) -> _Answer:
        prefix = self.request.query.get("prefix", "")

        def run(session: Session) -> list[Upload]:
            self._require("files:List", f"bucket/{self.bucket}")
            bucket = service.get_bucket(session, self.bucket)
            return [u for u in session.scalars(
                select(Upload).where(Upload.bucket_id == bucket.id)
                .order_by(Upload.key, Upload.created_at).limit(1000))
                if u.key.startswith(prefix)]

        uploads = await self._db(run)
        items = "".join(f"<Upload>{el('Key', u.key)}{el('UploadId', u.id)}"
                        f"{el('Initiated', iso(u.created_at))}"
                        f"{el('StorageClass', 'STANDARD')}</Upload>" for u in uploads)
        return self._xml("ListMultipartUploadsResult", el("Bucket", self.bucket),
                         el("KeyMarker", ""), el("UploadIdMarker", ""),
                         el("Prefix", prefix), el("MaxUploads", 1000),
                         el("IsTruncated", False), items)


def _upload_prefix(upload_id: str) -> str:
    return f"s3uploads/{upload_id}/"


def _part_key(upload_id: str, number: int) -> str:
    return f"{_upload_prefix(upload_id)}{number:05d}"


def _content_type(headers: dict[str, str], key: str) -> str:
    import mimetypes

    given = headers.get("content-type") or ""
    if not given or given == "application/octet-stream" or given.startswith("binary/"):
        return mimetypes.guess_type(key)[0] or "application/octet-stream"
    return given[:255]


def _checksums(spooled: Spooled) -> dict[str, str] | None:
    return {spooled.checksum[0]: spooled.checksum[1]} if spooled.checksum else None


def _etag_in(header: str, etag: str) -> bool:
    wanted = [t.strip() for t in header.split(",")]
    return "*" in wanted or etag in (_quoted(t) for t in wanted)


def _range(spec: str, size: int) -> tuple[int, int] | None:
    """(start, length) of one ``bytes=`` range; None for a form S3 ignores (several
    ranges); InvalidRange when it lies outside the object."""
    text = spec.strip()
    if not text.startswith("bytes=") or "," in text:
        return None
    first, _, last = text[6:].partition("-")
    try:
        if first == "":
            if not last:
                return None
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise S3Error("InvalidRange", "The requested range is not satisfiable", 416,
                      RangeRequested=spec, ActualObjectSize=str(size))
    return start, end - start + 1


def _copy_source(header: str) -> tuple[str, str]:
    source = unquote(header.split("?", 1)[0]).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", f"x-amz-copy-source {header[:200]!r} must be "
                      "BUCKET/KEY")
    return bucket, validate_key(key)


def _copy_conditions(headers: dict[str, str], source: StoredObject) -> None:
    etag = _etag(source)
    modified = _when(source).replace(microsecond=0)
    failed = None
    if (match := headers.get("x-amz-copy-source-if-match")) and not _etag_in(match, etag):
        failed = "x-amz-copy-source-If-Match"
    elif (none := headers.get("x-amz-copy-source-if-none-match")) and _etag_in(none, etag):
        failed = "x-amz-copy-source-If-None-Match"
    else:
        since = _parse_date(headers.get("x-amz-copy-source-if-unmodified-since"))
        if since is not None and modified > since:
            failed = "x-amz-copy-source-If-Unmodified-Since"
        since = _parse_date(headers.get("x-amz-copy-source-if-modified-since"))
        if since is not None and modified <= since:
            failed = "x-amz-copy-source-If-Modified-Since"
    if failed:
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified "
                      "did not hold", 412, Condition=failed)


def _b64(hasher: Any) -> str | None:
    return base64.b64encode(hasher.digest()).decode() if hasher is not None else None


def _md5_of(path: Path) -> str:
    md5 = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK * 8):
            md5.update(chunk)
    return md5.hexdigest()
