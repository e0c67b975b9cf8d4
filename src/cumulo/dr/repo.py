"""A backup repository: content-addressed chunks and the snapshots that name them.

Layout at the target (a folder; ``s3://`` later), in the manner of restic and borg::

    cumulo-backup.json        what this is: format version, whether chunks are encrypted
    chunks/ab/<id>            one piece of a file: zstd-compressed, then encrypted if keyed
    snapshots/<id>.json       one backup: what it holds and which chunks make each file

A chunk's id is the SHA-256 of its plain bytes (an HMAC-SHA-256 keyed from the key file when
the repository is encrypted, so that names say nothing of contents), so a piece stored once is
never stored again: a second backup after a small change writes only what changed. Every
chunk and snapshot is written to a temporary name and renamed into place, and a snapshot is
written last: a backup killed halfway leaves chunks no snapshot names (``prune`` removes them)
and never a snapshot that is incomplete.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zstandard

from cumulo.errors import Conflict, Invalid, NotFound

__all__ = ["CHUNK_SIZE", "CorruptChunk", "Repository", "open_repository"]

FORMAT = 1
CHUNK_SIZE = 4 << 20  # files are cut into pieces of this size
MARKER = "cumulo-backup.json"
_LEVEL = 3  # zstd's default: fast, and most of the gain


class CorruptChunk(Exception):
    """A chunk whose bytes do not match its id (or do not decrypt)."""


class Store(Protocol):
    """Where a repository's files are: a folder, or a bucket's prefix. Keys are relative
    (``chunks/ab/abcd...``); a write is whole or absent."""

    def exists(self, key: str) -> bool: ...
    def read(self, key: str) -> bytes: ...  # FileNotFoundError when absent
    def write(self, key: str, body: bytes) -> None: ...
    def list(self, prefix: str) -> Iterator[str]: ...  # keys under prefix/
    def delete(self, key: str) -> int: ...  # the bytes freed (0 when absent)


@dataclass
class FolderStore:
    root: Path

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, body: bytes) -> None:
        _write_atomic(self.root / key, body)

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.startswith("."):
                    yield str((Path(dirpath) / name).relative_to(self.root))

    def delete(self, key: str) -> int:
        path = self.root / key
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return 0


@dataclass
class BucketStore:
    """A prefix of an S3 bucket (the [s3] settings say where and with which keys)."""

    bucket: str
    prefix: str
    client: Any

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket,
                                                 Key=self._key(key))["Body"].read()
            return body
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise

    def write(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)

    def list(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/"))
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][cut:]

    def delete(self, key: str) -> int:
        try:
            size = int(self.client.head_object(Bucket=self.bucket,
                                               Key=self._key(key))["ContentLength"])
        except Exception:
            return 0
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return size


@dataclass
class Repository:
    root: Path | str  # the folder, or s3://bucket/prefix: what users named
    key: bytes | None = None  # 32 bytes from the key file: chunks and snapshots encrypted
    store: Store | None = None

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = FolderStore(Path(self.root))

    @property
    def _s(self) -> Store:
        assert self.store is not None
        return self.store

    # --- chunks --------------------------------------------------------------------------

    def chunk_id(self, data: bytes) -> str:
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    @staticmethod
    def _chunk_key(chunk: str) -> str:
        return f"chunks/{chunk[:2]}/{chunk}"

    def has(self, chunk: str) -> bool:
        return self._s.exists(self._chunk_key(chunk))

    def put(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` unless a chunk of the same content is there: its id, and the bytes
        written (0 when it was there)."""
        chunk = self.chunk_id(data)
        if self.has(chunk):
            return chunk, 0
        body = self._seal(zstandard.ZstdCompressor(level=_LEVEL).compress(data))
        self._s.write(self._chunk_key(chunk), body)
        return chunk, len(body)

    def get(self, chunk: str) -> bytes:
        """The plain bytes of a chunk; FileNotFoundError if missing, CorruptChunk if they do
        not match its id."""
        body = self._s.read(self._chunk_key(chunk))
        try:
            data = zstandard.ZstdDecompressor().decompress(self._open(body))
        except (zstandard.ZstdError, ValueError) as exc:
            raise CorruptChunk(f"chunk {chunk[:12]} does not decompress: {exc}") from exc
        if self.chunk_id(data) != chunk:
            raise CorruptChunk(f"chunk {chunk[:12]} does not match its checksum")
        return data

    def chunks(self) -> Iterator[str]:
        for key in self._s.list("chunks"):
            yield key.rsplit("/", 1)[-1]

    def remove_chunk(self, chunk: str) -> int:
        return self._s.delete(self._chunk_key(chunk))

    # --- encryption --------------------------------------------------------------------------

    def _seal(self, data: bytes) -> bytes:
        if self.key is None:
            return data
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        return b"CMB1" + nonce + AESGCM(self.key).encrypt(nonce, data, None)

    def _open(self, body: bytes) -> bytes:
        if self.key is None:
            if body.startswith(b"CMB1"):
                raise Invalid("this backup is encrypted: give its --key-file")
            return body
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not body.startswith(b"CMB1"):
            raise CorruptChunk("a piece is not encrypted, though the backup is")
        try:
            return AESGCM(self.key).decrypt(body[4:16], body[16:], None)
        except InvalidTag as exc:
            raise Invalid("the key file does not open this backup (wrong key, or a piece "
                          "was changed)") from exc

    # --- snapshots ---------------------------------------------------------------------------

    def write_snapshot(self, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, sort_keys=True).encode()
        self._s.write(f"snapshots/{manifest['id']}.json",
                      self._seal(zstandard.ZstdCompressor(level=_LEVEL).compress(body)))

    def snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """A snapshot by id, or by a prefix of it, or ``latest``."""
        ids = self.snapshot_ids()
        if snapshot_id == "latest":
            if not ids:
                raise NotFound(f"the backup at {self.root} holds no backup yet")
            snapshot_id = ids[-1]
        found = [i for i in ids if i.startswith(snapshot_id)]
        if len(found) != 1:
            raise NotFound(f"no backup {snapshot_id!r} at {self.root}; 'cumulo backup ls --to "
                           f"{self.root}' lists them") if not found else Invalid(
                f"{snapshot_id!r} is the start of more than one backup's id; give more of it")
        body = self._s.read(f"snapshots/{found[0]}.json")
        data = zstandard.ZstdDecompressor().decompress(self._open(body))
        manifest: dict[str, Any] = json.loads(data)
        return manifest

    def snapshot_ids(self) -> list[str]:
        """Complete backups, oldest first (ids sort by time)."""
        return sorted(k.rsplit("/", 1)[-1].removesuffix(".json")
                      for k in self._s.list("snapshots") if k.endswith(".json"))

    def remove_snapshot(self, snapshot_id: str) -> None:
        self._s.delete(f"snapshots/{snapshot_id}.json")

    # --- points in time (continuous protection) ---------------------------------------------

    def write_point(self, point: dict[str, Any]) -> None:
        """A point of ``cumulo backup stream``: the databases at a moment, and what changed in
        storage since the point before it (of the same base backup)."""
        body = json.dumps(point, sort_keys=True).encode()
        self._s.write(f"points/{point['id']}.json",
                      self._seal(zstandard.ZstdCompressor(level=_LEVEL).compress(body)))

    def point_ids(self) -> list[str]:
        return sorted(k.rsplit("/", 1)[-1].removesuffix(".json")
                      for k in self._s.list("points") if k.endswith(".json"))

    def point(self, point_id: str) -> dict[str, Any]:
        body = self._s.read(f"points/{point_id}.json")
        found: dict[str, Any] = json.loads(
            zstandard.ZstdDecompressor().decompress(self._open(body)))
        return found

    def remove_point(self, point_id: str) -> None:
        self._s.delete(f"points/{point_id}.json")


