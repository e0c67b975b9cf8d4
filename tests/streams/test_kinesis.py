"""Streams through boto3's own Kinesis client (none of it mocked) and through Cumulo's CLI
and SDK, against a real server: Kinesis's routing, sequence numbers, iterators, limits and
errors; durability under kill -9."""

from __future__ import annotations

import base64
import hashlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("streams") / ".cumulo")
    yield cumulo
    cumulo.stop()


def _kinesis(server: Cumulo, key: dict[str, Any]) -> Any:
    return boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def kinesis(server: Cumulo) -> Any:
    return _kinesis(server, server.client().keys.create("kinesis"))


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


def _name() -> str:
    return "s" + uuid.uuid4().hex[:10]


def _shard_of(key: str, shards: list[dict[str, Any]]) -> str:
    value = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    return next(s["ShardId"] for s in shards
                if int(s["HashKeyRange"]["StartingHashKey"]) <= value
                <= int(s["HashKeyRange"]["EndingHashKey"]))


def test_streams_through_boto3(kinesis: Any) -> None:
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=4)
    assert name in kinesis.list_streams()["StreamNames"]
    description = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    shards = description["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(4)]
    assert shards[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4 and summary["RetentionPeriodHours"] == 24
    # Routed by the MD5 of the partition key; per shard, sequence numbers only grow.
    put = [kinesis.put_record(StreamName=name, Data=f"r{i}".encode(), PartitionKey=f"user-{i}")
           for i in range(20)]
    for i, answer in enumerate(put):
        assert answer["ShardId"] == _shard_of(f"user-{i}", shards)
    by_shard: dict[str, list[int]] = {}
    for answer in put:
        by_shard.setdefault(answer["ShardId"], []).append(int(answer["SequenceNumber"]))
    assert all(seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
               for seqs in by_shard.values())
    explicit = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="any",
                                  ExplicitHashKey=str(2**128 - 1))
    assert explicit["ShardId"] == "shardId-000000000003"
    # PutRecords: a bad record fails alone, the rest are written.
    batch = kinesis.put_records(StreamName=name, Records=[
        {"Data": b"a", "PartitionKey": "k1"}, {"Data": b"x" * (1024 * 1024 + 1),
                                                "PartitionKey": "k2"},
        {"Data": b"c", "PartitionKey": "k3"}])
    assert batch["FailedRecordCount"] == 1
    assert "SequenceNumber" in batch["Records"][0] and "SequenceNumber" in batch["Records"][2]
    assert "1 MiB" in batch["Records"][1]["ErrorMessage"]
    # Read every shard from the start: all 23 records.
    got = []
    for shard in shards:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = kinesis.get_records(ShardIterator=it, Limit=1000)
        got += [r["Data"] for r in page["Records"]]
        assert page["MillisBehindLatest"] == 0 and page["NextShardIterator"]
        again = kinesis.get_records(ShardIterator=page["NextShardIterator"])
        assert again["Records"] == []
    assert sorted(got) == sorted([f"r{i}".encode() for i in range(20)] + [b"x", b"a", b"c"])


def test_iterators(kinesis: Any) -> None:
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    shard = "shardId-000000000000"
    seqs = [kinesis.put_record(StreamName=name, Data=str(i).encode(),
                               PartitionKey="k")["SequenceNumber"] for i in range(5)]

    def read(**kwargs: Any) -> list[bytes]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, **kwargs)
        return [r["Data"] for r in kinesis.get_records(ShardIterator=it["ShardIterator"])[
            "Records"]]

    assert read(ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=seqs[2]) == [b"2", b"3", b"4"]
    assert read(ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=seqs[2]) == [b"3", b"4"]
    latest = kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                        ShardIteratorType="LATEST")["ShardIterator"]
    middle = datetime.now(UTC)
    time.sleep(0.05)
    kinesis.put_record(StreamName=name, Data=b"5", PartitionKey="k")
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=latest)["Records"]] == [b"5"]
    assert read(ShardIteratorType="AT_TIMESTAMP", Timestamp=middle) == [b"5"]
    # Paging with Limit, and how far behind the reader is.
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    first = kinesis.get_records(ShardIterator=it, Limit=2)
    assert [r["Data"] for r in first["Records"]] == [b"0", b"1"]
    assert first["MillisBehindLatest"] >= 0
    rest = kinesis.get_records(ShardIterator=first["NextShardIterator"], Limit=10)
    assert [r["Data"] for r in rest["Records"]] == [b"2", b"3", b"4", b"5"]
    # ListShards pages with NextToken.
    many = _name()
    kinesis.create_stream(StreamName=many, ShardCount=3)
    page = kinesis.list_shards(StreamName=many, MaxResults=2)
    assert len(page["Shards"]) == 2 and page["NextToken"]
    assert [s["ShardId"] for s in kinesis.list_shards(NextToken=page["NextToken"])[
        "Shards"]] == ["shardId-000000000002"]


