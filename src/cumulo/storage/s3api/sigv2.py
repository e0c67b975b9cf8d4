"""AWS's older signature (Signature Version 2), which S3 still takes and which some clients
use by default for one thing: presigned URLs (``boto3``'s ``generate_presigned_url`` and
``aws s3 presign`` against an endpoint of one's own: ``?AWSAccessKeyId=..&Expires=..&
Signature=..``), and old tools' ``Authorization: AWS AKID:SIGNATURE`` header. An HMAC-SHA1 over
the method, Content-MD5, Content-Type, the date (or the expiry), the ``x-amz-*`` headers and
the path with S3's sub-resources. Pure functions, the time given.
Reference: https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import unquote

from cumulo.storage.s3api.sigv4 import MAX_SKEW, SignatureError

__all__ = ["string_to_sign", "verify"]

# The query parameters that are part of what is signed.
_SUBRESOURCES = frozenset({
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
    "policy", "requestPayment", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId",
    "versioning", "versions", "website", "object-lock", "retention", "legal-hold",
})


def string_to_sign(method: str, raw_path: bytes, raw_query: bytes, headers: dict[str, str],
                   date: str) -> str:
    amz = sorted((k, " ".join(v.split())) for k, v in headers.items()
                 if k.startswith("x-amz-"))
    resource = raw_path.decode("latin-1")
    pairs = []
    for item in raw_query.decode("latin-1").split("&"):
        name, eq, value = item.partition("=")
        if name in _SUBRESOURCES:
            pairs.append((name, unquote(value) if eq else None))
    if pairs:
        pairs.sort(key=lambda p: p[0])
        resource += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in pairs)
    return "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""),
                      date, *(f"{k}:{v}" for k, v in amz), resource])


def _sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode("utf-8", "surrogateescape"),
                                     hashlib.sha1).digest()).decode()


def verify(method: str, raw_path: bytes, raw_query: bytes, query: dict[str, str],
           headers: dict[str, str], secret: str, now: datetime) -> None:
    """Check a Signature Version 2 request (presigned, or signed in its header); raises
    SignatureError when it does not hold."""
    if "AWSAccessKeyId" in query:
        expires = query.get("Expires", "")
        if not expires.isdigit():
            raise SignatureError("AccessDenied", "a presigned URL needs Expires (Unix seconds)")
        if now.timestamp() > int(expires):
            at = datetime.fromtimestamp(int(expires), UTC)
            raise SignatureError("AccessDenied", "Request has expired: the presigned URL "
                                 f"expired at {at:%Y-%m-%d %H:%M:%S} UTC; make a new one")
        claimed = query.get("Signature", "")
        date = expires
        query_bytes = b"&".join(p for p in raw_query.split(b"&")
                                if not p.startswith((b"AWSAccessKeyId=", b"Expires=",
                                                     b"Signature=")))
    else:
        claimed = headers.get("authorization", "").rpartition(":")[2]
        date = "" if "x-amz-date" in headers else headers.get("date", "")
        sent = headers.get("x-amz-date") or headers.get("date") or ""
        try:
            from email.utils import parsedate_to_datetime

            at = parsedate_to_datetime(sent)
        except (TypeError, ValueError):
            raise SignatureError("AccessDenied", "a signed request needs its time in the "
                                 "Date or X-Amz-Date header") from None
        if abs(now - at) > MAX_SKEW:
            raise SignatureError("RequestTimeTooSkewed", "The difference between the request "
                                 "time and the server's time is too large: set the client's "
                                 "clock")
        query_bytes = raw_query
    # A bucket's own resource is signed as "/BUCKET/" by some clients (botocore), "/BUCKET"
    # by others.
    paths = [raw_path]
    if raw_path.count(b"/") == 1 and len(raw_path) > 1:
        paths.append(raw_path + b"/")
    if not any(hmac.compare_digest(_sign(secret, string_to_sign(
            method, path, query_bytes, headers, date)).encode(), claimed.encode())
            for path in paths):
        raise SignatureError("SignatureDoesNotMatch", "The request signature we calculated "
                             "does not match the signature you provided. Check your key and "
                             "signing method.")


def access_key(query: dict[str, str], headers: dict[str, str]) -> str:
    if "AWSAccessKeyId" in query:
        return query["AWSAccessKeyId"]
    return headers.get("authorization", "")[4:].rpartition(":")[0].strip()
