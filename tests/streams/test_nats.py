"""Streams on NATS JetStream (``CUMULO_STREAMS_URL=nats://...``) against a real nats-server
(Debian's, which ``make test`` installs): the backend's contract directly, then Kinesis's core
semantics through boto3 and the SDK, and kill -9 of the server losing no acknowledged record."""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cumulo.config import load_settings
from cumulo.errors import Invalid, Unavailable
from cumulo.streams.jetstream import JetStreamStore
from tests.services import Cumulo, free_port, start_cumulo, stop

NATS = shutil.which("nats-server")
pytestmark = pytest.mark.skipif(
    NATS is None, reason="nats-server is not installed: scripts/install-test-services "
                         "(run by make test) installs it")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nats-server exited: see nats.log"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not listen on port {port}")


def _start_nats(store: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    assert NATS is not None
    config = store.parent / "nats.conf"  # room for Kinesis's 1 MiB records and their headers
    config.write_text("max_payload: 2MB\n")
    proc = subprocess.Popen([NATS, "-c", str(config), "-js", "-sd", str(store),
                             "-a", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    _wait_for_port(port, proc)
    return proc


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert NATS is not None
    store, port = tmp_path_factory.mktemp("jetstream"), free_port()
    log = open(store.parent / "nats.log", "wb")  # noqa: SIM115 - open while the server runs
    proc = _start_nats(store, port, log)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def store(nats_url: str) -> Iterator[JetStreamStore]:
    opened = JetStreamStore(nats_url)
    yield opened
    opened.close()


def _name() -> str:
    return "s" + uuid.uuid4().hex[:10]


def test_shard_store_on_jetstream(store: JetStreamStore) -> None:
    name = _name() + ".with_dots"  # escaped into JetStream's names
    shard = store.shard(name, "shardId-000000000000")
    assert (shard.first_seq, shard.next_seq) == (1, 1)  # sequences start at 1, as the log's
    acks = shard.append([(f"ключ-{i}", f"r{i}".encode(), i) for i in range(20)])
    assert [seq for seq, _ in acks] == list(range(1, 21))
    got = shard.read(1)  # through a pull consumer
    assert [(r.seq, r.key, r.data, r.hash_key) for r in got] == [
        (i + 1, f"ключ-{i}", f"r{i}".encode(), i) for i in range(20)]
    assert [r.seq for r in shard.read(18, limit=5)] == [18, 19, 20]  # one by one
    assert [r.seq for r in shard.read(5, limit=3)] == [5, 6, 7]
    assert len(shard.read(1, max_bytes=4)) == 2 and shard.read(21) == []
    middle = acks[0][1] + 1e-6
    assert shard.seq_at(middle) == 21 and shard.seq_at(0) == 1
    # waits and watches hear of records as JetStream stores them
    heard: list[bool] = []
    unwatch = shard.watch(heard.append)
    assert not shard.wait(20, 0.2)
    threading.Timer(0.2, shard.append, args=([("k", b"late", 1)],)).start()
    started = time.monotonic()
    assert shard.wait(20, 5) and time.monotonic() - started < 2
    # a nudge (a split or merge closed the shard) ends a long poll and tells the watchers
    threading.Timer(0.2, shard.nudge).start()
    started = time.monotonic()
    assert not shard.wait(21, 10) and time.monotonic() - started < 5
    unwatch()
    assert True in heard and False in heard
    # retention purges what arrived before the cut; sequences go on from where they were
    assert shard.trim(time.time() + 1) == 21
    assert (shard.first_seq, shard.next_seq) == (22, 22) and shard.read(1) == []
    assert shard.append([("k", b"after", 1)])[0][0] == 22
    assert shard.stats()["records"] == 1
    shard.trim(time.time() - 86400)  # a day's retention: JetStream's max_age from now on
    info = store.call(lambda js: js.stream_info(shard.name), "info")
    assert info.config.max_age == 86400 and info.config.subjects == [shard.subject]
    again = JetStreamStore(store.url)  # another control plane opens the shard as it is now
    try:
        assert again.shard(name, "shardId-000000000000").read(1)[0].data == b"after"
    finally:
        again.close()
    store.drop_stream(name)
    fresh = store.shard(name, "shardId-000000000000")
    assert fresh.next_seq == 1


def test_unreachable_nats_is_unavailable_naming_the_url() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    store = JetStreamStore(url)
    try:
        with pytest.raises(Unavailable, match=f"{url}.*nats-server"):
            store.shard("s", "shardId-000000000000").append([("k", b"x", 1)])
    finally:
        store.close()


def test_streams_url_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).streams_url == ""  # the embedded log stays the default
    assert load_settings({"CUMULO_STREAMS_URL": "nats://n1:4222"}).streams_url == "nats://n1:4222"
    with pytest.raises(Invalid, match="streams_url 'kafka://k:9092' is not nats://"):
        load_settings({"CUMULO_STREAMS_URL": "kafka://k:9092"})


def test_nats_restart(tmp_path: Path) -> None:
    """While NATS is down puts fail at once with Unavailable (none queued to land later);
    once it is back they work again, and what was stored before is there."""
    port = free_port()
    with open(tmp_path / "nats.log", "wb") as log:
        proc = _start_nats(tmp_path / "js", port, log)
        store = JetStreamStore(f"nats://127.0.0.1:{port}")
        try:
            shard = store.shard("restart", "shardId-000000000000")
            assert shard.append([("k", b"before", 1)])[0][0] == 1
            stop(proc, sig=signal.SIGKILL)
            deadline = time.monotonic() + 5
            with pytest.raises(Unavailable, match=f"at nats://127.0.0.1:{port}"):
                while time.monotonic() < deadline:  # until the client sees it gone
                    shard.append([("k", b"lost", 1)])
                    time.sleep(0.05)
            proc = _start_nats(tmp_path / "js", port, log)
            deadline = time.monotonic() + 10
            while True:
                try:
                    shard.append([("k", b"after", 1)])
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "no reconnect to NATS"
                    time.sleep(0.1)
            data = [r.data for r in shard.read(1)]
            assert data[0] == b"before" and data[-1] == b"after"
        finally:
            store.close()
            stop(proc)


@pytest.fixture(scope="module")
def server(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("streams-nats") / ".cumulo",
                          {"CUMULO_STREAMS_URL": nats_url})
    yield cumulo
    cumulo.stop()


@pytest.fixture(scope="module")
def kinesis(server: Cumulo) -> Any:
    key = server.client().keys.create("kinesis")
    return boto3.client("kinesis", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}))


