"""S3's errors: an XML body with a code S3's clients know, and the status S3 gives it.

Cumulo's own errors (:mod:`cumulo.errors`) are turned into S3's once, here: a missing bucket is
``NoSuchBucket``, a refusal ``AccessDenied``, and so on, so that boto3 raises the exception
class its users catch (``s3.exceptions.NoSuchKey``) and the aws command prints what S3 would.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from cumulo.errors import (
    Conflict,
    CumuloError,
    Forbidden,
    Invalid,
    NotFound,
    QuotaExceeded,
    Unauthorized,
    Unavailable,
)
from cumulo.storage.keys import MAX_KEY_BYTES

__all__ = ["S3Error", "from_cumulo", "xml_error"]


class S3Error(Exception):
    def __init__(self, code: str, message: str, status: int = 400, *,
                 headers: dict[str, str] | None = None, **extra: str) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.headers = headers or {}
        self.extra = extra


def from_cumulo(exc: CumuloError, *, bucket: str | None, key: str | None) -> S3Error:
    """S3's error for one of Cumulo's, told apart by its class and the details it carries
    (``{"bucket"}``, ``{"bucket", "key"}``, ``{"bucket", "objects"}``)."""
    message, details = exc.message, exc.details or {}
    if isinstance(exc, NotFound):
        if "key" in details or ("bucket" not in details and key):
            return S3Error("NoSuchKey", message, 404)
        return S3Error("NoSuchBucket", message, 404)
    if isinstance(exc, Unauthorized):
        return S3Error("InvalidAccessKeyId", message, 403)
    if isinstance(exc, QuotaExceeded):
        return S3Error("QuotaExceeded", message, 403)
    if isinstance(exc, Forbidden):
        return S3Error("AccessDenied", message, 403)
    if isinstance(exc, Conflict):
        if "objects" in details:
            return S3Error("BucketNotEmpty", message, 409)
        if "bucket" in details and not key:
            return S3Error("BucketAlreadyOwnedByYou", message, 409)
        return S3Error("OperationAborted", message, 409)
    if isinstance(exc, Unavailable):
        retry = getattr(exc, "retry_after", None)
        return S3Error("SlowDown" if retry else "ServiceUnavailable", message, 503,
                       headers={"retry-after": str(int(retry or 1))})
    if isinstance(exc, Invalid):
        if "key" in details:
            too_long = key is not None and len(key.encode()) > MAX_KEY_BYTES
            return S3Error("KeyTooLongError" if too_long else "InvalidArgument", message, 400)
        if "bucket" in details:
            return S3Error("InvalidBucketName", message, 400)
        return S3Error("InvalidArgument", message, 400)
    return S3Error("InternalError", message, 500)


def xml_error(error: S3Error, *, resource: str, request_id: str) -> bytes:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in error.extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{error.code}</Code>'
            f"<Message>{escape(error.message)}</Message>{extra}"
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
            "</Error>").encode()
