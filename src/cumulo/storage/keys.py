"""Rules for bucket names and object keys, shared by the server, the SDK and the CLI."""

from __future__ import annotations

import re

from cumulo.errors import Invalid

__all__ = ["MAX_KEY_BYTES", "is_bucket_name", "split_path", "validate_bucket", "validate_key"]

MAX_KEY_BYTES = 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_bucket_name(name: str) -> bool:
    """Whether a bucket could have this name (:func:`validate_bucket` says what is wrong)."""
    return bool(_BUCKET.match(name)) and ".." not in name


def validate_bucket(name: str) -> str:
    if not is_bucket_name(name):
        raise Invalid(
            f"bucket name {name!r} is not allowed: use 3-63 characters of a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit, e.g. 'data' or 'ml-models'",
            details={"bucket": name},
        )
    return name


# Unicode's bidirectional controls: they reorder how text is shown (U+202E shows 'txt.exe' for
# 'exe.txt'), so a key could read as another.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def validate_key(key: str) -> str:
    """Refuse keys that could escape a folder or that no backend stores faithfully."""

    def bad(why: str) -> Invalid:
        return Invalid(f"object key {key[:80]!r} is not allowed: {why}", details={"key": key[:200]})

    if not key:
        raise bad("it is empty")
    if "\x00" in key:
        raise bad("it contains a NUL byte")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise bad(f"it is {len(key.encode())} bytes long; the limit is {MAX_KEY_BYTES}")
    if key.startswith("/"):
        raise bad("it starts with '/'; keys are relative to the bucket, e.g. 'raw/2026/a.csv'")
    if key.endswith("/"):
        raise bad("it ends with '/'; name the object, e.g. 'raw/2026/a.csv'")
    segments = key.split("/")
    if any(s in ("..", ".") for s in segments):
        raise bad("it has a '.' or '..' segment")
    if any(not s for s in segments):
        raise bad("it has an empty segment ('//')")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key):
        raise bad("it contains a control character")
    if "\ufffd" in key:
        # What a URL's invalid UTF-8 decodes to: two different keys would become one.
        raise bad("it is not valid UTF-8 (or holds U+FFFD, the replacement character)")
    if any(c in _BIDI for c in key):
        raise bad("it contains a bidirectional control character, which makes a key read "
                  "other than it is")
    if any(len(s.encode()) > 255 for s in segments):
        raise bad("a segment between '/' is over 255 bytes (file systems refuse longer names)")
    return key


def split_path(path: str) -> tuple[str, str]:
    """'data/raw/a.csv' -> ('data', 'raw/a.csv'); 'data' or 'data/' -> ('data', '')."""
    path = path.removeprefix("cumulo://")
    bucket, _, key = path.partition("/")
    return validate_bucket(bucket), key
