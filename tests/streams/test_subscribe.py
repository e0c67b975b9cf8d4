"""Push subscriptions against a real server: boto3's own Kinesis client (registered consumers,
SubscribeToShard's event stream over HTTP/1.1) and the SDK's ``client.streams.subscribe``;
their errors, the end of a closed shard, and the bound on how many are open at once. Nothing
here times anything: bench/streams.py measures the latency."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from cumulo.errors import NotFound, Unavailable
from tests.services import Cumulo, start_cumulo

FIRST = "shardId-000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("subscribe") / ".cumulo")
    yield cumulo
    cumulo.stop()


def _kinesis(server: Cumulo, key: dict[str, Any]) -> Any:
    return boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}, read_timeout=30))


@pytest.fixture(scope="module")
def kinesis(server: Cumulo) -> Any:
    return _kinesis(server, server.client().keys.create("subscribe"))


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


def _stream(kinesis: Any, shards: int = 1) -> tuple[str, str]:
    name = "p" + uuid.uuid4().hex[:10]
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"]
    return name, arn


def _consumer(kinesis: Any, arn: str, name: str = "reader") -> str:
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=name)["Consumer"]
    return str(consumer["ConsumerARN"])


def _events(answer: dict[str, Any], records: int) -> list[dict[str, Any]]:
    """SubscribeToShardEvents until ``records`` records came (heartbeats included)."""
    events, seen = [], 0
    for event in answer["EventStream"]:
        events.append(event["SubscribeToShardEvent"])
        seen += len(events[-1]["Records"])
        if seen >= records:
            break
    return events


def _once_free(kinesis: Any, consumer: str, position: dict[str, str]) -> dict[str, Any]:
    """Subscribe once the server has seen the consumer's last subscription closed (one at a
    time on a shard)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            answer: dict[str, Any] = kinesis.subscribe_to_shard(
                ConsumerARN=consumer, ShardId=FIRST, StartingPosition=position)
            return answer
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException" or \
                    time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def test_subscribe_to_shard_through_boto3(kinesis: Any) -> None:
    name, arn = _stream(kinesis)
    consumer = _consumer(kinesis, arn)
    kinesis.put_record(StreamName=name, Data=b"before", PartitionKey="k")
    answer = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                        StartingPosition={"Type": "LATEST"})
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == \
        "application/vnd.amazon.eventstream"
    put = [kinesis.put_record(StreamName=name, Data=f"r{i}".encode(),
                              PartitionKey=f"k{i}")["SequenceNumber"] for i in range(5)]
    events = _events(answer, 5)
    answer["EventStream"].close()
    got = [r for e in events for r in e["Records"]]
    assert [r["Data"] for r in got] == [f"r{i}".encode() for i in range(5)]  # not "before"
    assert [r["SequenceNumber"] for r in got] == put
    assert got[0]["PartitionKey"] == "k0" and got[0]["ApproximateArrivalTimestamp"]
    assert events[-1]["ContinuationSequenceNumber"] == put[-1]
    assert all(e["MillisBehindLatest"] >= 0 for e in events)
    # From a continuation, on: no record again, none skipped. From the start: all of them.
    kinesis.put_record(StreamName=name, Data=b"r5", PartitionKey="k")
    again = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId=FIRST,
        StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": put[-1]})
    assert [r["Data"] for e in _events(again, 1) for r in e["Records"]] == [b"r5"]
    again["EventStream"].close()
    oldest = _once_free(kinesis, consumer, {"Type": "TRIM_HORIZON"})
    assert [r["Data"] for e in _events(oldest, 7) for r in e["Records"]] == [
        b"before", *[f"r{i}".encode() for i in range(6)]]
    oldest["EventStream"].close()


