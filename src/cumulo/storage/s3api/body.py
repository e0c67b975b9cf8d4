"""Request bodies of S3 requests: read as they come, decoded (``aws-chunked``), checked
(the signed SHA-256, Content-MD5, the ``x-amz-checksum-*`` values) and spooled to a
temporary file in bounded memory, so that what is stored is what was sent, or nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from starlette.types import Receive

from cumulo.storage.leftovers import marked
from cumulo.storage.s3api.chunked import ChunkedDecoder
from cumulo.storage.s3api.errors import S3Error
from cumulo.storage.s3api.sigv4 import SignatureError
from cumulo.storage.transfer import write_batched, write_hashed

__all__ = ["CHECKSUMS", "Checksum", "Payload", "Spooled", "read_all", "spool"]

_WRITE_BATCH = 1 << 20  # (many parts arrive at once: 10 of boto3's, say)


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int]) -> None:
        self.fn, self.value = fn, 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _crc32c() -> _Crc:
    try:
        import crc32c  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - a dependency of the server
        raise S3Error("NotImplemented", "CRC32C checksums need the crc32c package on the "
                      "server: pip install crc32c", 501) from None
    return _Crc(lambda data, value: crc32c.crc32c(data, value))


# The checksums S3 clients send (x-amz-checksum-NAME), by name: a new hasher for each.
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "crc32": lambda: _Crc(zlib.crc32),
    "crc32c": _crc32c,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}


@dataclass
class Checksum:
    """A checksum an upload must match: its algorithm, and the value sent (base64), from a
    header now or from a trailer once the body has ended."""

    algorithm: str
    expected: str | None = None


@dataclass
class Payload:
    """How a request's body comes: its signed SHA-256 (None: unsigned), whether it is
    ``aws-chunked`` (then its decoder), and its length once decoded."""

    sha256: str | None
    length: int | None
    decoder: ChunkedDecoder | None = None
    content_md5: str | None = None
    checksum: Checksum | None = None


@dataclass
class Spooled:
    path: Path | None  # None: written in place (spool's ``into``)
    size: int
    sha256: str
    md5: str  # hex
    checksum: tuple[str, str] | None  # (algorithm, base64 value)

    @property
    def file(self) -> Path:
        """The temporary file the body went to (one not written in place)."""
        if self.path is None:
            raise ValueError("this body was written in place, not to a file of its own")
        return self.path


async def _chunks(receive: Receive, payload: Payload) -> AsyncIterator[bytes]:
    """The body's payload, decoded, as it comes."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise S3Error("IncompleteBody", "the upload was cut off: the client went away; "
                          "nothing was stored")
        data = message.get("body", b"")
        if data:
            if payload.decoder is not None:
                try:
                    for piece in payload.decoder.feed(data):
                        yield piece
                except SignatureError as exc:
                    raise S3Error(exc.code, exc.message, exc.status) from None
            else:
                yield data
        if not message.get("more_body", False):
            break
    if payload.decoder is not None:
        try:
            payload.decoder.finish()
        except SignatureError as exc:
            raise S3Error(exc.code, exc.message, exc.status) from None


def _check(payload: Payload, size: int, sha256: str, md5: bytes,
           checksum: tuple[str, str] | None) -> None:
    if payload.length is not None and size != payload.length:
        raise S3Error("IncompleteBody", f"the body sent {size} bytes but announced "
                      f"{payload.length}; nothing was stored")
    if payload.sha256 is not None and payload.sha256 != sha256:
        raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                      "header does not match what was computed.", 400,
                      ClientComputedContentSHA256=payload.sha256,
                      S3ComputedContentSHA256=sha256)
    if payload.content_md5 is not None:
        try:
            sent = base64.b64decode(payload.content_md5, validate=True)
        except (binascii.Error, ValueError):
            raise S3Error("InvalidDigest", "The Content-MD5 you specified is not valid.") \
                from None
        if sent != md5:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what "
                          "was received.")
    if checksum is not None and payload.checksum is not None:
        expected = payload.checksum.expected
        if expected is None and payload.decoder is not None:
            expected = payload.decoder.trailers.get(f"x-amz-checksum-{checksum[0]}")
        if expected is not None and expected != checksum[1]:
            raise S3Error("BadDigest", f"The {checksum[0].upper()} you specified did not "
                          "match the calculated checksum.")


async def read_all(receive: Receive, payload: Payload, limit: int = 1 << 20) -> bytes:
    """A small body (XML), whole and checked; over ``limit`` bytes is refused."""
    parts: list[bytes] = []
    size = 0
    async for chunk in _chunks(receive, payload):
        size += len(chunk)
        if size > limit:
            raise S3Error("MaxMessageLengthExceeded", f"the request body is over {limit} "
                          "bytes", 400)
        parts.append(chunk)
    body = b"".join(parts)
    checksum = None
    if payload.checksum is not None:
        hasher = CHECKSUMS[payload.checksum.algorithm]()
        hasher.update(body)
        checksum = (payload.checksum.algorithm, base64.b64encode(hasher.digest()).decode())
    _check(payload, len(body), hashlib.sha256(body).hexdigest(), hashlib.md5(body).digest(),
           checksum)
    return body


async def spool(receive: Receive, payload: Payload, spool_dir: Path, *,
                into: BinaryIO | None = None) -> Spooled:
    """Write the body to a new temporary file in ``spool_dir``, hashing it on the way
    (SHA-256 for Cumulo, MD5 for the ETag, the checksum the client asked for), in a worker
    thread while the event loop receives the next batch. Anything wrong removes the file.

    ``into``: a file open where the body goes instead (a part's place in its upload's
    assembly, :mod:`cumulo.storage.s3api.assembly`), for a body of known length: no more than
    that is written there, and nothing is removed if anything goes wrong (the place stays
    taken, unused). The Spooled's path is then None."""
    tmp: Path | None = None
    if into is None:
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix=marked("s3put"))
        tmp = Path(name)
    elif payload.length is None:
        raise ValueError("a body written in place needs its length")
    hashers: list[Any] = [hashlib.sha256(), hashlib.md5()]
    if payload.checksum is not None:
        hashers.append(CHECKSUMS[payload.checksum.algorithm]())
    size = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in _chunks(receive, payload):
            size += len(chunk)
            if payload.length is not None and size > payload.length:
                raise S3Error("IncompleteBody", f"the body is longer than the {payload.length} "
                              "bytes announced; nothing was stored")
            yield chunk

    try:
        with (os.fdopen(fd, "wb", buffering=0) if into is None
              else contextlib.nullcontext(into)) as out:
            await write_batched(counted(), lambda chunks: write_hashed(out, hashers, chunks),
                                batch=_WRITE_BATCH)
        checksum = None
        if payload.checksum is not None:
            checksum = (payload.checksum.algorithm,
                        base64.b64encode(hashers[2].digest()).decode())
        sha256 = hashers[0].hexdigest()
        _check(payload, size, sha256, hashers[1].digest(), checksum)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return Spooled(tmp, size, sha256, hashers[1].hexdigest(), checksum)
