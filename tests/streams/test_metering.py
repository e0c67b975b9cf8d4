"""Streams' metering: PUT payload units and shard-hours priced like Kinesis's provisioned mode,
with times the test controls; then end to end against a real server, through ``cumulo
costs``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.config import Prices
from cumulo.db import make_engine, upgrade
from cumulo.metering import usage
from cumulo.metering.models import UsageRecord
from cumulo.streams.metering import PUT_UNIT, StreamMeter, put_units, shard_hours
from cumulo.streams.models import Shard, Stream
from tests.services import Cumulo, start_cumulo

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_put_units_are_25_kib_chunks_rounded_up_per_record() -> None:
    assert PUT_UNIT == 25 * 1024
    assert put_units([1]) == 1
    assert put_units([25 * 1024]) == 1
    assert put_units([25 * 1024 + 1]) == 2
    assert put_units([0]) == 1  # an empty record is still a PUT
    # Kinesis: "a 1MB record contains 40 PUT Payload Units"; with its KB of 1,024 bytes, a
    # record of 1,000 KiB is 40, and one of the full 1 MiB allowed is 41.
    assert put_units([1000 * 1024]) == 40
    assert put_units([1 << 20]) == 41
    assert put_units([5 * 1024, 45 * 1024]) == 1 + 2  # its 5KB and 45KB examples
    assert put_units([]) == 0


def test_shard_hours_over_a_split() -> None:
    # Two shards from T0; at T0+1h shard 0 is split into two children.
    shards = [(T0, T0 + HOUR), (T0, None), (T0 + HOUR, None), (T0 + HOUR, None)]
    assert shard_hours(shards, T0, T0 + 3 * HOUR) == pytest.approx(1 + 3 + 2 + 2)
    assert shard_hours(shards, T0 + 2 * HOUR, T0 + 3 * HOUR) == pytest.approx(3)
    # Periods that meet count each hour once.
    parts = [shard_hours(shards, T0 + i * HOUR / 2, T0 + (i + 1) * HOUR / 2) for i in range(6)]
    assert sum(parts) == pytest.approx(8)
    assert shard_hours(shards, T0 - HOUR, T0) == 0.0  # before any shard was made


def test_the_sheet_prices_shard_hours_and_put_units() -> None:
    prices = Prices()
    assert (prices.shard_hour, prices.million_put_units) == (0.015, 0.014)
    assert usage.price(prices, quantities={"shard_hours": 10.0, "put_units": 2_000_000}) == (
        pytest.approx(10 * 0.015 + 2 * 0.014))
    assert usage.price(prices, cpu_seconds=3600, quantities={"shard_hours": 1.0}) == (
        pytest.approx(prices.vcpu_hour + 0.015))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


def _stream(session: Session, name: str, shards: int) -> Stream:
    stream = Stream(name=name, created_at=T0)
    session.add(stream)
    session.flush()
    for i in range(shards):
        session.add(Shard(stream_id=stream.id, shard_id=f"shardId-{i:012d}", number=i,
                          start_hash="0", end_hash="1", created_at=T0))
    session.commit()
    return stream


def test_a_meter_writes_each_period_once(db: Session) -> None:
    meter = StreamMeter(Prices(shard_hour=1.0, million_put_units=1e6))  # $1 a unit, each
    stream = _stream(db, "clicks", 2)
    meter.count(stream, put_units([10, 30_000]))
    assert meter.pending(stream.id) == 3
    first = meter.meter(db, stream, now=T0 + HOUR)
    assert first is not None and first.kind == "stream" and first.ref == "clicks"
    assert first.quantities == {"shard_hours": 2.0, "put_units": 3}
    assert first.cost_usd == pytest.approx(5.0) and meter.pending(stream.id) == 0
    assert meter.meter(db, stream, now=T0 + HOUR) is None  # nothing since

    # Another control plane that read the stream before this one moved metered_at on writes
    # its own PUT units but not the same shard-hours again.
    other = StreamMeter(Prices(shard_hour=1.0, million_put_units=1e6))
    stale = Stream(id=stream.id, name="clicks", created_at=T0, metered_at=None)
    other.count(stale, 4)
    late = other.meter(db, stale, now=T0 + 2 * HOUR)
    assert late is not None and late.quantities == {"shard_hours": 0.0, "put_units": 4}

    db.expire_all()  # metered_at as the database gives it back: the claim compares that
    second = meter.meter(db, stream, now=T0 + 3 * HOUR)
    assert second is not None and second.quantities == {"shard_hours": 4.0, "put_units": 0}
    assert second.started_at == T0 + HOUR and second.ended_at == T0 + 3 * HOUR
    total = usage.summarize(db, by="kind")
    assert total["rows"][0]["shard_hours"] == pytest.approx(6.0)
    assert total["rows"][0]["put_units"] == 7


def test_units_of_a_stream_deleted_elsewhere_are_still_written(db: Session) -> None:
    meter = StreamMeter(Prices())
    stream = _stream(db, "gone", 1)
    meter.count(stream, 5)
    db.delete(stream)
    db.commit()
    assert meter.meter_all(db, now=T0 + HOUR) == 1
    row = db.scalars(select(UsageRecord)).one()
    assert (row.ref, row.quantities) == ("gone", {"shard_hours": 0.0, "put_units": 5})


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    cumulo = start_cumulo(tmp_path_factory.mktemp("metering") / ".cumulo",
                          {"CUMULO_STREAM_METER_SECONDS": "0.5"})
    yield cumulo
    cumulo.stop()


def _costs(server: Cumulo, *args: str) -> dict[str, Any]:
    done = server.cli("costs", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _row(server: Cumulo, by: str, key: str) -> dict[str, Any] | None:
    return next((r for r in _costs(server, "--by", by)["rows"] if r[by] == key), None)


def _wait_for(server: Cumulo, key: str, units: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        row = _row(server, "item", key)
        if row is not None and row.get("put_units") == units:
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.3)


def test_streams_in_cumulo_costs(server: Cumulo) -> None:
    c = server.client()
    name = "m" + uuid.uuid4().hex[:8]
    assert server.cli("streams", "create", name, "--shards", "2").returncode == 0
    put = c.streams.put_records(name, [
        {"partition_key": "a", "data": "x"},  # 1 unit
        {"partition_key": "b", "data": "y" * PUT_UNIT},  # 1
        {"partition_key": "c", "data": "z" * (PUT_UNIT + 1)},  # 2
        {"partition_key": "", "data": "refused"},  # not written: not counted
    ])
    assert put["failed"] == 1
    assert server.cli("streams", "put", name, "--partition-key", "u1",
                      "-d", '{"page": "/"}').returncode == 0  # 1
    c.streams.split(name, "shardId-000000000000")
    row = _wait_for(server, f"stream {name}", 5)
    assert row["shard_hours"] > 0 and row["cost_usd"] > 0
    assert row["cpu_seconds"] == 0

    by_kind = _costs(server, "--by", "kind")
    stream = next(r for r in by_kind["rows"] if r["kind"] == "stream")
    assert stream["put_units"] >= 5 and stream["cost_usd"] > 0
    assert by_kind["prices"]["shard_hour"] == 0.015
    assert by_kind["prices"]["million_put_units"] == 0.014
    assert _row(server, "user", "admin") is not None  # the stream's creator
    table = server.cli("costs", "--by", "kind")
    assert table.returncode == 0
    assert "stream" in table.stdout and "shard-h" in table.stdout
    assert "PUT units" in table.stdout and "$0.015/shard-hour" in table.stdout

    # Deleted: its last record is written with the deletion, and it stays in the costs.
    c.streams.put(name, "last", partition_key="k")
    c.streams.delete(name)
    after = _wait_for(server, f"stream {name}", 6)
    time.sleep(1.2)  # a few more metering rounds: nothing more for a deleted stream
    assert _row(server, "item", f"stream {name}") == after


def test_a_stopped_server_writes_what_it_counted(tmp_path: Path) -> None:
    home = tmp_path / ".cumulo"
    first = start_cumulo(home)  # the default interval: minutes
    name = "m" + uuid.uuid4().hex[:8]
    try:
        first.client().streams.create(name)
        first.client().streams.put(name, "x" * (3 * PUT_UNIT), partition_key="k")  # 3 units
    finally:
        first.stop()  # SIGTERM: a clean stop meters what was counted
    again = start_cumulo(home)
    try:
        row = _row(again, "item", f"stream {name}")
        assert row is not None and row["put_units"] == 3 and row["shard_hours"] > 0
    finally:
        again.stop()
