"""Buckets and objects: the metadata rows and the backend's blobs, kept in step.

An object becomes visible only when its bytes are complete in the backend *and* its row is
committed, so a reader never sees a half-written object. Writes and deletes of one key are
serialized within the control plane, so the row always describes the blob that is there.
"""

from __future__ import annotations

import base64
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.access import holders, projects
from cumulo.access.models import Project
from cumulo.db import utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.principal import Principal, require_each
from cumulo.storage.backends import Backend
from cumulo.storage.keys import validate_bucket, validate_key
from cumulo.storage.models import Bucket, StoredObject

__all__ = [
    "BucketInfo",
    "ListPage",
    "create_bucket",
    "cursor_after",
    "delete_bucket",
    "delete_object",
    "delete_prefix",
    "get_bucket",
    "get_object",
    "list_buckets",
    "list_objects",
    "put_object",
    "ready_for_upload",
    "usage",
]

MAX_PAGE = 1000
_LOCKS = [threading.Lock() for _ in range(256)]


@contextmanager
def _key_lock(bucket: str, key: str) -> Iterator[None]:
    with _LOCKS[zlib.crc32(f"{bucket}/{key}".encode()) % len(_LOCKS)]:
        yield


def blob_key(bucket: str, key: str) -> str:
    return f"buckets/{bucket}/{key}"


# --- buckets -----------------------------------------------------------------------------------


def get_bucket(session: Session, name: str) -> Bucket:
    validate_bucket(name)
    bucket = session.scalar(select(Bucket).where(Bucket.name == name))
    if bucket is None:
        raise NotFound(
            f"bucket {name!r} does not exist; 'cumulo files ls' lists buckets, "
            f"'cumulo files mb {name}' creates it",
            details={"bucket": name},
        )
    return bucket


def create_bucket(session: Session, principal: Principal, name: str, *,
                  project: str | None = None) -> Bucket:
    """Make a bucket, in ``project`` when one is named: its objects count toward the
    project's ``storage_gb`` quota, and rights bound in the project hold on it."""
    validate_bucket(name)
    project_id = projects.project_id_for(session, project)
    principal.require("files:CreateBucket", f"bucket/{name}", project=project)
    bucket = Bucket(name=name, created_by=principal.user_id, project_id=project_id)
    session.add(bucket)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"bucket {name!r} already exists", details={"bucket": name}) from exc
    return bucket


@dataclass(frozen=True)
class BucketInfo:
    bucket: Bucket
    objects: int
    bytes: int


def list_buckets(session: Session, *, project: str | None = None) -> list[BucketInfo]:
    """Every bucket, or those of ``project``."""
    project_id = projects.project_id_for(session, project)
    counts = (
        select(StoredObject.bucket_id, func.count().label("n"),
               func.coalesce(func.sum(StoredObject.size), 0).label("b"))
        .group_by(StoredObject.bucket_id).subquery()
    )
    query = select(Bucket, counts.c.n, counts.c.b).outerjoin(
        counts, counts.c.bucket_id == Bucket.id)
    if project is not None:
        query = query.where(Bucket.project_id == project_id)
    rows = session.execute(query.order_by(Bucket.name))
    return [BucketInfo(b, int(n or 0), int(size or 0)) for b, n, size in rows]


def delete_bucket(session: Session, backend: Backend, name: str, *, recursive: bool) -> int:
    """Delete a bucket; with ``recursive``, its objects first. Returns objects deleted."""
    bucket = get_bucket(session, name)
    count = session.scalar(
        select(func.count()).select_from(StoredObject).where(StoredObject.bucket_id == bucket.id)
    ) or 0
    if count and not recursive:
        raise Conflict(
            f"bucket {name!r} holds {count} object(s); delete them first, or delete the bucket "
            "with everything in it ('cumulo files rb --recursive', recursive=True in the SDK)",
            details={"bucket": name, "objects": count},
        )
    session.execute(delete(StoredObject).where(StoredObject.bucket_id == bucket.id))
    session.delete(bucket)
    session.commit()
    # The rows are gone first: a failure below leaves unreachable bytes, never a listed object
    # without bytes.
    backend.delete_prefix(blob_key(name, ""))
    return count


# --- objects -----------------------------------------------------------------------------------


