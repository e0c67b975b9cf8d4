"""REST routes of object storage, under ``/api/v1/files``."""

from __future__ import annotations

import mimetypes
import re
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cumulo.access.projects import name_of, names_of
from cumulo.access.users import user_names
from cumulo.db import get_session
from cumulo.errors import CumuloError, Invalid
from cumulo.permissions import Holder, Permission, allow, body_project, query_project
from cumulo.principal import Principal, current_principal
from cumulo.services import services
from cumulo.storage import service
from cumulo.storage.backends import Backend, request_backend
from cumulo.storage.keys import is_bucket_name, validate_key
from cumulo.storage.models import Bucket, StoredObject
from cumulo.storage.requests import TALLY
from cumulo.storage.transfer import read_range, spool_body

__all__ = ["router"]



async def _count_request(request: Request) -> None:
    """Requests that name a bucket are tallied for metering as the S3 API's are, by S3's price
    classes (:mod:`cumulo.storage.requests`), refused ones too: the console's and the SDK's
    requests cost what the same work through S3 would. A presigned URL is made here, not
    served: not counted; nor is a name no bucket can have (the tally holds names, bounded)."""
    bucket = request.path_params.get("bucket")
    route = getattr(request.scope.get("route"), "path", "")
    if not bucket or "/presign/" in route or not is_bucket_name(bucket):
        return
    principal = current_principal(request)
    TALLY.count(bucket, principal.user_id, request.method,
                has_key="key" in request.path_params)


router = APIRouter(prefix="/files", tags=["files"], dependencies=[Depends(_count_request)])
DbSession = Annotated[Session, Depends(get_session)]
Caller = Annotated[Principal, Depends(current_principal)]


Storage = Annotated[Backend, Depends(request_backend)]


class BucketIn(BaseModel):
    name: str
    project: str | None = None


class BucketOut(BaseModel):
    name: str
    project: str | None
    objects: int
    bytes: int
    created_at: datetime
    created_by: str | None


class BucketList(BaseModel):
    buckets: list[BucketOut]


class ObjectOut(BaseModel):
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    created_by: str | None
    modified_at: datetime
    modified_by: str | None


class ObjectList(BaseModel):
    bucket: str
    prefix: str
    delimiter: str | None
    objects: list[ObjectOut]
    prefixes: list[str]
    next_cursor: str | None


class Deleted(BaseModel):
    bucket: str
    deleted: int


def _object_out(session: Session, bucket: str, rows: list[StoredObject]) -> list[ObjectOut]:
    names = user_names(session, {r.created_by for r in rows} | {r.modified_by for r in rows})
    return [
        ObjectOut(
            bucket=bucket, key=r.key, size=r.size, sha256=r.sha256, content_type=r.content_type,
            created_at=r.created_at, created_by=names.get(r.created_by),
            modified_at=r.modified_at, modified_by=names.get(r.modified_by),
        )
        for r in rows
    ]


def bucket_holder(request: Request) -> Holder | None:
    """The project of the route's bucket, for routes whose resource is a pattern
    (``bucket/raw/*``), which the decision point does not place in a project itself."""
    with services(request).sessions() as session:
        bucket = session.scalar(select(Bucket).where(
            Bucket.name == request.path_params["bucket"]))
        if bucket is None:
            return None
        return Holder(project=name_of(session, bucket.project_id))


@router.get("/buckets",
            dependencies=[allow("files:ListBuckets", "bucket/*", project=query_project)],
            response_model=BucketList, summary="List buckets (of one project: ?project=)")
def list_buckets(session: DbSession, project: str | None = None) -> BucketList:
    infos = service.list_buckets(session, project=project)
    names = user_names(session, {i.bucket.created_by for i in infos})
    homes = names_of(session, {i.bucket.project_id for i in infos})
    return BucketList(buckets=[
        BucketOut(name=i.bucket.name, objects=i.objects, bytes=i.bytes,
                  project=homes.get(i.bucket.project_id) if i.bucket.project_id else None,
                  created_at=i.bucket.created_at, created_by=names.get(i.bucket.created_by))
        for i in infos
    ])


@router.post("/buckets",
             dependencies=[allow("files:CreateBucket", "bucket/*", project=body_project)],
             status_code=201, response_model=BucketOut, summary="Create a bucket")
def create_bucket(body: BucketIn, session: DbSession, caller: Caller) -> BucketOut:
    bucket = service.create_bucket(session, caller, body.name, project=body.project)
    return BucketOut(name=bucket.name, project=body.project, objects=0, bytes=0,
                     created_at=bucket.created_at, created_by=caller.user_name)


@router.delete("/buckets/{bucket}",
               dependencies=[allow("files:DeleteBucket", "bucket/{bucket}")],
               response_model=Deleted, summary="Delete a bucket")