def test_bad_input(server: Cumulo, kinesis: Any) -> None:
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    with pytest.raises(ClientError) as caught:
        kinesis.create_stream(StreamName=name, ShardCount=1)
    assert _code(caught) == "ResourceInUseException"
    with pytest.raises(ClientError) as caught:
        kinesis.put_record(StreamName=name, Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
    assert _code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        kinesis.put_record(StreamName="no-such-stream", Data=b"x", PartitionKey="k")
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        kinesis.get_records(ShardIterator="not-an-iterator" * 3)
    assert _code(caught) == "ExpiredIteratorException"
    with pytest.raises(ClientError) as caught:
        kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000009",
                                   ShardIteratorType="LATEST")
    assert _code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                   ShardIteratorType="AT_SEQUENCE_NUMBER",
                                   StartingSequenceNumber="abc")
    assert _code(caught) == "InvalidArgumentException"
    # A deleted stream cannot be read, its iterators included.
    it = kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    kinesis.delete_stream(StreamName=name)
    with pytest.raises(ClientError) as caught:
        kinesis.get_records(ShardIterator=it)
    assert _code(caught) == "ResourceNotFoundException"
    # Wrong secret; a key without rights on streams.
    wrong = _kinesis(server, {"access_key_id": server.client().keys.create("w")[
        "access_key_id"], "secret_access_key": "x" * 40})
    with pytest.raises(ClientError) as caught:
        wrong.list_streams()
    assert _code(caught) == "InvalidSignatureException"
    analyst = server.add_user("k-analyst", "k-analyst-" + uuid.uuid4().hex, role="analyst")
    theirs = _kinesis(server, analyst.keys.create("k"))
    with pytest.raises(ClientError) as caught:
        theirs.create_stream(StreamName=_name(), ShardCount=1)
    assert _code(caught) == "AccessDeniedException"


def test_cli_and_sdk(server: Cumulo, tmp_path: Path) -> None:
    name = _name()
    made = server.cli("streams", "create", name, "--shards", "2", "--retention", "48h")
    assert made.returncode == 0, made.stderr
    put = server.cli("streams", "put", name, "--partition-key", "u1", "-d", '{"click": 1}')
    assert put.returncode == 0, put.stderr
    lines = tmp_path / "lines.txt"
    lines.write_text("one\ntwo\nthree\n")
    many = server.cli("streams", "put", name, "-k", "u1", "--file", str(lines))
    assert many.returncode == 0 and "3 record(s) written" in many.stdout + many.stderr
    c = server.client()
    shown = c.streams.show(name)
    assert shown["records"] == 4 and shown["retention_hours"] == 48
    shard = next(s["shard_id"] for s in shown["shards"] if s["records"])
    got = server.cli("streams", "get", name, "--shard", shard)
    assert got.returncode == 0, got.stderr
    assert [line.split(" ", 3)[3] for line in got.stdout.splitlines()] == [
        '{"click": 1}', "one", "two", "three"]
    assert name in server.cli("streams", "ls").stdout
    # tail follows what comes after it starts.
    seen: list[bytes] = []

    def follow() -> None:
        for record in server.client().streams.tail(name, wait=1.0):
            seen.append(record["data"])
            if len(seen) == 2:
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1.0)
    c.streams.put(name, b"live-1", partition_key="a")
    c.streams.put(name, b"live-2", partition_key="a")
    reader.join(20)
    assert seen == [b"live-1", b"live-2"]
    removed = server.cli("streams", "rm", name)
    assert removed.returncode == 0, removed.stderr
    assert server.cli("streams", "show", name).returncode != 0


