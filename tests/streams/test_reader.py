"""The shard reader deliveries and scorers share (streams/reader.py), in-process against a real
engine (the embedded log, and NATS JetStream where nats-server is installed), a real SQLite
catalog and real Delta tables: parents before children through a split and a merge; a wait
woken by a put, a reshard and a stop, and ended by its deadline; and an idle delivery that
reads no shard (and on JetStream asks NATS nothing) until records come, then delivers them
within its buffer's interval."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cumulo.principal import Principal
from cumulo.storage.backends.local import LocalBackend
from cumulo.streams import service
from cumulo.streams.reader import Item, ShardReader, Stopping
from tests.services import free_port, stop

NATS = shutil.which("nats-server")
LOW, HIGH = 1, 2**127 + 1  # hash keys below and above the middle: the two halves of a split


@dataclass
class World:
    db: Engine
    sessions: sessionmaker[Session]
    engine: service.StreamEngine
    storage: LocalBackend
    me: Principal


def _world(tmp_path: Path, streams_url: str = "") -> World:
    from cumulo.access.models import User
    from cumulo.db import make_engine, upgrade, utcnow

    db = make_engine(f"sqlite:///{tmp_path / 'cumulo.db'}")
    upgrade(db)
    sessions = sessionmaker(db, expire_on_commit=False)
    with sessions() as session:
        user = User(name="ana", created_at=utcnow())
        session.add(user)
        session.commit()
        me = Principal(user.id, "ana", False, 0)
    return World(db, sessions, service.StreamEngine(tmp_path, streams_url=streams_url),
                 LocalBackend(tmp_path / "storage"), me)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = _world(tmp_path)
    yield made
    made.engine.close()
    made.db.dispose()


def _put(w: World, stream: str, records: list[tuple[int, str]]) -> None:
    """Put (hash key, data) records."""
    with w.sessions() as session:
        w.engine.put(session, service.get_stream(session, stream),
                     [("k", data.encode(), hash_key) for hash_key, data in records])


def _advance(positions: dict[str, int], items: list[Item]) -> dict[str, int]:
    for item in items:
        positions[item.shard.shard_id] = item.record.seq + 1
    return positions


def _timed(call: Callable[[], Any]) -> float:
    t0 = time.monotonic()
    call()
    return time.monotonic() - t0


def test_parents_are_read_before_their_children(world: World) -> None:
    with world.sessions() as session:
        service.create_stream(session, world.me, "clicks", shards=1)
    _put(world, "clicks", [(LOW, "p1"), (HIGH, "p2"), (LOW, "p3")])
    with world.sessions() as session:
        low, high = service.split_shard(session, world.engine, "clicks",
                                        "shardId-000000000000")
    _put(world, "clicks", [(LOW, "a1"), (HIGH, "b1"), (LOW, "a2"), (HIGH, "b2")])
    reader = ShardReader(world.engine, world.sessions, "clicks")
    positions: dict[str, int] = {}
    first = reader.read(positions, limit=100)
    # The children have records already, but their parent is not finished: it alone.
    assert [(i.shard.shard_id, i.record.data) for i in first] == [
        ("shardId-000000000000", b"p1"), ("shardId-000000000000", b"p2"),
        ("shardId-000000000000", b"p3")]
    assert reader.read(positions, limit=100) == first  # the caller's positions did not move
    second = reader.read(_advance(positions, first), limit=100)
    assert sorted((i.shard.shard_id, i.record.data) for i in second) == [
        (low.shard_id, b"a1"), (low.shard_id, b"a2"), (high.shard_id, b"b1"),
        (high.shard_id, b"b2")]
    # A merge of the children: what is left of them first, then the merged shard.
    _put(world, "clicks", [(LOW, "a3")])
    with world.sessions() as session:
        merged = service.merge_shards(session, world.engine, "clicks", low.shard_id,
                                      high.shard_id)
    _put(world, "clicks", [(HIGH, "m1")])
    third = reader.read(_advance(positions, second), limit=100)
    assert [(i.shard.shard_id, i.record.data) for i in third] == [(low.shard_id, b"a3")]
    fourth = reader.read(_advance(positions, third), limit=100)
    assert [(i.shard.shard_id, i.record.data) for i in fourth] == [(merged.shard_id, b"m1")]
    assert reader.read(_advance(positions, fourth), limit=100) == []
    # A limit counts across shards.
    assert len(reader.read({}, limit=2)) == 2
    reader.close()


def test_a_wait_ends_when_records_come_a_shard_closes_or_the_runner_stops(
        world: World) -> None:
    with world.sessions() as session:
        service.create_stream(session, world.me, "clicks", shards=2)
    stopping = Stopping()
    reader = ShardReader(world.engine, world.sessions, "clicks", stopping=stopping)
    positions: dict[str, int] = {}
    assert reader.read(positions, limit=10) == []
    # Nothing comes: it sleeps until the deadline.
    assert 0.45 <= _timed(lambda: reader.wait(time.monotonic() + 0.5)) < 1.5
    # ... and at most until the shards are due to be looked at again.
    assert _timed(lambda: reader.wait(float("inf"))) < reader.look_again + 0.5
    assert reader.read(positions, limit=10) == []
    # A put wakes it at once.
    threading.Timer(0.3, _put, (world, "clicks", [(HIGH, "x")])).start()
    assert 0.25 <= _timed(lambda: reader.wait(time.monotonic() + 30)) < 1.5
    got = reader.read(positions, limit=10)
    assert [i.record.data for i in got] == [b"x"]
    assert reader.read(_advance(positions, got), limit=10) == []
    # A split closes a shard it reads: it wakes, and the next read finds the children.

    def split() -> None:
        with world.sessions() as session:
            service.split_shard(session, world.engine, "clicks", "shardId-000000000001")

    threading.Timer(0.3, split).start()
    assert _timed(lambda: reader.wait(time.monotonic() + 30)) < 1.5
    assert reader.read(positions, limit=10) == []
    assert {s.shard_id for s in reader.shards} == {
        "shardId-000000000000", "shardId-000000000001", "shardId-000000000002",
        "shardId-000000000003"}
    _put(world, "clicks", [(HIGH, "y")])
    assert [(i.shard.shard_id, i.record.data) for i in reader.read(positions, limit=10)] == [
        ("shardId-000000000002", b"y")]  # the lower half of what shard 1 took
    # A stop ends it at once.
    threading.Timer(0.3, stopping.set).start()
    assert _timed(lambda: reader.wait(time.monotonic() + 30)) < 1.5
    reader.close()


def _delivery(w: World, stream: str, shards: int, buffer: str) -> Any:
    """A stream of ``shards``, a table web.clicks and a delivery of one into the other (not
    running yet): the Deliveries that will run it."""
    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref
    from cumulo.streams.delivery import Deliveries, create_delivery

    with w.sessions() as session:
        catalog.create_database(session, w.me, "web")
        row = catalog.ensure_managed_table(session, w.me, parse_ref("web.clicks"))
        delta.write(catalog.location(w.storage, row),
                    pa.schema([pa.field("id", pa.string())]).empty_table().to_reader(),
                    mode="append", user="ana", name="web.clicks")
        service.create_stream(session, w.me, stream, shards=shards)
        create_delivery(session, w.engine, w.storage, w.me, stream, table="web.clicks",
                        buffer=buffer)
    return Deliveries(w.engine, w.sessions, w.storage, look_every=0.2)


def _rows(w: World) -> list[str]:
    from cumulo.lake import catalog, delta
    from cumulo.lake.refs import parse_ref

    with w.sessions() as session:
        loc = catalog.location(w.storage, catalog.get_table(session, parse_ref("web.clicks")))
    return [r["id"] for r in delta.open_table(loc).to_pyarrow_table().to_pylist()]


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.05)


def _idle_then_deliver(w: World, reads: Callable[[], int]) -> None:
    """Start the delivery; once it has looked at its shards, nothing is put for 3 s (past
    the reader's look at the shard list): ``reads()`` must not grow. Then records come, and
    are in the table within the buffer's interval (1 s) and a little."""
    deliveries = _delivery(w, "clicks", 2, "1MB/1s")
    deliveries.start()
    try:
        _until(lambda: reads() > 0)
        time.sleep(0.5)  # its first look at each shard
        before = reads()
        time.sleep(3.0)
        assert reads() == before, "an idle delivery read its shards"
        t0 = time.monotonic()
        _put(w, "clicks", [(LOW if i % 2 else HIGH, json.dumps({"id": f"r{i}"}))
                           for i in range(20)])
        _until(lambda: len(_rows(w)) == 20, timeout=10)
        assert time.monotonic() - t0 < 2.5  # 1 s of buffer, and the commit
        assert sorted(_rows(w)) == sorted(f"r{i}" for i in range(20))
    finally:
        deliveries.stop()


def test_an_idle_delivery_reads_nothing_until_records_come(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on the engine's own shard logs: each one's real read, counted as it runs."""
    count: Counter[str] = Counter()
    real_shard = world.engine.logs.shard

    def counted(stream: str, shard: str) -> Any:
        log = real_shard(stream, shard)
        if not getattr(log, "counted", False):
            real_read = log.read

            def read(*args: Any, **kwargs: Any) -> Any:
                count[shard] += 1
                return real_read(*args, **kwargs)

            monkeypatch.setattr(log, "read", read, raising=False)
            monkeypatch.setattr(log, "counted", True, raising=False)
        return log

    monkeypatch.setattr(world.engine.logs, "shard", counted)
    _idle_then_deliver(world, lambda: sum(count.values()))


def _start_nats(tmp: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    assert NATS is not None
    port, monitor = free_port(), free_port()
    proc = subprocess.Popen([NATS, "-js", "-sd", str(tmp / "jetstream"), "-a", "127.0.0.1",
                             "-p", str(port), "-m", str(monitor)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1).close()
            return proc, port, monitor
        except OSError:
            assert proc.poll() is None, "nats-server exited"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.skipif(NATS is None, reason="nats-server is not installed: "
                                         "scripts/install-test-services installs it")
def test_an_idle_delivery_asks_nats_nothing_until_records_come(tmp_path: Path) -> None:
    """On JetStream each read of a shard is a NATS request (a stream info, direct gets):
    counted by nats-server itself, as the messages its clients sent (/varz in_msgs)."""
    proc, port, monitor = _start_nats(tmp_path)
    w = _world(tmp_path, f"nats://127.0.0.1:{port}")

    def requests() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as answer:
            return int(json.load(answer)["in_msgs"])

    try:
        _idle_then_deliver(w, requests)
    finally:
        w.engine.close()
        w.db.dispose()
        stop(proc)