def delete_bucket(
    bucket: str, session: DbSession, storage: Storage, caller: Caller, recursive: bool = False
) -> Deleted:
    count = service.delete_bucket(session, storage, bucket, recursive=recursive)
    return Deleted(bucket=bucket, deleted=count)


@router.get("/buckets/{bucket}/objects",
            dependencies=[allow("files:List", "bucket/{bucket}")],
            response_model=ObjectList, summary="List objects")
def list_objects(
    bucket: str,
    session: DbSession,
    prefix: str = "",
    delimiter: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
    cursor: str | None = None,
) -> ObjectList:
    page = service.list_objects(session, bucket, prefix=prefix, delimiter=delimiter, limit=limit,
                                cursor=cursor)
    return ObjectList(
        bucket=bucket, prefix=prefix, delimiter=delimiter,
        objects=_object_out(session, bucket, page.objects), prefixes=page.prefixes,
        next_cursor=page.next_cursor,
    )


class _UnderPrefix(Permission):
    """``files:Delete`` on what is under the query's prefix (``bucket/raw/tmp/*``): whoever may
    delete there may ask; each object is then decided too (a deny on some of them holds)."""

    def resource_of(self, request: Request) -> str:
        prefix = request.query_params.get("prefix", "")
        return f"bucket/{request.path_params['bucket']}/{prefix}*"


@router.delete("/buckets/{bucket}/objects",
               dependencies=[Depends(_UnderPrefix("files:Delete", "bucket/{bucket}/*",
                                                  owner=bucket_holder))],
               response_model=Deleted,
               summary="Delete every object under a prefix")
def delete_prefix(
    bucket: str, session: DbSession, storage: Storage, caller: Caller,
    prefix: Annotated[str, Query()]
) -> Deleted:
    return Deleted(bucket=bucket, deleted=service.delete_prefix(session, storage, bucket, prefix,
                                                                principal=caller))


@router.put(
    "/buckets/{bucket}/objects/{key:path}",
    dependencies=[allow("files:Put", "bucket/{bucket}/{key}")],
    status_code=201,
                                                                response_model=ObjectOut,
    summary="Upload an object (the raw request body, streamed)",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}, "required": True}},
)
async def put_object(
    bucket: str, key: str, request: Request, session: DbSession, storage: Storage, caller: Caller
) -> ObjectOut:
    validate_key(key)
    announced = request.headers.get("content-length", "")
    # A missing bucket, or a size past the project's quota, fails before the body is read.
    await run_in_threadpool(service.ready_for_upload, session, bucket, key,
                            int(announced) if announced.isdigit() else None)
    tmp, size, sha = await spool_body(request, storage.spool_dir())
    content_type = request.headers.get("content-type") or ""
    if not content_type or content_type == "application/octet-stream":
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    try:
        row = await run_in_threadpool(
            service.put_object, session, storage, caller, bucket=bucket, key=key, tmp=tmp,
            size=size, sha256=sha, content_type=content_type,
        )
    finally:
        tmp.unlink(missing_ok=True)
    return (await run_in_threadpool(_object_out, session, bucket, [row]))[0]


# Types a browser shows without running anything in the console's origin; every other object
# (HTML, SVG, XML, scripts, anything unknown) downloads as a file instead of opening there.
_INLINE = frozenset({"text/plain", "text/csv", "application/json", "application/pdf",
                     "image/png", "image/jpeg", "image/gif", "image/webp"})


