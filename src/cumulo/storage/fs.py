"""Cumulo's object storage as an fsspec filesystem: ``cumulo://BUCKET/KEY``.

Registered under the protocol ``cumulo`` (the ``fsspec.specs`` entry point), so whatever reads
through fsspec reads Cumulo with the saved login::

    pandas.read_csv("cumulo://data/raw/sales.csv")
    df.to_parquet("cumulo://data/out/scored.parquet",
                  storage_options={"profile": "prod"})

The login is the SDK's (:class:`cumulo.Client`): ``endpoint_url`` (or ``url``), ``token`` and
``profile`` storage options, else ``CUMULO_URL`` and ``CUMULO_TOKEN``, else the saved one.
Buckets are the top folders; the folders below are the keys' ``/``-separated prefixes, which
exist while an object is under them. Reads are Range requests, checked against the object's
SHA-256 so a replaced object is never read half old, half new; a written file is spooled to a
local temporary file and uploaded in one request when it is closed (nothing is stored if the
``with`` block raises). Cumulo's errors come back as the ``OSError`` file code expects:
``FileNotFoundError``, ``PermissionError``, ``FileExistsError``.

fsspec keeps one filesystem per set of storage options (per thread): a login saved or changed
after the first use in a process needs ``skip_instance_cache=True`` or
``CumuloFileSystem.clear_instance_cache()``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fsspec.callbacks import DEFAULT_CALLBACK  # type: ignore[import-untyped]
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem  # type: ignore[import-untyped]

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
)
from cumulo.storage.keys import split_path
from cumulo.storage.sdk import FilesClient, ObjectInfo, _object_path

if TYPE_CHECKING:
    from cumulo.client import Client

__all__ = ["CumuloFile", "CumuloFileSystem"]

Entry = dict[str, Any]
# Taken and ignored: what fsspec's base class takes (its listings cache, unused here), and
# 'anon', which pandas adds to retry a PermissionError (for public S3 buckets; Cumulo has no
# anonymous reads, so the retry fails the same way and its error stands).
_IGNORED_OPTIONS = frozenset({"use_listings_cache", "listings_expiry_time", "max_paths",
                              "anon"})


def _dir_entry(name: str, **extra: Any) -> Entry:
    return {"name": name, "size": 0, "type": "directory", **extra}


def _file_entry(info: ObjectInfo) -> Entry:
    return {
        "name": info.path, "size": info.size, "type": "file", "sha256": info.sha256,
        "content_type": info.content_type, "created": info.created_at,
        "modified": info.modified_at, "mtime": info.modified_at,  # pyarrow reads "mtime"
        "created_by": info.created_by, "modified_by": info.modified_by,
    }


class CumuloFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """``cumulo://BUCKET/KEY`` through Cumulo's REST API for files (``/api/v1/files``)."""

    protocol = "cumulo"
    root_marker = ""
    page_size = 1000  # entries a listing request asks for (the server's most); then the cursor

    def __init__(self, url: str | None = None, *, endpoint_url: str | None = None,
                 token: str | None = None, profile: str | None = None, timeout: float = 60.0,
                 **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _IGNORED_OPTIONS)
        if unknown:  # a misspelt 'profile' would otherwise fall back to another login
            raise TypeError(f"unknown storage option(s) {', '.join(unknown)} for cumulo://; "
                            "it takes endpoint_url (or url), token, profile and timeout")
        kwargs.pop("anon", None)
        super().__init__(**kwargs)
        # In storage options the server is ``endpoint_url`` (s3fs's word): a ``url`` there
        # collides with the first argument of fsspec's url_to_fs, which pandas' parquet uses.
        if url and endpoint_url and url != endpoint_url:
            raise Invalid(f"two servers given: url={url!r} and endpoint_url={endpoint_url!r}")
        from cumulo.client import Client  # the root client: lazily, as services may

        self.client: Client = Client(url or endpoint_url, token=token, profile=profile,
                                     timeout=timeout)
        self._files: FilesClient = self.client.files
        # fsspec keeps instances, and offers no close: the connections go with the instance.
        weakref.finalize(self, self.client.close)

    # --- errors ------------------------------------------------------------------------------

    @contextmanager
    def _translated(self, path: str) -> Iterator[None]:
        """Cumulo's errors about ``path`` as the OSErrors file code catches, naming it."""
        try:
            yield
        except NotFound as exc:
            raise FileNotFoundError(errno.ENOENT, exc.message, self.unstrip_protocol(path)) \
                from exc
        except (Forbidden, Unauthorized) as exc:
            raise PermissionError(errno.EACCES, exc.message, self.unstrip_protocol(path)) \
                from exc

    def _object(self, path: str) -> tuple[str, str]:
        """``path`` as (bucket, key), refused when it names a bucket or the root."""
        path = self._strip_protocol(path)
        if not path:
            raise IsADirectoryError(errno.EISDIR, "the root holds buckets, not bytes",
                                    "cumulo://")
        bucket, key = split_path(path)
        if not key:
            raise IsADirectoryError(errno.EISDIR, "a bucket, not an object",
                                    self.unstrip_protocol(path))
        return bucket, key

    # --- listing -----------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The buckets (at the root), or what is right under a bucket or folder; a file's
        own entry for a file."""
        path = self._strip_protocol(path)
        entries: list[Entry] = []
        with self._translated(path):
            if not path:
                entries = [_dir_entry(b["name"], project=b["project"], objects=b["objects"],
                                      bytes=b["bytes"]) for b in self._files.buckets()]
            else:
                bucket, key = split_path(path)
                for page in self._files.pages(f"{bucket}/{key}/" if key else bucket,
                                              page_size=self.page_size):
                    entries += [_dir_entry(f"{bucket}/{p.rstrip('/')}") for p in page.prefixes]
                    entries += [_file_entry(o) for o in page.objects]
        if not entries and path and "/" in path:
            entries = [self._file_info(path)]  # a file, or nothing there at all
        entries.sort(key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def _file_info(self, path: str) -> Entry:
        with self._translated(path):
            return _file_entry(self._files.head(path))

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            next(self._files.pages(bucket, page_size=1))
        except NotFound:
            return False
        return True

    def _has_objects_under(self, bucket: str, prefix: str) -> bool:
        page = next(self._files.pages(f"{bucket}/{prefix}", recursive=True, page_size=1))
        return bool(page.objects)

    def info(self, path: str, **kwargs: Any) -> Entry:
        """An object's entry (size, sha256, content_type, created, modified, ...), or a
        directory's for the root, a bucket, or a prefix some object is under."""
        path = self._strip_protocol(path)
        if not path:
            return _dir_entry("")
        bucket, key = split_path(path)
        if not key:
            with self._translated(path):
                if not self._bucket_exists(bucket):
                    raise NotFound(f"bucket {bucket!r} does not exist")
            return _dir_entry(bucket)
        try:
            return self._file_info(path)
        except FileNotFoundError:
            try:
                if self._has_objects_under(bucket, key + "/"):
                    return _dir_entry(path)
            except (NotFound, Forbidden):
                pass  # not an object, and no folder this caller may see
            raise

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether an object, bucket or folder is there; PermissionError when that may not be
        known (fsspec's default would say False)."""
        try:
            self.info(path)
        except (FileNotFoundError, Invalid):  # Invalid: a name no bucket or key can have
            return False
        return True

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
             detail: bool = False, **kwargs: Any) -> Any:
        """Every object under ``path`` in one flat listing (paged), not a walk folder by folder;
        with ``maxdepth``, fsspec's walk."""
        if maxdepth is not None:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail,
                                **kwargs)
        path = self._strip_protocol(path)
        found: dict[str, Entry] = {}
        if path:
            found = self._find_under(path, withdirs)
        else:
            for bucket in self.ls("", detail=True):
                if withdirs:
                    found[bucket["name"]] = bucket
                found.update(self._find_under(bucket["name"], withdirs))
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    def _find_under(self, path: str, withdirs: bool) -> dict[str, Entry]:
        bucket, key = split_path(path)
        prefix = key + "/" if key else ""
        found: dict[str, Entry] = {}
        try:
            with self._translated(path):
                for page in self._files.pages(f"{bucket}/{prefix}", recursive=True,
                                              page_size=self.page_size):
                    for obj in page.objects:
                        found[obj.path] = _file_entry(obj)
                        if withdirs:  # the folders between path and the object
                            folder = path
                            for part in obj.key[len(prefix):].split("/")[:-1]:
                                folder = f"{folder}/{part}"
                                found.setdefault(folder, _dir_entry(folder))
        except FileNotFoundError:
            return {}  # no such bucket: nothing found, as fsspec's find says
        if withdirs and (found or not key):
            found[path] = _dir_entry(path)
        if not found and key:
            with contextlib.suppress(FileNotFoundError):  # fsspec's find of a file is it
                found[path] = self._file_info(path)
        return found

    def created(self, path: str) -> datetime:
        return self._file_info(self._strip_protocol(path))["created"]  # type: ignore[no-any-return]

    def modified(self, path: str) -> datetime:
        return self._file_info(self._strip_protocol(path))["modified"]  # type: ignore[no-any-return]

    def ukey(self, path: str) -> str:
        """The object's SHA-256: it changes exactly when the bytes do."""
        return self._file_info(self._strip_protocol(path))["sha256"]  # type: ignore[no-any-return]

    # --- buckets -----------------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, *, project: str | None = None,
              **kwargs: Any) -> None:
        """Make a bucket (in ``project`` when one is named). Folders below a bucket exist
        while objects are under them, so there is nothing to make for one: its bucket is
        made when missing (with ``create_parents``)."""
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if key and self._bucket_ready(bucket):
            return
        if key and not create_parents:
            raise FileNotFoundError(errno.ENOENT, f"bucket {bucket!r} does not exist",
                                    self.unstrip_protocol(bucket))
        try:
            with self._translated(bucket):
                self._files.create_bucket(bucket, project=project)
        except Conflict as exc:
            raise FileExistsError(errno.EEXIST, exc.message, self.unstrip_protocol(bucket)) \
                from exc

    def _bucket_ready(self, bucket: str) -> bool:
        with self._translated(bucket):
            return self._bucket_exists(bucket)

    def makedirs(self, path: str, exist_ok: bool = False, *, project: str | None = None) -> None:
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if self._bucket_ready(bucket):
            if not key and not exist_ok:
                raise FileExistsError(errno.EEXIST, f"bucket {bucket!r} already exists",
                                      self.unstrip_protocol(bucket))
            return
        self.mkdir(bucket, project=project)

    def rmdir(self, path: str) -> None:
        """Delete an empty bucket. A folder below one goes with its last object."""
        path = self._strip_protocol(path)
        bucket, key = split_path(path)
        if key:
            with self._translated(path):
                full = self._has_objects_under(bucket, key + "/")
            if full:
                raise OSError(errno.ENOTEMPTY, "the folder holds objects",
                              self.unstrip_protocol(path))
            raise FileNotFoundError(errno.ENOENT, "no object is under this folder",
                                    self.unstrip_protocol(path))
        try:
            with self._translated(path):
                self._files.delete_bucket(bucket)
        except Conflict as exc:
            raise OSError(errno.ENOTEMPTY, exc.message, self.unstrip_protocol(path)) from exc

    # --- deleting ----------------------------------------------------------------------------

    def rm_file(self, path: str) -> None:
        bucket, key = self._object(path)
        with self._translated(path):
            self._files.delete(f"{bucket}/{key}")

    def rm(self, path: str | list[str], recursive: bool = False,
           maxdepth: int | None = None) -> None:
        """Delete objects; with ``recursive``, whole folders (one request each, on the
        server) and buckets with everything in them, as ``rm -r`` removes a folder."""
        if not recursive or maxdepth is not None:
            super().rm(path, recursive=recursive, maxdepth=maxdepth)
            return
        for each in self.expand_path(path):
            self._rm_tree(each)

    def _rm_tree(self, path: str) -> None:
        bucket, key = split_path(path)
        with self._translated(path):
            if not key:
                self._files.delete_bucket(bucket, recursive=True)
                return
            gone = self._files.delete(f"{bucket}/{key}/", recursive=True)
            try:
                gone += self._files.delete(f"{bucket}/{key}")
            except NotFound:
                if not gone:
                    raise

    # --- reading and writing -----------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        """The object's bytes, or those from ``start`` to ``end`` (Python's slice rules,
        negatives from the end), fetched with a Range request."""
        return self._read(self._strip_protocol(path), start, end)[0]

    def _read(self, path: str, start: int | None, end: int | None) -> tuple[bytes, str]:
        """Bytes [start, end) and the SHA-256 of the object they were read from."""
        bucket, key = self._object(path)
        if (end is not None and end < 0) or (start is not None and start < 0
                                              and end is not None):
            size = self.size(path)
            start = max(size + start, 0) if start is not None and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        headers = {}
        if start is not None and start < 0:
            headers["range"] = f"bytes=-{-start}"
        elif start or end is not None:
            start = start or 0
            if end is not None and end <= start:
                return b"", ""
            headers["range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with self._translated(path):
                response = self.client.transport.request(
                    "GET", _object_path(bucket, key), headers=headers)
        except CumuloError as exc:
            # 416, which the SDK raises as the root class: a range past the end (or any range
            # of an empty object) reads nothing, as Python's files do.
            if headers and type(exc) is CumuloError:
                size = self.size(path)
                if size == 0 or (start is not None and start >= size):
                    return b"", ""
            raise
        sha256 = response.headers.get("x-cumulo-sha256", "")
        if not headers and sha256 and hashlib.sha256(response.content).hexdigest() != sha256:
            raise CumuloError(f"read of {self.unstrip_protocol(path)} is corrupt: SHA-256 does "
                              "not match; retry")
        return response.content, sha256

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                  **kwargs: Any) -> None:
        if mode == "create" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "already exists", self.unstrip_protocol(path))
        self._upload(value, path)

    def _upload(self, source: bytes | Path | IO[bytes], path: str,
                callback: Any = DEFAULT_CALLBACK) -> Entry:
        bucket, key = self._object(path)
        with self._translated(path):
            info = self._files.upload(source, f"{bucket}/{key}",
                                      progress=callback.relative_update)
        return _file_entry(info)

    def put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK,
                 mode: str = "overwrite", **kwargs: Any) -> None:
        """Upload a local file, streamed from disk in one request."""
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(errno.EEXIST, "already exists", self.unstrip_protocol(rpath))
        callback.set_size(os.path.getsize(lpath))
        self._upload(Path(lpath), rpath, callback)

    def get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK,
                 outfile: IO[bytes] | None = None, **kwargs: Any) -> None:
        """Download an object, streamed to disk (written whole, then renamed into place) and
        checked against its SHA-256."""
        entry = self.info(rpath)
        if entry["type"] == "directory":  # fsspec's get copies what is in it on its own
            if outfile is None:
                os.makedirs(lpath, exist_ok=True)
            return
        if outfile is None and os.path.dirname(lpath):
            os.makedirs(os.path.dirname(lpath), exist_ok=True)
        callback.set_size(entry["size"])
        with self._translated(rpath):
            self._files.download(entry["name"], outfile if outfile is not None else lpath,
                                 progress=callback.relative_update)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy through this client (there is no copy on the server), streamed in one GET and
        one PUT; refused when the source changes meanwhile."""
        source = self._file_info(self._strip_protocol(path1))
        with self._translated(path1), self._files.open(source["name"]) as reader:
            copied = self._upload(reader, path2)
        if copied["sha256"] != source["sha256"]:
            raise CumuloError(f"{self.unstrip_protocol(path1)} changed while it was copied to "
                              f"{self.unstrip_protocol(path2)}; copy it again")

    def _open(self, path: str, mode: str = "rb", block_size: int | str | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> CumuloFile:
        path = self._strip_protocol(path)
        self._object(path)
        if mode == "rb":
            details = self.info(path)
            if details["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "a folder, not an object",
                                        self.unstrip_protocol(path))
            return CumuloFile(self, path, mode, block_size, autocommit,
                              cache_options=cache_options, details=details, **kwargs)
        if mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "already exists", self.unstrip_protocol(path))
        if mode not in ("wb", "xb"):
            raise ValueError(f"mode {mode!r} is not supported: use 'rb', 'wb' or 'xb' "
                             "(an object is written whole; there is no append)")
        return CumuloFile(self, path, mode, block_size, autocommit,
                          cache_options=cache_options, **kwargs)


