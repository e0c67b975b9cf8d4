"""AWS's event stream framing (``application/vnd.amazon.eventstream``): how a service sends
many events on one HTTP response, as Kinesis's SubscribeToShard does. A message::

    prelude   total length u32 | headers length u32 | crc32(the two lengths) u32
    headers   name length u8 | name (utf-8) | type u8 | value     (repeated)
    payload   bytes (JSON for Kinesis's events)
    crc32     of everything before it, prelude crc included

big-endian throughout. Header values written here: booleans (types 0 and 1: no value), 32-
and 64-bit integers (4, 5), byte arrays (6: u16 length, bytes) and strings (7: u16 length,
utf-8). botocore's ``botocore.eventstream`` is the reader the tests hold this to.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["CONTENT_TYPE", "HeaderValue", "encode", "error", "event", "exception"]

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PRELUDE = struct.Struct("!II")
_CRC = struct.Struct("!I")
_SHORT = struct.Struct("!H")
_INT32 = struct.Struct("!i")
_INT64 = struct.Struct("!q")

HeaderValue = str | bytes | bool | int


def _header(name: str, value: HeaderValue) -> bytes:
    encoded = name.encode()
    if not 0 < len(encoded) < 256:
        raise ValueError(f"an event stream header name is 1 to 255 bytes, not {len(encoded)}")
    head = bytes([len(encoded)]) + encoded
    if isinstance(value, bool):  # before int: a bool is an int
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        if -(1 << 31) <= value < 1 << 31:
            return head + b"\x04" + _INT32.pack(value)
        return head + b"\x05" + _INT64.pack(value)
    raw, kind = (value, 6) if isinstance(value, bytes) else (value.encode(), 7)
    if len(raw) > 0xFFFF:
        raise ValueError(f"header {name!r}: a value is at most 65535 bytes, not {len(raw)}")
    return head + bytes([kind]) + _SHORT.pack(len(raw)) + raw


def encode(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    """One message: ``headers`` (in order) and ``payload``, framed with both checksums."""
    packed = b"".join(_header(name, value) for name, value in headers.items())
    prelude = _PRELUDE.pack(12 + len(packed) + len(payload) + 4, len(packed))
    prelude += _CRC.pack(zlib.crc32(prelude))
    body = prelude + packed + payload
    return body + _CRC.pack(zlib.crc32(body))


def event(event_type: str, body: Any) -> bytes:
    """An event whose payload is ``body`` as JSON (Kinesis's ``initial-response`` and
    ``SubscribeToShardEvent``)."""
    return encode({":message-type": "event", ":event-type": event_type,
                   ":content-type": "application/json"},
                  orjson.dumps(body))


def exception(kind: str, message: str) -> bytes:
    """An error the service models in the event stream (Kinesis's
    ResourceNotFoundException, ResourceInUseException, InternalFailureException...): the
    SDK raises it by that name."""
    return encode({":message-type": "exception", ":exception-type": kind,
                   ":content-type": "application/json"},
                  orjson.dumps({"message": message}))


def error(code: str, message: str) -> bytes:
    """An error the service does not model in the stream: the SDK raises it by ``code``."""
    return encode({":message-type": "error", ":error-code": code[:200],
                   ":error-message": message[:4000]})
