"""Signature Version 4 as Cumulo's S3 API checks it, with the time given (no clock): requests
signed by botocore's own signer verify, the smallest change to one fails, presigned URLs expire,
and an aws-chunked body's chunk signatures match AWS's documented example."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cumulo.storage.s3api import sigv4
from cumulo.storage.s3api.chunked import ChunkedDecoder
from cumulo.storage.s3api.sigv4 import SignatureError

KEY, SECRET = "CKTESTKEY0000000000", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _verify(method: str, url: str, headers: dict[str, str], *, now: datetime,
            secret: str = SECRET) -> bool:
    """What the S3 app does with a request: parse, check the time, recompute, compare."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    lower = {k.lower(): v for k, v in headers.items()}
    lower.setdefault("host", parts.netloc)
    pairs = sigv4.split_query(parts.query.encode())
    signed = (sigv4.parse_header(lower["authorization"], lower) if "authorization" in lower
              else sigv4.parse_query(dict(pairs)))
    sigv4.check_time(signed, now)
    payload = lower.get("x-amz-content-sha256", sigv4.UNSIGNED)
    canonical = sigv4.canonical_request(method, parts.path.encode(), pairs, lower, signed,
                                        payload)
    key = sigv4.signing_key(secret, signed.credential)
    return sigv4.matches(sigv4.signature(key, sigv4.string_to_sign(signed, canonical)),
                         signed.signature)


def _signed(method: str = "PUT", url: str = "http://127.0.0.1:8080/data/raw/a%20b.csv?tagging",
            body: bytes = b"a,b\n") -> tuple[dict[str, str], datetime]:
    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    at = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return headers, at


def test_a_request_botocore_signed_verifies() -> None:
    headers, at = _signed()
    assert _verify("PUT", "http://127.0.0.1:8080/data/raw/a%20b.csv?tagging", headers, now=at)


@pytest.mark.parametrize("change", ["secret", "path", "query", "header", "method"])
def test_any_change_fails_the_signature(change: str) -> None:
    headers, at = _signed()
    url, method, secret = "http://127.0.0.1:8080/data/raw/a%20b.csv?tagging", "PUT", SECRET
    if change == "secret":
        secret = "not-the-secret"
    elif change == "path":
        url = url.replace("a%20b", "a%20c")
    elif change == "query":
        url += "&x=1"
    elif change == "header":
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"other").hexdigest()
    else:
        method = "DELETE"
    assert not _verify(method, url, headers, now=at, secret=secret)


def test_clock_skew_over_15_minutes_is_refused() -> None:
    headers, at = _signed()
    url = "http://127.0.0.1:8080/data/raw/a%20b.csv?tagging"
    assert _verify("PUT", url, headers, now=at + timedelta(minutes=14))
    with pytest.raises(SignatureError) as caught:
        _verify("PUT", url, headers, now=at + timedelta(minutes=16))
    assert caught.value.code == "RequestTimeTooSkewed"
    with pytest.raises(SignatureError):
        _verify("PUT", url, headers, now=at - timedelta(minutes=16))


def test_presigned_urls_ours_and_botocores_verify_until_they_expire() -> None:
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    ours = sigv4.presign("GET", "http://127.0.0.1:8080/data/raw/x.csv", access_key=KEY,
                         secret=SECRET, expires=3600, now=now)
    assert _verify("GET", ours, {}, now=now + timedelta(minutes=59))
    with pytest.raises(SignatureError) as caught:
        _verify("GET", ours, {}, now=now + timedelta(minutes=61))
    assert caught.value.code == "AccessDenied" and "expired" in caught.value.message
    assert not _verify("PUT", ours, {}, now=now)  # a GET's URL does not PUT
    request = AWSRequest(method="GET", url="http://127.0.0.1:8080/data/raw/x.csv")
    S3SigV4QueryAuth(Credentials(KEY, SECRET), "s3", "us-east-1", expires=60).add_auth(request)
    assert _verify("GET", request.url, {}, now=datetime.now(UTC))
    with pytest.raises(SignatureError):
        sigv4.presign("GET", "http://h/b/k", access_key=KEY, secret=SECRET, expires=8 * 86400,
                      now=now)


# AWS's worked example of a signed aws-chunked upload ("Signature Calculations for the
# Authorization Header: Transferring Payload in Multiple Chunks"): 66560 bytes of 'a' in chunks
# of 64 KiB, with the example key.
_EXAMPLE = sigv4.Signed(sigv4.Credential("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3"),
                        [], "", "20130524T000000Z", presigned=False)
_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
_CHUNKS = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
           "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
           "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]


def _example_body(chunks: list[str] = _CHUNKS) -> bytes:
    data = b"a" * 66560
    pieces = [data[:65536], data[65536:], b""]
    return b"".join(f"{len(p):x};chunk-signature={s}\r\n".encode() + p + b"\r\n"
                    for p, s in zip(pieces, chunks, strict=True))


def _decoder() -> ChunkedDecoder:
    key = sigv4.signing_key(SECRET, _EXAMPLE.credential)
    return ChunkedDecoder(_SEED, lambda previous, digest: sigv4.signature(
        key, sigv4.chunk_string(_EXAMPLE, previous, digest)))


def test_chunk_signatures_match_aws_worked_example_in_any_slicing() -> None:
    body = _example_body()
    for step in (1 << 20, 7, 4096):
        decoder = _decoder()
        out = b"".join(b"".join(decoder.feed(body[i:i + step]))
                       for i in range(0, len(body), step))
        decoder.finish()
        assert out == b"a" * 66560 and decoder.done


def test_a_changed_chunk_or_a_cut_body_is_refused() -> None:
    body = bytearray(_example_body())
    body[200] = ord("b")  # one byte of the first chunk's data
    with pytest.raises(SignatureError) as caught:
        _decoder().feed(bytes(body))
    assert caught.value.code == "SignatureDoesNotMatch"
    decoder = _decoder()
    decoder.feed(_example_body()[:60000])
    with pytest.raises(SignatureError) as caught:
        decoder.finish()
    assert caught.value.code == "IncompleteBody"
    swapped = _example_body([_CHUNKS[1], _CHUNKS[0], _CHUNKS[2]])
    with pytest.raises(SignatureError):
        _decoder().feed(swapped)


def test_unsigned_chunks_with_a_trailing_checksum() -> None:
    decoder = ChunkedDecoder()
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    assert b"".join(decoder.feed(body)) == b"hello"
    decoder.finish()
    assert decoder.trailers == {"x-amz-checksum-crc32": "NhCmhg=="}