def test_consumer_registration(kinesis: Any) -> None:
    name, arn = _stream(kinesis)
    consumer = _consumer(kinesis, arn, "etl")
    assert consumer.startswith(f"{arn}/consumer/etl:")
    with pytest.raises(ClientError) as caught:
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="etl")
    assert _code(caught) == "ResourceInUseException"
    described = kinesis.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]
    assert described["ConsumerName"] == "etl" and described["StreamARN"] == arn
    assert described["ConsumerStatus"] == "ACTIVE"
    assert kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="etl")[
        "ConsumerDescription"]["ConsumerARN"] == consumer
    _consumer(kinesis, arn, "audit")
    listed = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=1)
    assert [c["ConsumerName"] for c in listed["Consumers"]] == ["audit"]
    rest = kinesis.list_stream_consumers(StreamARN=arn, NextToken=listed["NextToken"])
    assert [c["ConsumerName"] for c in rest["Consumers"]] == ["etl"]
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "ConsumerCount"] == 2
    kinesis.deregister_stream_consumer(ConsumerARN=consumer)
    with pytest.raises(ClientError) as caught:
        kinesis.describe_stream_consumer(ConsumerARN=consumer)
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:  # its ARN names it no more
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                   StartingPosition={"Type": "LATEST"})
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="etl")
    assert _code(caught) == "ResourceNotFoundException"
    # Bad input: an unknown stream, a name Kinesis refuses, an ARN that is not one, too many.
    with pytest.raises(ClientError) as caught:
        kinesis.register_stream_consumer(StreamARN=arn + "-nope", ConsumerName="x")
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        kinesis.describe_stream_consumer(
            ConsumerARN="arn:aws:kinesis:us-east-1:000000000000:stream/x/consumer/y:notatime")
    assert _code(caught) == "InvalidArgumentException"
    for i in range(19):
        _consumer(kinesis, arn, f"c{i:02d}")
    with pytest.raises(ClientError) as caught:
        _consumer(kinesis, arn, "one-too-many")
    assert _code(caught) == "LimitExceededException"
    assert len(kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]) == 20
    # Deleting the stream deletes its consumers.
    kinesis.delete_stream(StreamName=name)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    assert kinesis.list_stream_consumers(StreamARN=arn)["Consumers"] == []


def test_subscribe_errors(server: Cumulo, kinesis: Any) -> None:
    name, arn = _stream(kinesis)
    consumer = _consumer(kinesis, arn)
    with pytest.raises(ClientError) as caught:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000009",
                                   StartingPosition={"Type": "LATEST"})
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                   StartingPosition={"Type": "AT_SEQUENCE_NUMBER",
                                                     "SequenceNumber": "abc"})
    assert _code(caught) == "InvalidArgumentException"
    with pytest.raises(ClientError) as caught:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                   StartingPosition={"Type": "AT_TIMESTAMP"})
    assert _code(caught) == "InvalidArgumentException"
    # One subscription per consumer and shard at a time; another consumer may.
    first = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                       StartingPosition={"Type": "LATEST"})
    with pytest.raises(ClientError) as caught:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                   StartingPosition={"Type": "LATEST"})
    assert _code(caught) == "ResourceInUseException"
    other = kinesis.subscribe_to_shard(ConsumerARN=_consumer(kinesis, arn, "other"),
                                       ShardId=FIRST, StartingPosition={"Type": "LATEST"})
    other["EventStream"].close()
    # The stream deleted under a subscription: the subscription ends with the error.
    kinesis.delete_stream(StreamName=name)
    with pytest.raises(EventStreamError) as gone:
        _events(first, 1)
    first["EventStream"].close()
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # A caller without streams:Read.
    analyst = server.add_user("p-analyst", "p-analyst-" + uuid.uuid4().hex, role="analyst")
    theirs = _kinesis(server, analyst.keys.create("p"))
    _, arn = _stream(kinesis)
    with pytest.raises(ClientError) as caught:
        theirs.subscribe_to_shard(ConsumerARN=_consumer(kinesis, arn), ShardId=FIRST,
                                  StartingPosition={"Type": "LATEST"})
    assert _code(caught) == "AccessDeniedException"