def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    """A put is acknowledged only once it is on disk: kill -9 the server mid-stream, start it
    again, and every acknowledged record is there."""
    home = tmp_path / ".cumulo"
    first = start_cumulo(home)
    acknowledged: list[str] = []
    try:
        c = first.client()
        c.streams.create("durable", shards=2)
        stop = threading.Event()

        def produce(worker: int) -> None:
            n = 0
            with first.client() as mine:
                while not stop.is_set():
                    try:
                        mine.streams.put("durable", f"{worker}-{n}", partition_key=str(n))
                    except Exception:
                        return
                    acknowledged.append(f"{worker}-{n}")
                    n += 1

        workers = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(4)]
        for w in workers:
            w.start()
        time.sleep(2.0)
        first.stop(signal.SIGKILL)
        stop.set()
        for w in workers:
            w.join(10)
    finally:
        first.stop(signal.SIGKILL)
    assert len(acknowledged) > 20
    second = start_cumulo(home, port=None)
    try:
        c = second.client()
        stored: set[str] = set()
        for shard in c.streams.show("durable")["shards"]:
            page = c.streams.get("durable", shard=shard["shard_id"], limit=10_000)
            stored |= {base64.b64decode(r["data_base64"]).decode()
                       for r in page["records"]}
        assert set(acknowledged) <= stored
    finally:
        second.stop()


def test_resharding(server: Cumulo, kinesis: Any) -> None:
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    parent = "shardId-000000000000"
    before = [kinesis.put_record(StreamName=name, Data=f"b{i}".encode(),
                                 PartitionKey=f"k{i}") for i in range(6)]
    assert {p["ShardId"] for p in before} == {parent}
    with pytest.raises(ClientError) as caught:  # a split outside the shard's range
        kinesis.split_shard(StreamName=name, ShardToSplit=parent, NewStartingHashKey="0")
    assert _code(caught) == "InvalidArgumentException"
    middle = str(2**127)
    kinesis.split_shard(StreamName=name, ShardToSplit=parent, NewStartingHashKey=middle)
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    children = [s for s in shards if s.get("ParentShardId") == parent]
    assert [c["HashKeyRange"] for c in children] == [
        {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)},
        {"StartingHashKey": middle, "EndingHashKey": str(2**128 - 1)}]
    assert "EndingSequenceNumber" in next(s for s in shards if s["ShardId"] == parent)[
        "SequenceNumberRange"]
    after = [kinesis.put_record(StreamName=name, Data=f"a{i}".encode(),
                                PartitionKey=f"k{i}") for i in range(6)]
    assert {p["ShardId"] for p in after} <= {c["ShardId"] for c in children}
    # The parent reads to its end, then names its children instead of a next iterator.
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=parent,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    page = kinesis.get_records(ShardIterator=it)
    assert [r["Data"] for r in page["Records"]] == [f"b{i}".encode() for i in range(6)]
    assert "NextShardIterator" not in page
    assert {c["ShardId"] for c in page["ChildShards"]} == {c["ShardId"] for c in children}
    # The SDK's tail finishes the parent before the children.
    seen = []
    for record in server.client().streams.tail(name, start="TRIM_HORIZON", wait=0.2):
        seen.append(record["data"].decode())
        if len(seen) == 12:
            break
    assert seen[:6] == [f"b{i}" for i in range(6)] and sorted(seen[6:]) == sorted(
        f"a{i}" for i in range(6))
    # Merge: only adjacent shards.
    with pytest.raises(ClientError) as caught:
        kinesis.merge_shards(StreamName=name, ShardToMerge=children[0]["ShardId"],
                             AdjacentShardToMerge=parent)
    assert _code(caught) == "InvalidArgumentException"
    kinesis.merge_shards(StreamName=name, ShardToMerge=children[0]["ShardId"],
                         AdjacentShardToMerge=children[1]["ShardId"])
    open_shards = [s for s in kinesis.list_shards(StreamName=name)["Shards"]
                   if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert len(open_shards) == 1 and open_shards[0]["HashKeyRange"] == {
        "StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)}
    assert open_shards[0]["AdjacentParentShardId"] == children[1]["ShardId"]
    done = server.cli("streams", "split", name, open_shards[0]["ShardId"])
    assert done.returncode == 0 and "2 open shard(s)" in done.stdout, done.stderr


def test_puts_follow_reshards_and_recreation_at_once(kinesis: Any) -> None:
    """Puts keep a view of a stream's shards (service.ROUTE_TTL); a merge, a delete and a new
    stream of the same name made here are seen by the very next put, not a second later."""
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=2)
    first = {kinesis.put_record(StreamName=name, Data=b"x", PartitionKey=f"k{i}")["ShardId"]
             for i in range(8)}
    assert first == {"shardId-000000000000", "shardId-000000000001"}
    kinesis.merge_shards(StreamName=name, ShardToMerge="shardId-000000000000",
                         AdjacentShardToMerge="shardId-000000000001")
    merged = {kinesis.put_record(StreamName=name, Data=b"y", PartitionKey=f"k{i}")["ShardId"]
              for i in range(8)}
    assert merged == {"shardId-000000000002"}
    kinesis.delete_stream(StreamName=name)
    with pytest.raises(ClientError) as caught:
        kinesis.put_records(StreamName=name, Records=[{"Data": b"z", "PartitionKey": "k"}])
    assert _code(caught) == "ResourceNotFoundException"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    again = kinesis.put_records(StreamName=name, Records=[{"Data": b"z", "PartitionKey": "k"}])
    assert again["FailedRecordCount"] == 0
    assert again["Records"][0]["ShardId"] == "shardId-000000000000"
    it = kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]] == [b"z"]