def _write_atomic(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_key(key_file: str | os.PathLike[str] | None) -> bytes | None:
    """32 bytes of key from a key file (its SHA-256, whatever the file holds), or None."""
    if key_file is None:
        return None
    try:
        data = Path(key_file).read_bytes()
    except OSError as exc:
        raise Invalid(f"cannot read the key file {key_file}: {exc.strerror or exc}") from exc
    if len(data) < 16:
        raise Invalid(f"the key file {key_file} holds {len(data)} bytes; give at least 16 "
                      "random bytes (head -c 32 /dev/urandom > backup.key)")
    return hashlib.sha256(data).digest()


def open_repository(target: str | os.PathLike[str], *, key_file: str | None = None,
                    create: bool = False) -> Repository:
    """The repository at ``target`` (a folder, or s3://bucket/prefix), made when ``create``
    and it has none. A target that cannot be used (a file, a folder not readable) is refused
    naming it."""
    try:
        return _open(str(target), key_file=key_file, create=create)
    except OSError as exc:
        raise Invalid(f"cannot use {target} as a backup folder: {exc.strerror or exc}") from exc


def _open(text: str, *, key_file: str | None, create: bool) -> Repository:
    key = read_key(key_file)
    root: Path | str
    store: Store
    if text.startswith("s3://"):
        root = text.rstrip("/")
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        store = BucketStore(bucket, prefix.strip("/"), _s3_client())
        empty = next(iter(store.list("")), None) is None
    else:
        root = Path(text).expanduser()
        store = FolderStore(root)
        empty = not root.exists() or not any(root.iterdir())
    if store.exists(MARKER):
        info = json.loads(store.read(MARKER))
        if info.get("format") != FORMAT:
            raise Invalid(f"{root} holds backups of format {info.get('format')}; this Cumulo "
                          f"reads format {FORMAT}")
        if info.get("encrypted") and key is None:
            raise Invalid(f"the backups at {root} are encrypted: give --key-file")
        if not info.get("encrypted") and key is not None:
            raise Invalid(f"the backups at {root} are not encrypted; leave out --key-file (or "
                          "back up to a new folder to encrypt)")
        if key is not None and info.get("key_check") != hmac.new(
                key, b"cumulo-backup", hashlib.sha256).hexdigest():
            raise Invalid(f"the key file does not open the backups at {root}")
        return Repository(root, key, store)
    if not create:
        raise NotFound(f"{root} holds no Cumulo backup ('cumulo backup create --to {root}' "
                       "makes one)")
    if not empty:
        raise Conflict(f"{root} is not empty and holds no Cumulo backup; back up to an empty or "
                       "new folder")
    info = {"format": FORMAT, "encrypted": key is not None}
    if key is not None:
        info["key_check"] = hmac.new(key, b"cumulo-backup", hashlib.sha256).hexdigest()
    store.write(MARKER, json.dumps(info).encode())
    return Repository(root, key, store)


def _s3_client() -> Any:
    """boto3's S3 client with the [s3] settings (endpoint, keys, region) the server uses."""
    try:
        import boto3
    except ImportError as exc:
        raise Invalid("backups to s3:// need boto3: pip install 'cumulo[s3]'") from exc
    from cumulo.config import load_settings

    s3 = load_settings().s3
    return boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                        aws_access_key_id=s3.access_key_id,
                        aws_secret_access_key=s3.secret_access_key)


def free_bytes(root: Path) -> int:
    probe = root
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free
