"""The event stream encoder, held to botocore's own reader (``botocore.eventstream``) and to
the parser boto3's Kinesis client runs on SubscribeToShard's answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser

from cumulo.streams import eventstream


def _messages(data: bytes, *, chunk: int | None = None) -> list[Any]:
    buffer = EventStreamBuffer()
    out = []
    step = chunk or len(data) or 1
    for at in range(0, len(data), step):
        buffer.add_data(data[at:at + step])
        out += list(buffer)
    return out


def test_round_trip_through_botocore() -> None:
    headers: dict[str, eventstream.HeaderValue] = {
        ":message-type": "event", "text": "héllo", "raw": b"\x00\x01\xff", "yes": True,
        "no": False, "small": -7, "large": 1 << 40}
    (message,) = _messages(eventstream.encode(headers, b"payload"))
    assert message.headers == headers
    assert message.payload == b"payload"
    (empty,) = _messages(eventstream.encode({}))
    assert empty.headers == {} and empty.payload == b""


def test_many_messages_in_any_chunks() -> None:
    data = b"".join(eventstream.event("E", {"n": i}) for i in range(20))
    for chunk in (1, 7, 64, len(data)):
        got = _messages(data, chunk=chunk)
        assert [json.loads(m.payload)["n"] for m in got] == list(range(20))
        assert {m.headers[":event-type"] for m in got} == {"E"}


def test_a_corrupt_message_is_refused() -> None:
    good = bytearray(eventstream.event("E", {"n": 1}))
    good[-6] ^= 0xFF  # in the payload: the message crc no longer matches
    with pytest.raises(ChecksumMismatch):
        _messages(bytes(good))
    prelude = bytearray(eventstream.event("E", {"n": 1}))
    prelude[2] ^= 0x01  # the total length: the prelude crc no longer matches
    with pytest.raises(ChecksumMismatch):
        _messages(bytes(prelude))


def test_bad_headers() -> None:
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        eventstream.encode({"x" * 256: "v"})
    with pytest.raises(ValueError, match="65535"):
        eventstream.encode({"big": "v" * 70_000})


class _Body:
    """The bytes of an HTTP answer, as urllib3's response hands them to botocore."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data, self._chunk = data, chunk

    def stream(self) -> Iterator[bytes]:
        for at in range(0, len(self._data), self._chunk):
            yield self._data[at:at + self._chunk]

    def close(self) -> None:
        pass


def _kinesis_stream(data: bytes) -> EventStream:
    model = botocore.session.get_session().get_service_model("kinesis")
    shape = model.operation_model("SubscribeToShard").output_shape.members["EventStream"]
    return EventStream(_Body(data, 5), shape, EventStreamJSONParser(), "SubscribeToShard")


def test_kinesis_events_as_boto3_reads_them() -> None:
    data = (eventstream.event("initial-response", {})
            + eventstream.event("SubscribeToShardEvent", {
                "Records": [{"SequenceNumber": "7", "Data": "aGk=", "PartitionKey": "k",
                             "ApproximateArrivalTimestamp": 1700000000.5}],
                "ContinuationSequenceNumber": "7", "MillisBehindLatest": 0})
            + eventstream.exception("ResourceNotFoundException", "gone"))
    events = _kinesis_stream(data)
    assert events.get_initial_response().headers[":event-type"] == "initial-response"
    got = iter(events)
    first = next(got)["SubscribeToShardEvent"]
    assert first["Records"][0]["Data"] == b"hi"
    assert first["ContinuationSequenceNumber"] == "7"
    with pytest.raises(EventStreamError) as caught:
        next(got)
    assert caught.value.response["Error"] == {"Code": "ResourceNotFoundException",
                                              "Message": "gone"}
    unmodeled = _kinesis_stream(eventstream.event("initial-response", {})
                                + eventstream.error("LimitExceededException", "too many"))
    unmodeled.get_initial_response()
    with pytest.raises(EventStreamError) as caught:
        list(unmodeled)
    assert caught.value.response["Error"]["Code"] == "LimitExceededException"