def test_backlog_refuses_with_kinesis_throttling_and_writes_nothing_refused(
        tmp_path: Path) -> None:
    """With a one-byte shard backlog, a put that comes while another of the same shard is being
    written is refused as Kinesis refuses a shard past its limit: per record in a PutRecords
    (the rest written), ProvisionedThroughputExceededException for a PutRecord, retried by
    boto3's own retries and by the SDK; no refused record is in the shard."""
    server = start_cumulo(tmp_path / ".cumulo", {"CUMULO_STREAM_SHARD_BACKLOG": "1"})
    try:
        key = server.client().keys.create("k")
        kinesis = _kinesis(server, key)
        name = _name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        written: list[str] = []
        refused: list[dict[str, Any]] = []
        stop = threading.Event()

        def big_puts() -> None:  # 4 MiB a put: its write keeps the backlog full a while
            mine = _kinesis(server, key)
            while not stop.is_set():
                done = mine.put_records(StreamName=name, Records=[
                    {"Data": b"x" * 2**20, "PartitionKey": "big"} for _ in range(4)])
                written.extend(r["SequenceNumber"] for r in done["Records"]
                               if "SequenceNumber" in r)

        thread = threading.Thread(target=big_puts)
        thread.start()
        deadline = time.monotonic() + 60
        try:
            while not refused and time.monotonic() < deadline:
                done = kinesis.put_records(StreamName=name, Records=[
                    {"Data": b"small", "PartitionKey": "k"}])
                first = done["Records"][0]
                if "ErrorCode" in first:
                    refused.append(first)
                else:
                    written.append(first["SequenceNumber"])
        finally:
            stop.set()
            thread.join()
        assert refused, "no put came while another was being written in 60 s"
        assert refused[0]["ErrorCode"] == "ProvisionedThroughputExceededException"
        assert refused[0]["ErrorMessage"].startswith("Rate exceeded for shard shardId-0000")
        # Every acknowledged record is in the shard, and nothing else.
        it = kinesis.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        seen: list[str] = []
        while it and len(seen) < len(written):
            page = kinesis.get_records(ShardIterator=it, Limit=1000)
            seen += [r["SequenceNumber"] for r in page["Records"]]
            it = page.get("NextShardIterator") if page["Records"] else None
        assert sorted(seen, key=int) == sorted(written, key=int)
        # Once nothing waits, a put goes through; boto3 and the SDK retry a refused one.
        retrying = boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                                aws_access_key_id=key["access_key_id"],
                                aws_secret_access_key=key["secret_access_key"])
        assert retrying.put_record(StreamName=name, Data=b"one", PartitionKey="k")["ShardId"]
        assert server.client().streams.put(name, "two", partition_key="k")["shard_id"]
    finally:
        server.stop()