def _iterator(kinesis: Any, name: str, shard: str, kind: str, **more: Any) -> str:
    return str(kinesis.get_shard_iterator(StreamName=name, ShardId=shard,
                                          ShardIteratorType=kind, **more)["ShardIterator"])


def test_kinesis_on_jetstream(kinesis: Any, server: Cumulo, store: JetStreamStore) -> None:
    name = _name()
    kinesis.create_stream(StreamName=name, ShardCount=2)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 24
    shard = "shardId-000000000000"
    one = kinesis.put_record(StreamName=name, Data=b"first", PartitionKey="k",
                             ExplicitHashKey="0")
    assert one["ShardId"] == shard
    batch = kinesis.put_records(StreamName=name, Records=[
        {"Data": f"b{i}".encode(), "PartitionKey": f"p{i}", "ExplicitHashKey": "1"}
        for i in range(30)] + [{"Data": b"x" * ((1 << 20) + 1), "PartitionKey": "big"}])
    assert batch["FailedRecordCount"] == 1  # the oversized one, named; the rest written
    assert batch["Records"][30]["ErrorCode"]
    largest = kinesis.put_record(StreamName=name, Data=b"y" * (1 << 20), PartitionKey="k",
                                 ExplicitHashKey=str(2**128 - 1))  # to the other shard
    assert largest["ShardId"] == "shardId-000000000001"
    seqs = [int(r["SequenceNumber"]) for r in batch["Records"][:30]]
    assert seqs == sorted(seqs) and int(one["SequenceNumber"]) < seqs[0]
    everything = [b"first"] + [f"b{i}".encode() for i in range(30)]
    got = kinesis.get_records(ShardIterator=_iterator(kinesis, name, shard, "TRIM_HORIZON"))
    assert [r["Data"] for r in got["Records"]] == everything
    assert got["Records"][0]["SequenceNumber"] == one["SequenceNumber"]
    at = _iterator(kinesis, name, shard, "AT_SEQUENCE_NUMBER",
                   StartingSequenceNumber=batch["Records"][10]["SequenceNumber"])
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=at, Limit=2)["Records"]] == [
        b"b10", b"b11"]
    latest = _iterator(kinesis, name, shard, "LATEST")
    assert kinesis.get_records(ShardIterator=latest)["Records"] == []
    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="k", ExplicitHashKey="2")
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=latest)["Records"]] == [
        b"new"]
    # the SDK reads the same records, and show counts them in JetStream
    c = server.client()
    page = c.streams.get(name, shard=shard, limit=3)
    assert [base64.b64decode(r["data_base64"]) for r in page["records"]] == everything[:3]
    assert c.streams.show(name)["shards"][0]["records"] == 32
    assert not list((server.home / "streams").rglob("*.seg"))  # nothing kept locally
    kinesis.delete_stream(StreamName=name)
    assert store.shard(name, shard).next_seq == 1  # its JetStream streams went with it


