"""AWS Signature Version 4, as S3 checks it: pure functions over a request's parts.

A request is signed in its ``Authorization`` header (``AWS4-HMAC-SHA256 Credential=AKID/
DATE/REGION/s3/aws4_request, SignedHeaders=..., Signature=...``) or in its query string (a
presigned URL: ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-SignedHeaders``, ``X-Amz-Signature``). Either way the signature is an HMAC over the
*canonical request* (method, path, query, the signed headers, the payload's hash), with a key
derived from the secret, the date, the region and the service. The payload's hash is the
``x-amz-content-sha256`` header: the body's SHA-256 (checked once the body is read),
``UNSIGNED-PAYLOAD``, or one of the ``STREAMING-...`` values of an ``aws-chunked`` body, whose
chunks are signed one by one (:mod:`cumulo.storage.s3api.chunked`).

Everything here is pure: the time comes in as an argument, so the tests control it.
Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes

__all__ = ["ALGORITHM", "EMPTY_SHA256", "MAX_SKEW", "STREAMING", "UNSIGNED", "Credential",
           "SignatureError", "Signed", "canonical_query", "canonical_uri", "chunk_string",
           "parse_header", "parse_query", "presign", "signature", "signing_key",
           "string_to_sign", "trailer_string"]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING = frozenset({"STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                       "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                       "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
MAX_SKEW = timedelta(minutes=15)  # a signed request's time may be this far from ours
MAX_EXPIRES = 7 * 24 * 3600  # a presigned URL's longest life, as S3's


class SignatureError(Exception):
    """Why a request's signature is not accepted; ``code`` is S3's error code for it."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Credential:
    """``AKID/20261204/us-east-1/s3/aws4_request``."""

    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @classmethod
    def parse(cls, text: str) -> Credential:
        parts = text.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
            raise SignatureError("AuthorizationHeaderMalformed",
                                 f"the credential {text!r} is not AKID/DATE/REGION/SERVICE/"
                                 "aws4_request", 400)
        return cls(*parts[:4])


@dataclass(frozen=True)
class Signed:
    """What a request says of its signature."""

    credential: Credential
    signed_headers: list[str]
    signature: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    presigned: bool
    expires: int | None = None  # seconds, for a presigned URL


def parse_header(authorization: str, headers: dict[str, str]) -> Signed:
    """The ``Authorization`` header's parts; ``headers``: the request's, lower-case names."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("InvalidArgument" if algorithm == "AWS" else
                             "AuthorizationHeaderMalformed",
                             f"only {ALGORITHM} signatures are taken (Signature Version 4), "
                             f"not {algorithm!r}", 400)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, _, value = item.strip().partition("=")
        fields[name] = value
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
    if missing:
        raise SignatureError("AuthorizationHeaderMalformed",
                             f"the Authorization header lacks {', '.join(missing)}", 400)
    amz_date = headers.get("x-amz-date", "")
    if not amz_date:
        raise SignatureError("AccessDenied",
                             "a signed request needs its time in the X-Amz-Date header")
    return Signed(Credential.parse(fields["Credential"]), fields["SignedHeaders"].split(";"),
                  fields["Signature"], amz_date, presigned=False)


def parse_query(query: dict[str, str]) -> Signed:
    """A presigned URL's parts, from its decoded query parameters."""
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError("AuthorizationQueryParametersError",
                             f"X-Amz-Algorithm must be {ALGORITHM}", 400)
    missing = [f for f in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                           "X-Amz-SignedHeaders", "X-Amz-Signature") if not query.get(f)]
    if missing:
        raise SignatureError("AuthorizationQueryParametersError",
                             f"the presigned URL lacks {', '.join(missing)}", 400)
    try:
        expires = int(query["X-Amz-Expires"])
    except ValueError:
        raise SignatureError("AuthorizationQueryParametersError",
                             "X-Amz-Expires must be a number of seconds", 400) from None
    if not 1 <= expires <= MAX_EXPIRES:
        raise SignatureError("AuthorizationQueryParametersError",
                             f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds "
                             "(7 days)", 400)
    return Signed(Credential.parse(query["X-Amz-Credential"]),
                  query["X-Amz-SignedHeaders"].split(";"), query["X-Amz-Signature"],
                  query["X-Amz-Date"], presigned=True, expires=expires)


def request_time(amz_date: str) -> datetime:
    try:
        return datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("AccessDenied",
                             f"the request's time {amz_date!r} is not YYYYMMDDTHHMMSSZ") from None


