"""SDK sub-client for object storage: ``client.files``.

Paths name a bucket and a key together, as on the CLI: ``"data/raw/2026/sales.csv"`` is key
``raw/2026/sales.csv`` in bucket ``data``. Transfers stream in 1 MiB chunks and never hold a
whole object in memory; downloads are checked against the object's SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mimetypes
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, overload
from urllib.parse import quote

import httpx

from cumulo.client.transport import Transport
from cumulo.errors import CumuloError, Invalid
from cumulo.storage.keys import split_path, validate_key
from cumulo.storage.sync import Rule, SyncPlan, sha256_of
from cumulo.storage.sync import apply as apply_sync
from cumulo.storage.sync import plan as plan_sync

__all__ = ["FilesClient", "Listing", "ObjectInfo", "ObjectWriter", "SyncPlan"]

CHUNK = 1 << 20
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    created_by: str | None
    modified_at: datetime
    modified_by: str | None

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.key}"

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ObjectInfo:
        return cls(
            bucket=doc["bucket"], key=doc["key"], size=doc["size"], sha256=doc["sha256"],
            content_type=doc["content_type"],
            created_at=datetime.fromisoformat(doc["created_at"]), created_by=doc["created_by"],
            modified_at=datetime.fromisoformat(doc["modified_at"]),
            modified_by=doc["modified_by"],
        )


@dataclass
class Listing:
    bucket: str
    prefix: str
    objects: list[ObjectInfo] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)


def _object_path(bucket: str, key: str) -> str:
    return f"/api/v1/files/buckets/{bucket}/objects/{quote(validate_key(key), safe='/')}"


def _needs_key(path: str) -> tuple[str, str]:
    bucket, key = split_path(path)
    if not key:
        raise Invalid(f"{path!r} names a bucket, not an object; use BUCKET/KEY, e.g. data/a.csv")
    return bucket, key


def _into(dest: str, name: str) -> str:
    """``dest``, or ``dest`` + ``name`` when it names a bucket or a folder (ends in '/')."""
    bucket, key = split_path(dest)
    return f"{bucket}/{key + name if not key or key.endswith('/') else key}"


class FilesClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    # --- buckets ---------------------------------------------------------------------------

    def buckets(self, *, project: str | None = None) -> list[dict[str, Any]]:
        """Every bucket, or those of ``project``."""
        params = {"project": project} if project else {}
        return self._t.json(  # type: ignore[no-any-return]
            "GET", "/api/v1/files/buckets", params=params)["buckets"]

    def create_bucket(self, name: str, *, project: str | None = None) -> dict[str, Any]:
        """Make a bucket, in ``project`` when one is named (its quota counts the bytes)."""
        return self._t.json(  # type: ignore[no-any-return]
            "POST", "/api/v1/files/buckets", json={"name": name, "project": project}
        )

    def delete_bucket(self, name: str, *, recursive: bool = False) -> int:
        """Delete a bucket; a non-empty one only with ``recursive=True``. Returns objects gone."""
        body = self._t.json("DELETE", f"/api/v1/files/buckets/{name}",
                            params={"recursive": recursive})
        return int(body["deleted"])

    # --- listing ---------------------------------------------------------------------------

    def pages(self, path: str, *, recursive: bool = False,
              page_size: int = 1000) -> Iterator[Listing]:
        """Pages of a listing under ``bucket/prefix``; ``recursive`` lists every key below."""
        bucket, prefix = split_path(path)
        params: dict[str, Any] = {"prefix": prefix, "limit": page_size}
        if not recursive:
            params["delimiter"] = "/"
        while True:
            body = self._t.json("GET", f"/api/v1/files/buckets/{bucket}/objects", params=params)
            yield Listing(bucket=bucket, prefix=prefix,
                          objects=[ObjectInfo.from_json(o) for o in body["objects"]],
                          prefixes=body["prefixes"])
            if not body["next_cursor"]:
                return
            params["cursor"] = body["next_cursor"]

    def list(self, path: str, *, recursive: bool = False) -> Listing:
        """Everything under ``bucket/prefix``, all pages gathered."""
        bucket, prefix = split_path(path)
        whole = Listing(bucket=bucket, prefix=prefix)
        for page in self.pages(path, recursive=recursive):
            whole.objects.extend(page.objects)
            whole.prefixes.extend(page.prefixes)
        return whole

    def head(self, path: str) -> ObjectInfo:
        bucket, key = _needs_key(path)
        return ObjectInfo.from_json(self._t.json(
            "GET", f"/api/v1/files/buckets/{bucket}/info/{quote(validate_key(key), safe='/')}"
        ))

    def presign(self, path: str, *, expires_in: str = "1h", method: str = "GET") -> str:
        """A presigned S3 URL for ``BUCKET/KEY``: anyone holding it may GET it (or, with
        ``method="PUT"``, upload it, say with ``curl -T``) until it expires (up to 7 days),
        with the caller's rights; it stops working with the caller's token."""
        bucket, key = _needs_key(path)
        doc = self._t.json(
            "POST", f"/api/v1/files/buckets/{bucket}/presign/{quote(validate_key(key), safe='/')}",
            json={"method": method, "expires_in": expires_in})
        return str(doc["url"])

    def exists(self, path: str) -> bool:
        from cumulo.errors import NotFound

        try:
            self.head(path)
        except NotFound:
            return False
        return True

    # --- transfer --------------------------------------------------------------------------

    def upload(self, source: str | os.PathLike[str] | bytes | IO[bytes], path: str, *,
               content_type: str | None = None, progress: Progress | None = None) -> ObjectInfo:
        """Upload a local file, bytes, or a binary file object to ``bucket/key``."""
        bucket, key = _needs_key(path)
        headers = {"content-type": content_type or mimetypes.guess_type(key)[0]
                   or "application/octet-stream"}
        if isinstance(source, bytes):
            stream: IO[bytes] = io.BytesIO(source)
            headers["content-length"] = str(len(source))
        elif isinstance(source, (str, os.PathLike)):
            local = Path(source)
            if not local.is_file():
                raise Invalid(f"{local} is not a file")
            stream = open(local, "rb")  # noqa: SIM115 - closed below
            headers["content-length"] = str(local.stat().st_size)
        else:
            stream = source
        try:
            body = self._t.json("PUT", _object_path(bucket, key), headers=headers,
                                content=_chunks(stream, progress), timeout=None)
        finally:
            if stream is not source:
                stream.close()
        return ObjectInfo.from_json(body)

    def download(self, path: str, dest: str | os.PathLike[str] | IO[bytes], *,
                 progress: Progress | None = None) -> ObjectInfo:
        """Download ``bucket/key`` to a local path (written whole, then renamed into place)
        or into a binary file object. The bytes are checked against the object's SHA-256."""
        bucket, key = _needs_key(path)
        if isinstance(dest, (str, os.PathLike)):
            target = Path(dest)
            if target.is_dir():
                target = target / key.rsplit("/", 1)[-1]
            tmp = target.with_name(f".{target.name}.cumulo-partial")
            try:
                with open(tmp, "wb") as out:
                    self.download(path, out, progress=progress)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return self.head(path)
        digest = hashlib.sha256()

        def write(chunk: memoryview) -> None:
            dest.write(chunk)
            if progress:
                progress(len(chunk))

        headers = self._t.fetch_into(_object_path(bucket, key), [digest.update, write])
        expected = headers.get("x-cumulo-sha256")
        if expected and digest.hexdigest() != expected:
            raise CumuloError(f"download of {path} is corrupt: SHA-256 does not match; retry")
        return self.head(path)

    def read_bytes(self, path: str) -> bytes:
        buf = io.BytesIO()
        self.download(path, buf)
        return buf.getvalue()

    @overload
    def open(self, path: str, mode: Literal["rb"] = "rb", *,
             content_type: str | None = None) -> io.BufferedReader: ...

    @overload
    def open(self, path: str, mode: Literal["wb"], *,
             content_type: str | None = None) -> ObjectWriter: ...

    def open(self, path: str, mode: Literal["rb", "wb"] = "rb", *,
             content_type: str | None = None) -> io.BufferedReader | ObjectWriter:
        """A streaming file object: read an object as it arrives, or write one as you go.

        A writer publishes the object when it is closed; if the ``with`` block raises, the
        upload is abandoned and nothing is stored.
        """
        bucket, key = _needs_key(path)
        if mode == "rb":
            return io.BufferedReader(_Reader(self._t, _object_path(bucket, key)), CHUNK)
        if mode == "wb":
            return ObjectWriter(self._t, _object_path(bucket, key),
                           content_type or mimetypes.guess_type(key)[0]
                           or "application/octet-stream")
        raise Invalid(f"mode must be 'rb' or 'wb', not {mode!r}")

    def move(self, source: str | os.PathLike[str], dest: str | os.PathLike[str], *,
             progress: Progress | None = None) -> ObjectInfo:
        """Move one object: to another key or bucket, from a local file (a ``pathlib.Path``)
        to ``BUCKET/KEY``, or from ``BUCKET/KEY`` to a local path. The source is deleted only
        once the copy is stored whole (its SHA-256 checked). A ``dest`` that is a bucket, ends
        in ``/`` or is a local folder keeps the source's name. Returns the object's info."""
        local_src, local_dst = isinstance(source, os.PathLike), isinstance(dest, os.PathLike)
        if local_src and local_dst:
            raise Invalid(f"both {os.fspath(source)!r} and {os.fspath(dest)!r} are local; one "
                          "side must be a Cumulo path BUCKET/KEY (a str)")
        if local_src:
            path = Path(os.fspath(source)).expanduser()
            if not path.is_file():
                raise Invalid(f"{path} is not a file here")
            target = _into(str(dest), path.name)
            expected = sha256_of(path)
            info = self.upload(path, target, progress=progress)
            if info.sha256 != expected:
                raise CumuloError(f"{path} changed while it was uploaded to {target}; it was "
                                  "kept: move it again")
            path.unlink()
            return info
        _needs_key(str(source))
        if local_dst:  # checked against the SHA-256 and renamed into place by download()
            info = self.download(str(source), dest, progress=progress)
            self.delete(str(source))
            return info
        bucket, key = _needs_key(str(source))
        target = _into(str(dest), key.rsplit("/", 1)[-1])
        if split_path(target) == (bucket, key):
            raise Invalid(f"{source} and {target} are the same object; nothing to move")
        head = self.head(str(source))
        with self.open(str(source)) as reader:
            info = self.upload(reader, target, content_type=head.content_type,
                               progress=progress)
        if info.sha256 != head.sha256:
            raise CumuloError(f"{source} changed while it was copied to {target}; it was "
                              "kept: move it again")
        self.delete(str(source))
        return info

    def sync(self, source: str | os.PathLike[str], dest: str | os.PathLike[str], *,
             delete: bool = False, filters: Sequence[Rule] = (), dryrun: bool = False,
             progress: Progress | None = None) -> SyncPlan:
        """Make ``dest`` hold what ``source`` holds, as ``aws s3 sync`` does: a local folder
        (a ``pathlib.Path``) to ``BUCKET/PREFIX`` (a ``str``), or back. A file is copied when
        ``dest`` lacks it or its size or SHA-256 differs; ``delete`` removes what ``source``
        lacks; ``filters`` are aws's ``--exclude``/``--include`` in order, the last match
        deciding: ``[("exclude", "*"), ("include", "*.csv")]``. Returns the plan, carried
        out unless ``dryrun``; a missing bucket is NotFound before anything is copied."""
        todo = plan_sync(self, source, dest, delete=delete, rules=filters, dryrun=dryrun)
        return todo if dryrun else apply_sync(self, todo, progress=progress)

    def delete(self, path: str, *, recursive: bool = False) -> int:
        """Delete one object, or with ``recursive`` every object under the prefix."""
        bucket, key = split_path(path)
        if recursive:
            body = self._t.json("DELETE", f"/api/v1/files/buckets/{bucket}/objects",
                                params={"prefix": key})
            return int(body["deleted"])
        if not key:
            raise Invalid(f"{path!r} names a bucket, not an object; to empty it, delete "
                          "recursively ('cumulo files rm --recursive', recursive=True)")
        self._t.json("DELETE", _object_path(bucket, key))
        return 1