def get_object(session: Session, bucket: str, key: str) -> StoredObject:
    row = session.scalar(
        select(StoredObject).join(Bucket).where(Bucket.name == bucket, StoredObject.key == key)
    )
    if row is None:
        get_bucket(session, bucket)  # a missing bucket is the better message
        raise NotFound(f"no object {key!r} in bucket {bucket!r}",
                       details={"bucket": bucket, "key": key})
    return row


def ready_for_upload(session: Session, bucket: str, key: str, size: int | None) -> Bucket:
    """The bucket an upload goes to, asked before its body is read: a missing bucket, or a
    size (Content-Length) that would pass the project's quota, is refused without a byte
    received. A body of unknown size is measured again by :func:`put_object`."""
    owner = get_bucket(session, bucket)
    if size is not None and owner.project_id is not None:
        _check_room(session, owner, key, size, _stored_size(session, owner, key))
    return owner


def _stored_size(session: Session, bucket: Bucket, key: str) -> int:
    size = session.scalar(select(StoredObject.size).where(StoredObject.bucket_id == bucket.id,
                                                          StoredObject.key == key))
    return int(size or 0)


def _check_room(session: Session, bucket: Bucket, key: str, size: int, replaced: int) -> None:
    """Refuse an object that would take its bucket's project past ``storage_gb``: what it
    adds is its size less that of the version it replaces."""
    projects.enforce(session, bucket.project_id,
                     {"storage_gb": projects.gigabytes(size - replaced)},
                     what=f"upload of {bucket.name}/{key} ({size} bytes)")


def put_object(
    session: Session, backend: Backend, principal: Principal, *, bucket: str, key: str,
    tmp: Path, size: int, sha256: str, content_type: str, etag: str | None = None,
    meta: dict[str, str] | None = None, tags: dict[str, str] | None = None,
    checksums: dict[str, Any] | None = None,
    expect: Callable[[StoredObject | None], None] | None = None,
) -> StoredObject:
    """Publish a finished upload: move its bytes into place, then record it. The quota is
    asked before the bytes move, so a refused upload leaves the key as it was. ``expect`` is
    called with the object the key holds now (or None), under the key's lock, and may refuse
    the write by raising (a conditional write: S3's If-None-Match and If-Match)."""
    validate_key(key)
    owner = get_bucket(session, bucket)
    with _key_lock(bucket, key):
        row = session.scalar(
            select(StoredObject).where(StoredObject.bucket_id == owner.id, StoredObject.key == key)
        )
        if expect is not None:
            expect(row)
        _check_room(session, owner, key, size, row.size if row is not None else 0)
        backend.commit(tmp, blob_key(bucket, key))
        now = utcnow()
        if row is None:
            row = StoredObject(bucket_id=owner.id, key=key, created_by=principal.user_id,
                               created_at=now)
            session.add(row)
        row.size, row.sha256, row.content_type = size, sha256, content_type
        row.etag, row.meta, row.tags, row.checksums = etag, meta, tags, checksums
        row.modified_by, row.modified_at = principal.user_id, now
        try:
            session.commit()
        except Exception:
            session.rollback()
            if row.id is None:  # a new key: take the bytes away again
                backend.delete(blob_key(bucket, key))
            raise
    return row


def delete_object(session: Session, backend: Backend, bucket: str, key: str) -> None:
    validate_key(key)
    with _key_lock(bucket, key):
        row = get_object(session, bucket, key)
        session.delete(row)
        session.commit()
        backend.delete(blob_key(bucket, key))


def delete_prefix(session: Session, backend: Backend, bucket: str, prefix: str, *,
                  principal: Principal | None = None) -> int:
    """Delete every object whose key starts with ``prefix``; returns how many. With
    ``principal``, nothing is deleted unless they may delete each object (a deny on some keys
    under the prefix refuses the whole)."""
    owner = get_bucket(session, bucket)
    if principal is not None:
        require_each(principal, "files:Delete", (
            f"bucket/{bucket}/{key}" for key in session.scalars(
                _under(select(StoredObject.key), owner.id, prefix)
                .execution_options(yield_per=10_000))))
    total = 0
    while True:
        rows = list(session.scalars(
            _under(select(StoredObject), owner.id, prefix).order_by(StoredObject.key).limit(500)
        ))
        if not rows:
            return total
        for row in rows:
            with _key_lock(bucket, row.key):
                session.delete(row)
                session.commit()
                backend.delete(blob_key(bucket, row.key))
        total += len(rows)