class CumuloFile(AbstractBufferedFile):  # type: ignore[misc]
    """An object opened for reading at random (Range requests, the block cache of fsspec) or
    for writing (spooled to a temporary file, uploaded in one request on close)."""

    fs: CumuloFileSystem

    def __init__(self, fs: CumuloFileSystem, path: str, mode: str = "rb",
                 block_size: int | str | None = "default", autocommit: bool = True,
                 *, details: Entry | None = None, **kwargs: Any) -> None:
        self._spool: IO[bytes] | None = None
        size = details["size"] if details is not None else None
        super().__init__(fs, path, mode, block_size, autocommit, size=size, **kwargs)
        if details is not None:
            self.details = details

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        data, sha256 = self.fs._read(self.path, start, end)
        if sha256 and sha256 != self.details["sha256"]:
            raise CumuloError(f"{self.full_name} was replaced while it was read; open it again")
        return data

    def _initiate_upload(self) -> None:
        self._spool = tempfile.TemporaryFile(prefix="cumulo-upload-")  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._spool is not None
        self._spool.write(self.buffer.getbuffer())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        """Upload what was written (on close, or at the end of a transaction)."""
        spool, self._spool = self._spool, None
        if spool is None:
            return
        try:
            spool.seek(0)
            self.fs._upload(spool, self.path)
        finally:
            spool.close()

    def discard(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None and self.writable():
            # The block failed: what it wrote may be half a file, so none of it is stored.
            self.discard()
            self.closed = True
            return
        self.close()