def _headers(row: StoredObject) -> dict[str, str]:
    media = row.content_type.split(";")[0].strip().lower()
    name = row.key.rsplit("/", 1)[-1]
    return {
        "content-type": row.content_type,
        "etag": f'"{row.sha256}"',
        "x-cumulo-sha256": row.sha256,
        "last-modified": format_datetime(row.modified_at, usegmt=True),
        "accept-ranges": "bytes",
        # A stored object is user data served from the console's origin: never sniffed into
        # something runnable, never given the origin's scripts or requests if opened.
        "x-content-type-options": "nosniff",
        "content-security-policy": "sandbox; default-src 'none'",
        "content-disposition": ("inline" if media in _INLINE else "attachment")
        + f"; filename*=UTF-8''{quote(name, safe='')}",
    }


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """One 'bytes=a-b' range to (start, length)."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise Invalid(f"Range {header!r} is not of the form bytes=START-END")
    first, last = match.groups()
    if first == "":
        start = max(size - int(last), 0)
        end = size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"Range {header!r} lies outside the object's {size} bytes")
    return start, end - start + 1


class RangeNotSatisfiable(Invalid):
    status = 416
    code = "range_not_satisfiable"


_OBJECT_BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


@router.get(
    "/buckets/{bucket}/objects/{key:path}",
    dependencies=[allow("files:Get", "bucket/{bucket}/{key}")],
    summary="Download an object (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "the object, as its own content type", "content": _OBJECT_BYTES},
        206: {"description": "the part the Range header asks for", "content": _OBJECT_BYTES},
        416: {"description": f"{RangeNotSatisfiable.code}: the range lies outside the object",
              "content": {"application/json": {  # the server's error body (server/openapi.py)
                  "schema": {"$ref": "#/components/schemas/Error"}}}},
    },
    openapi_extra={"parameters": [{
        "name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "one range: bytes=START-END, bytes=START- or bytes=-LAST"}]},
)
def get_object(bucket: str, key: str, request: Request, session: DbSession,
               storage: Storage) -> StreamingResponse:
    validate_key(key)
    row = service.get_object(session, bucket, key)
    headers = _headers(row)
    status, start, length = 200, 0, row.size
    if request.headers.get("range"):
        start, length = _parse_range(request.headers["range"], row.size)
        status = 206
        headers["content-range"] = f"bytes {start}-{start + length - 1}/{row.size}"
    headers["content-length"] = str(length)
    try:
        reader = storage.open(service.blob_key(bucket, key), offset=start)
    except FileNotFoundError as exc:
        raise CumuloError(f"object {bucket}/{key} is listed but its bytes are missing") from exc
    return StreamingResponse(read_range(reader, length), status_code=status, headers=headers,
                             media_type=row.content_type)


@router.head("/buckets/{bucket}/objects/{key:path}",
             dependencies=[allow("files:Get", "bucket/{bucket}/{key}")],
             summary="An object's headers",
             responses={200: {"description": "the object's headers, its own content type "
                                             "among them", "content": _OBJECT_BYTES}})
def head_object(bucket: str, key: str, session: DbSession) -> Response:
    row = service.get_object(session, bucket, validate_key(key))
    return Response(headers={**_headers(row), "content-length": str(row.size)})


@router.get("/buckets/{bucket}/info/{key:path}",
            dependencies=[allow("files:Get", "bucket/{bucket}/{key}")], response_model=ObjectOut,
            summary="An object's metadata as JSON")
def object_info(bucket: str, key: str, session: DbSession) -> ObjectOut:
    row = service.get_object(session, bucket, validate_key(key))
    return _object_out(session, bucket, [row])[0]


@router.delete("/buckets/{bucket}/objects/{key:path}",
               dependencies=[allow("files:Delete", "bucket/{bucket}/{key}")],
               response_model=Deleted,
               summary="Delete an object")
def delete_object(bucket: str, key: str, session: DbSession, storage: Storage) -> Deleted:
    service.delete_object(session, storage, bucket, key)
    return Deleted(bucket=bucket, deleted=1)


class PresignIn(BaseModel):
    method: str = "GET"  # GET (download) or PUT (upload)
    expires_in: str = "1h"


class Presigned(BaseModel):
    url: str
    method: str
    expires_at: datetime


@router.post("/buckets/{bucket}/presign/{key:path}",
             dependencies=[allow("files:Get", "bucket/{bucket}/{key}")],
             response_model=Presigned,
             summary="A presigned S3 URL for one object (GET, or PUT with files:Put)")
def presign(bucket: str, key: str, body: PresignIn, request: Request, session: DbSession,
            caller: Caller) -> Presigned:
    """A URL anyone holding it may GET (or PUT) the object with, until it expires: signed
    with an S3 key acting as the caller's token, so it stops working when that does."""
    from datetime import UTC, timedelta

    from cumulo.access.keys import key_of_token
    from cumulo.storage.s3api.sigv4 import SignatureError
    from cumulo.storage.s3api.sigv4 import presign as sign
    from cumulo.units import parse_duration

    validate_key(key)
    method = body.method.upper()
    if method not in ("GET", "PUT"):
        raise Invalid(f"a presigned URL is for GET or PUT, not {body.method!r}")
    seconds = int(parse_duration(body.expires_in, what="--expires"))
    if method == "PUT":
        caller.require("files:Put", f"bucket/{bucket}/{key}")
        service.get_bucket(session, bucket)
    else:
        service.get_object(session, bucket, key)
    key_id, secret = key_of_token(session, caller)
    now = datetime.now(UTC)
    base = services(request).settings.public_urls[0]
    try:
        url = sign(method, f"{base}/{quote(bucket)}/{quote(key)}", access_key=key_id,
                   secret=secret, expires=seconds, now=now)
    except SignatureError as exc:
        raise Invalid(exc.message) from None
    return Presigned(url=url, method=method, expires_at=now + timedelta(seconds=seconds))