def test_deregistering_ends_a_subscription(kinesis: Any) -> None:
    _, arn = _stream(kinesis)
    consumer = _consumer(kinesis, arn)
    answer = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                        StartingPosition={"Type": "LATEST"})
    kinesis.deregister_stream_consumer(ConsumerARN=consumer)
    with pytest.raises(EventStreamError) as gone:  # at its next heartbeat: within 5 s
        _events(answer, 1)
    answer["EventStream"].close()
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "deregistered" in gone.value.response["Error"]["Message"]


def test_a_closed_shard_ends_its_subscription(server: Cumulo, kinesis: Any) -> None:
    name, arn = _stream(kinesis)
    consumer = _consumer(kinesis, arn)
    for i in range(3):
        kinesis.put_record(StreamName=name, Data=f"b{i}".encode(), PartitionKey=f"k{i}")
    answer = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                        StartingPosition={"Type": "TRIM_HORIZON"})
    sdk = server.client().streams.subscribe(name, FIRST, start="TRIM_HORIZON")
    assert [next(sdk)["data"] for _ in range(3)] == [b"b0", b"b1", b"b2"]
    kinesis.split_shard(StreamName=name, ShardToSplit=FIRST, NewStartingHashKey=str(2**127))
    events = list(answer["EventStream"])  # ends by itself
    answer["EventStream"].close()
    records = [r["Data"] for e in events for r in e["SubscribeToShardEvent"]["Records"]]
    assert records == [b"b0", b"b1", b"b2"]
    last = events[-1]["SubscribeToShardEvent"]
    assert {c["ShardId"] for c in last["ChildShards"]} == {"shardId-000000000001",
                                                           "shardId-000000000002"}
    assert all(c["ParentShards"] == [FIRST] for c in last["ChildShards"])
    assert list(sdk) == []  # the SDK's ends too


def test_sdk_subscribe(server: Cumulo) -> None:
    c = server.client()
    name = "q" + uuid.uuid4().hex[:10]
    c.streams.create(name, shards=1)
    seen: list[dict[str, Any]] = []

    def follow() -> None:
        with server.client() as mine:
            for record in mine.streams.subscribe(name, FIRST):
                seen.append(record)
                if len(seen) == 5:
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    # Put until the subscriber has five (it starts at LATEST, whenever that is): what it got
    # is a run of consecutive records, in order.
    sent = 0
    while reader.is_alive() and sent < 500:
        c.streams.put(name, f"n{sent}", partition_key="k")
        sent += 1
        time.sleep(0.02)
    reader.join(10)
    first = int(seen[0]["data"][1:])
    assert [r["data"] for r in seen] == [f"n{i}".encode() for i in range(first, first + 5)]
    assert [int(r["sequence_number"]) for r in seen] == sorted(
        int(r["sequence_number"]) for r in seen)
    assert seen[0]["shard_id"] == FIRST and seen[0]["partition_key"] == "k"
    # Bad input.
    with pytest.raises(NotFound):
        next(c.streams.subscribe(name, "shardId-000000000042"))
    with pytest.raises(NotFound):
        next(c.streams.subscribe("no-such-stream", FIRST))


def test_the_route_ends_and_resumes(server: Cumulo) -> None:
    """The answer ends after ``seconds`` (five minutes unless asked); its last line says where
    to go on from."""
    c = server.client()
    name = "q" + uuid.uuid4().hex[:10]
    c.streams.create(name, shards=1)
    c.streams.put_records(name, [{"partition_key": "k", "data": f"x{i}"} for i in range(3)])
    url = f"{server.url}/api/v1/streams/{name}/subscribe"
    headers = {"authorization": f"Bearer {server.token}"}
    started = time.monotonic()
    answer = httpx.get(url, params={"shard": FIRST, "from": "TRIM_HORIZON", "seconds": 0.5},
                       headers=headers, timeout=10)
    assert answer.status_code == 200 and time.monotonic() - started < 5
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    pages = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["partition_key"] for p in pages for r in p["records"]] == ["k"] * 3
    c.streams.put(name, "x3", partition_key="k")
    resumed = httpx.get(url, params={"shard": FIRST, "from": "AFTER_SEQUENCE_NUMBER",
                                     "sequence": pages[-1]["continuation"], "seconds": 0.5},
                        headers=headers, timeout=10)
    assert [r["data_base64"] for line in resumed.text.splitlines()
            for r in json.loads(line)["records"]] == ["eDM="]
    bad: list[dict[str, str | int]] = [{"shard": FIRST, "from": "SOMEWHERE"},
                                       {"shard": FIRST, "seconds": 0},
                                       {"shard": FIRST, "seconds": 301}]
    for params in bad:
        refused = httpx.get(url, params=params, headers=headers, timeout=10)
        assert refused.status_code == 400, (params, refused.text)