def test_acknowledged_records_survive_kill_9(nats_url: str, tmp_path: Path) -> None:
    home = tmp_path / ".cumulo"
    env = {"CUMULO_STREAMS_URL": nats_url}
    first = start_cumulo(home, env)
    acknowledged: list[str] = []
    try:
        first.client().streams.create("durable", shards=2)
        halt = threading.Event()

        def produce(worker: int) -> None:
            n = 0
            with first.client() as mine:
                while not halt.is_set():
                    try:
                        mine.streams.put("durable", f"{worker}-{n}", partition_key=str(n))
                    except Exception:
                        return
                    acknowledged.append(f"{worker}-{n}")
                    n += 1

        workers = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(4)]
        for w in workers:
            w.start()
        time.sleep(1.5)
        first.stop(signal.SIGKILL)
        halt.set()
        for w in workers:
            w.join(10)
    finally:
        first.stop(signal.SIGKILL)
    assert len(acknowledged) > 20
    second = start_cumulo(home, env)
    try:
        c = second.client()
        stored: set[str] = set()
        for shard in c.streams.show("durable")["shards"]:
            page = c.streams.get("durable", shard=shard["shard_id"], limit=10_000)
            stored |= {base64.b64decode(r["data_base64"]).decode() for r in page["records"]}
        assert set(acknowledged) <= stored
        c.streams.delete("durable")
    finally:
        second.stop()


def test_push_subscription_on_jetstream(server: Cumulo) -> None:
    """A push subscription is woken by JetStream's tail, not by polling: records come as they
    are put."""
    name = _name()
    c = server.client()
    c.streams.create(name, shards=1)
    c.streams.put(name, "before", partition_key="k")
    got: list[tuple[bytes, float]] = []
    with server.client() as reader:
        subscription = reader.streams.subscribe(name, "shardId-000000000000",
                                                start="TRIM_HORIZON")

        def read() -> None:
            for record in subscription:
                got.append((record["data"], time.monotonic()))
                if len(got) == 6:
                    return

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        put_at = []
        for i in range(5):
            time.sleep(0.1)
            put_at.append(time.monotonic())
            c.streams.put(name, f"r{i}", partition_key="k")
        thread.join(10)
    assert [data for data, _ in got] == [b"before"] + [f"r{i}".encode() for i in range(5)]
    assert max(at - put for (_, at), put in zip(got[1:], put_at, strict=True)) < 0.5
    c.streams.delete(name)