def _chunks(stream: IO[bytes], progress: Progress | None) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        if progress:
            progress(len(chunk))
        yield chunk


class _Reader(io.RawIOBase):
    def __init__(self, transport: Transport, url: str) -> None:
        self._cm = transport.stream("GET", url, timeout=None)
        response: httpx.Response = self._cm.__enter__()
        self._chunks = response.iter_raw(CHUNK)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buffer:
            self._buffer = next(self._chunks, b"")
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._cm.__exit__(None, None, None)
        super().close()


_END = object()


class _Abort(Exception):
    pass


class ObjectWriter(io.RawIOBase):
    """Streams writes to the server from a background thread, through a bounded queue.

    ``close()`` (or leaving a ``with`` block normally) publishes the object; ``abort()`` (or an
    exception in the ``with`` block) abandons it, and nothing is stored."""

    def __init__(self, transport: Transport, url: str, content_type: str) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._result: dict[str, Any] | None = None
        self._thread = threading.Thread(
            target=self._send, args=(transport, url, content_type), daemon=True
        )
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, _Abort):
                raise item
            yield item  # type: ignore[misc]

    def _send(self, transport: Transport, url: str, content_type: str) -> None:
        try:
            self._result = transport.json("PUT", url, content=self._body(), timeout=None,
                                          headers={"content-type": content_type})
        except BaseException as exc:  # handed to the writing thread in close()
            self._error = exc

    def writable(self) -> bool:
        return True

    def _put(self, item: object) -> None:
        # The sender may stop early (the server refused the upload): never block on it then.
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if self._error is not None:
            raise self._error

    def write(self, b: Any) -> int:
        if self._error is not None:
            raise self._error
        data = bytes(b)
        self._put(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            super().close()
            try:
                self._put(_END)
            finally:
                self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if not self.closed:
            super().close()
            # If the sender already stopped, nothing was stored either way.
            with contextlib.suppress(BaseException):
                self._put(_Abort("upload abandoned"))
            self._thread.join()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    @property
    def info(self) -> ObjectInfo | None:
        return ObjectInfo.from_json(self._result) if self._result else None