def check_time(signed: Signed, now: datetime) -> None:
    """A header-signed request within MAX_SKEW of ``now``; a presigned URL not expired."""
    at = request_time(signed.amz_date)
    if at.strftime("%Y%m%d") != signed.credential.date:
        raise SignatureError("SignatureDoesNotMatch",
                             "the credential's date is not the request's date")
    if signed.presigned:
        assert signed.expires is not None
        ends = at + timedelta(seconds=signed.expires)
        if now > ends:
            raise SignatureError("AccessDenied", "Request has expired: the presigned URL "
                                 f"expired at {ends:%Y-%m-%d %H:%M:%S} UTC; make a new one")
        if at - now > MAX_SKEW:
            raise SignatureError("AccessDenied", "the presigned URL is dated in the future")
    elif abs(now - at) > MAX_SKEW:
        raise SignatureError("RequestTimeTooSkewed",
                             "The difference between the request time and the server's time "
                             f"is too large ({abs(now - at).total_seconds():.0f} s; at most "
                             f"{MAX_SKEW.total_seconds():.0f}): set the client's clock")


def _encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def canonical_uri(raw_path: bytes) -> str:
    """The path as S3 signs it: decoded once, then each byte but the unreserved and '/'
    percent-encoded (S3 does not encode twice, nor normalize ``..``)."""
    return quote_from_bytes(unquote_to_bytes(raw_path), safe="-_.~/")


def split_query(raw_query: bytes) -> list[tuple[str, str]]:
    """The query's name=value pairs, decoded (``+`` stays a plus, as S3 reads it)."""
    pairs = []
    for item in raw_query.decode("latin-1").split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_query(pairs: list[tuple[str, str]], *, presigned: bool) -> str:
    items = sorted((_encode(k), _encode(v)) for k, v in pairs
                   if not (presigned and k == "X-Amz-Signature"))
    return "&".join(f"{k}={v}" for k, v in items)


def _canonical_headers(names: list[str], headers: dict[str, str]) -> str:
    lines = []
    for name in names:
        if name not in headers:
            raise SignatureError("SignatureDoesNotMatch",
                                 f"the signed header {name!r} is not in the request")
        lines.append(f"{name}:{' '.join(headers[name].split())}\n")
    return "".join(lines)


def canonical_request(method: str, raw_path: bytes, pairs: list[tuple[str, str]],
                      headers: dict[str, str], signed: Signed, payload_hash: str) -> str:
    return "\n".join([method, canonical_uri(raw_path),
                      canonical_query(pairs, presigned=signed.presigned),
                      _canonical_headers(signed.signed_headers, headers),
                      ";".join(signed.signed_headers), payload_hash])


def string_to_sign(signed: Signed, canonical: str) -> str:
    return "\n".join([ALGORITHM, signed.amz_date, signed.credential.scope,
                      hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()])


def signing_key(secret: str, credential: Credential) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), credential.date.encode(), hashlib.sha256).digest()
    for part in (credential.region, credential.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def chunk_string(signed: Signed, previous: str, chunk_sha256: str) -> str:
    """What one chunk of an ``aws-chunked`` body signs: it chains to the signature before."""
    return "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signed.amz_date, signed.credential.scope,
                      previous, EMPTY_SHA256, chunk_sha256])


def trailer_string(signed: Signed, previous: str, trailer_sha256: str) -> str:
    return "\n".join(["AWS4-HMAC-SHA256-TRAILER", signed.amz_date, signed.credential.scope,
                      previous, trailer_sha256])


def presign(method: str, url: str, *, access_key: str, secret: str, expires: int,
            now: datetime, region: str = "us-east-1") -> str:
    """A presigned URL for ``method`` on ``url`` (``http://host:port/BUCKET/KEY``), as
    boto3's ``generate_presigned_url`` makes it: anyone holding it may make that one request
    until it expires, as the key's owner."""
    from urllib.parse import urlsplit

    if not 1 <= expires <= MAX_EXPIRES:
        raise SignatureError("InvalidArgument", f"a presigned URL lasts 1 s to {MAX_EXPIRES} s "
                             "(7 days)", 400)
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    credential = Credential(access_key, amz_date[:8], region, "s3")
    pairs = [("X-Amz-Algorithm", ALGORITHM),
             ("X-Amz-Credential", f"{access_key}/{credential.scope}"),
             ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)),
             ("X-Amz-SignedHeaders", "host")]
    signed = Signed(credential, ["host"], "", amz_date, presigned=True, expires=expires)
    canonical = canonical_request(method, parts.path.encode(), pairs, {"host": parts.netloc},
                                  signed, UNSIGNED)
    sig = signature(signing_key(secret, credential), string_to_sign(signed, canonical))
    query = canonical_query(pairs, presigned=True)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{query}&X-Amz-Signature={sig}"


def matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