def test_subscriptions_are_bounded(tmp_path_factory: pytest.TempPathFactory) -> None:
    small = start_cumulo(tmp_path_factory.mktemp("bounded") / ".cumulo",
                         {"CUMULO_STREAM_SUBSCRIPTIONS": "2"})
    try:
        c = small.client()
        c.streams.create("b", shards=1)
        url = f"{small.url}/api/v1/streams/b/subscribe"
        headers = {"authorization": f"Bearer {small.token}"}
        with httpx.Client(headers=headers, timeout=10) as one, \
                httpx.Client(headers=headers, timeout=10) as two, \
                one.stream("GET", url, params={"shard": FIRST}) as first, \
                two.stream("GET", url, params={"shard": FIRST}) as second:
            assert first.status_code == second.status_code == 200
            refused = httpx.get(url, params={"shard": FIRST}, headers=headers, timeout=10)
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "stream_subscriptions" in refused.json()["error"]["message"]
            with pytest.raises(Unavailable):
                next(c.streams.subscribe("b", FIRST))
            kinesis = _kinesis(small, c.keys.create("b"))
            arn = kinesis.describe_stream_summary(StreamName="b")[
                "StreamDescriptionSummary"]["StreamARN"]
            with pytest.raises(ClientError) as caught:
                kinesis.subscribe_to_shard(ConsumerARN=_consumer(kinesis, arn), ShardId=FIRST,
                                           StartingPosition={"Type": "LATEST"})
            assert _code(caught) == "LimitExceededException"
        # Closed by their callers: their places are free again.
        deadline = time.monotonic() + 10
        while True:
            with httpx.stream("GET", url, params={"shard": FIRST}, headers=headers,
                              timeout=10) as again:
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        assert again.status_code == 200
    finally:
        small.stop()


def test_show_tells_consumers_and_how_far_they_read(server: Cumulo, kinesis: Any) -> None:
    name, arn = _stream(kinesis)
    _consumer(kinesis, arn, "idle")
    consumer = _consumer(kinesis, arn, "live")
    answer = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=FIRST,
                                        StartingPosition={"Type": "LATEST"})
    put = [kinesis.put_record(StreamName=name, Data=f"r{i}".encode(),
                              PartitionKey="k")["SequenceNumber"] for i in range(3)]
    _events(answer, 3)
    shown = {c["name"]: c for c in server.client().streams.show(name)["consumers"]}
    assert shown["idle"]["subscriptions"] == []
    [reading] = shown["live"]["subscriptions"]
    assert reading["shard_id"] == FIRST and reading["position"] == put[-1]
    assert reading["behind"] == 0 and shown["live"]["arn"] == consumer
    done = server.cli("streams", "show", name)
    assert done.returncode == 0 and "live" in done.stdout and "idle" in done.stdout, done.stderr
    answer["EventStream"].close()
    deadline = time.monotonic() + 10  # the server sees the subscriber go at its next page
    while server.client().streams.show(name)["consumers"][1]["subscriptions"]:
        assert time.monotonic() < deadline, "the closed subscription is still shown"
        kinesis.put_record(StreamName=name, Data=b"nudge", PartitionKey="k")
        time.sleep(0.2)