def _under(query, bucket_id: int, prefix: str):  # type: ignore[no-untyped-def]
    query = query.where(StoredObject.bucket_id == bucket_id)
    if prefix:
        query = query.where(
            StoredObject.key >= prefix,
            func.substr(StoredObject.key, 1, len(prefix)) == prefix,
        )
    return query


# --- listing -----------------------------------------------------------------------------------


@dataclass
class ListPage:
    objects: list[Any] = field(default_factory=list)  # StoredObject, or rows of columns
    prefixes: list[str] = field(default_factory=list)
    next_cursor: str | None = None


def _encode_cursor(op: str, value: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([op, value])).decode()


def cursor_after(key: str) -> str:
    """A cursor that lists from just after ``key`` (S3's start-after and marker)."""
    return _encode_cursor("gt", key)


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        op, value = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if op in ("gt", "ge") and isinstance(value, str):
            return op, value
    except (ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise Invalid("cursor is not one this server gave out; start the listing again without it")


def _successor(text: str) -> str:
    """The smallest string greater than every string that starts with ``text``."""
    return text[:-1] + chr(ord(text[-1]) + 1)


def list_objects(
    session: Session, bucket: str, *, prefix: str = "", delimiter: str | None = None,
    limit: int = MAX_PAGE, cursor: str | None = None, columns: Sequence[Any] = (),
) -> ListPage:
    """List keys in byte order, S3-style: keys under ``prefix``, rolled up at ``delimiter``
    into common prefixes, at most ``limit`` entries a page.

    With ``columns`` (``StoredObject.key`` among them), the page's objects are rows of just
    those columns rather than whole objects: a page of a thousand keys then loads no ORM
    objects and parses no JSON metadata, which is most of its time."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if delimiter == "":
        delimiter = None
    owner = get_bucket(session, bucket)
    op, bound = _decode_cursor(cursor) if cursor else ("ge", prefix)
    page = ListPage()
    while len(page.objects) + len(page.prefixes) < limit:
        want = limit - len(page.objects) - len(page.prefixes)
        query = _under(select(*columns) if columns else select(StoredObject), owner.id, prefix)
        query = query.where(StoredObject.key > bound if op == "gt" else StoredObject.key >= bound)
        query = query.order_by(StoredObject.key).limit(want + 1)
        rows: list[Any] = (list(session.execute(query)) if columns
                           else list(session.scalars(query)))
        if not rows:
            return page
        rolled = False
        for row in rows[:want]:
            cut = row.key.find(delimiter, len(prefix)) if delimiter else -1
            if delimiter and cut >= 0:
                common = row.key[: cut + len(delimiter)]
                page.prefixes.append(common)
                op, bound = "ge", _successor(common)  # skip everything under it
                rolled = True
                break
            page.objects.append(row)
            op, bound = "gt", row.key
        if not rolled and len(rows) <= want:
            return page
    page.next_cursor = _encode_cursor(op, bound)
    return page


def usage(session: Session) -> dict[str, int]:
    buckets = session.scalar(select(func.count()).select_from(Bucket)) or 0
    objects, size = session.execute(
        select(func.count(), func.coalesce(func.sum(StoredObject.size), 0))
    ).one()
    return {"buckets": int(buckets), "objects": int(objects), "bytes": int(size)}



# --- projects ----------------------------------------------------------------------------------


def _bucket_project(session: Session, rest: str) -> str | None:
    """The project of ``bucket/NAME/KEY``: its bucket's."""
    return session.scalar(select(Project.name).join(Bucket, Bucket.project_id == Project.id)
                          .where(Bucket.name == rest.split("/", 1)[0]))


def _stored_gb(session: Session, project_id: int) -> float:
    """What the project's buckets hold, in GB: one sum over their objects."""
    size = session.scalar(select(func.coalesce(func.sum(StoredObject.size), 0))
                          .join(Bucket, Bucket.id == StoredObject.bucket_id)
                          .where(Bucket.project_id == project_id))
    return projects.gigabytes(int(size or 0))


holders.register("bucket", _bucket_project)
projects.register_meter("storage_gb", _stored_gb)
