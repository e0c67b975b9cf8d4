"""Benchmark: streams through boto3's Kinesis client, against kinesalite and moto's Kinesis,
and the latency of a push subscription.

Requirements (issue 25), measured in one run:

- streams-put: durable PutRecords into Cumulo from 4 producers (4 processes, each its own
  boto3 Kinesis client, PutRecords of 500 records of 1 KiB with random partition keys, into a
  stream of 4 shards) reach at least 50,000 records/s. Durable: a put is answered once its
  records are written and fsync'ed.
- streams-put-vs-kinesalite, streams-put-vs-moto: the same producers against kinesalite (npm,
  installed under bench/node/ by ``make bench-streams``, run with node) and moto's Kinesis
  (``moto_server``, started as the tests start it: tests/services.py), as peers over the same
  boto3 client: Cumulo at least 10 times each one's records/s. Both peers keep records in
  memory (kinesalite's LevelDB store is in memory unless given a path; moto's always is), which
  favours them.
- streams-latency-kinesis, streams-latency-sdk: from just before a record's put to its arrival
  at a push subscriber, p99 under 50 ms: boto3's ``subscribe_to_shard`` (an event stream), and
  the SDK's ``client.streams.subscribe`` (lines of JSON). One producer process puts a 1 KiB
  record ``--rate`` times a second (each put waits for its answer, so durable), its clock
  reading in the record; the subscriber, in this process, reads its own clock on arrival.
  Also reported, with no goal of their own: each put's round trip, and the same through
  ``subscribe_to_shard`` while the 4 producers put as fast as they can (``loaded_p99_ms``:
  half as many records).

- streams-delivery-lag: a delivery into a lake table (``client.streams.deliver``, ``--buffer
  64MB/5s``: the interval decides) of a 4-shard stream into which 4 producers put 20,000 JSON
  records a second for 30 s (PutRecords of 500, paced): every record is in the table less than
  the buffer interval + 1 s after its put was answered. The table's rows are counted from the
  delivery's own count, sampled every 0.2 s, and records are taken in the order they were put
  (across shards, an approximation); the delivery's own ``millis_behind`` is reported beside.

What it does: starts a throwaway server (``cumulo up``, SQLite and its streams' logs under a
temporary home in ``bench/.data/``, on the repository's disk, git-ignored), waits for its fork
servers to finish their imports, starts kinesalite and moto on free ports; runs ``--rounds``
rounds of the put measure, the three targets taking turns going first, ``--seconds`` each
(the figure of each target is its median round); then the latency measures, then the
delivery's; prints a table and one JSON line per measure. Producers, servers and subscriber
share the machine's cores.

Run it with ``make bench-streams``, or ``.venv/bin/python bench/streams.py [--seconds 10]
[--rounds 3] [--records 2000] [--rate 100] [--delivery-rate 20000] [--delivery-seconds 30]
[--delivery-interval 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from harness import (
    DATA,
    REPO,
    TOKEN,
    free_port,
    own_cpu_seconds,
    start_server,
    stop_server,
    wait_preloaded,
)

from cumulo import Client

sys.path.insert(0, str(REPO))  # tests/services.py: moto's server, as the tests start it
from tests.services import s3_server

PUT_GOAL = 50_000.0
PEER_GOAL = 10.0
LATENCY_GOAL_MS = 50.0
PRODUCERS = 4
SHARDS = 4
BATCH = 500
RECORD = 1024
KINESALITE = REPO / "bench" / "node" / "node_modules" / "kinesalite" / "cli.js"
_STAMP = struct.Struct("<d")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    key_id: str
    secret: str
    pid: int


def kinesis(target: Target, **config: Any) -> Any:
    return boto3.client("kinesis", endpoint_url=target.url, region_name="us-east-1",
                        aws_access_key_id=target.key_id, aws_secret_access_key=target.secret,
                        config=Config(retries={"max_attempts": 1}, read_timeout=120, **config))


def make_stream(target: Target, shards: int) -> str:
    name = "bench-" + uuid.uuid4().hex[:8]
    client = kinesis(target)
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name,
                                            WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return name


# --- throughput ---------------------------------------------------------------------------------


def produce(target: Target, stream: str, start_at: float, seconds: float
            ) -> tuple[int, int, int, float, float, float]:
    """One producer (in a process of its own): PutRecords of BATCH random records from
    ``start_at`` until ``seconds`` past it. Returns records written, records failed, calls,
    when it started and answered last (in seconds from ``start_at``), and its CPU seconds."""
    client = kinesis(target)
    batches = [[{"Data": os.urandom(RECORD), "PartitionKey": uuid.uuid4().hex}
                for _ in range(BATCH)] for _ in range(8)]
    client.put_records(StreamName=stream, Records=batches[0][:1])  # connected before the start
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time() - start_at
    cpu = own_cpu_seconds()
    written = failed = calls = 0
    while time.time() - start_at < seconds:
        answer = client.put_records(StreamName=stream, Records=batches[calls % len(batches)])
        failed += answer["FailedRecordCount"]
        written += BATCH - answer["FailedRecordCount"]
        calls += 1
    return written, failed, calls, began, time.time() - start_at, own_cpu_seconds() - cpu


@dataclass
class PutRound:
    records_s: float
    written: int
    failed: int
    calls: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float


def put_round(target: Target, seconds: float) -> PutRound:
    stream = make_stream(target, SHARDS)
    with multiprocessing.get_context("spawn").Pool(PRODUCERS) as pool:
        start_at = time.time() + 5.0  # the producers' processes start and connect meanwhile
        cpu = cpu_seconds(target.pid)
        done = pool.starmap(produce, [(target, stream, start_at, seconds)] * PRODUCERS)
        cpu = cpu_seconds(target.pid) - cpu
    late = max(d[3] for d in done)
    if late > 0.5:
        print(f"  (a producer started {late:.1f}s late: the machine is busy)", flush=True)
    written = sum(d[0] for d in done)
    elapsed = max(d[4] for d in done)
    with contextlib.suppress(Exception):
        kinesis(target).delete_stream(StreamName=stream)
    return PutRound(written / elapsed, written, sum(d[1] for d in done),
                    sum(d[2] for d in done), elapsed, cpu, sum(d[5] for d in done))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (moto and node fork none)."""
    import psutil

    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return float(total)


# --- latency ------------------------------------------------------------------------------------


def paced(target: Target, stream: str, count: int, rate: float, start_at: float,
          out: Any) -> None:
    """Put ``count`` records, ``rate`` a second, each holding the clock just before its put;
    send back (on the queue ``out``) each put's round trip, in milliseconds."""
    client = kinesis(target)
    pad = os.urandom(RECORD - _STAMP.size)
    trips = []
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(count):
        due = start_at + i / rate
        time.sleep(max(0.0, due - time.time()))
        sent = time.time()
        client.put_record(StreamName=stream, Data=_STAMP.pack(sent) + pad, PartitionKey="k")
        trips.append((time.time() - sent) * 1000)
    out.put(trips)


@dataclass
class Latency:
    arrivals: list[float]  # ms from just before each put to the record's arrival
    puts: list[float]  # ms of each put's round trip (acknowledged: on disk)


def follow(records: Iterator[bytes], target: Target, stream: str, count: int,
           rate: float) -> Latency:
    """Start the paced producer and time the arrival of its ``count`` records."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    producer = context.Process(target=paced, daemon=True,
                               args=(target, stream, count, rate, time.time() + 2.0, queue))
    producer.start()
    arrivals: list[float] = []
    deadline = time.time() + count / rate + 60
    for data in records:
        arrivals.append((time.time() - _STAMP.unpack_from(data)[0]) * 1000)
        if len(arrivals) >= count or time.time() > deadline:
            break
    puts = queue.get(timeout=60)
    producer.join(30)
    return Latency(arrivals, puts)


def kinesis_latency(target: Target, count: int, rate: float) -> Latency:
    """Through boto3's subscribe_to_shard (a registered consumer's event stream)."""
    stream = make_stream(target, 1)
    client = kinesis(target)
    arn = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"]
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="bench")[
        "Consumer"]["ConsumerARN"]
    answer = client.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000",
                                       StartingPosition={"Type": "LATEST"})

    def records() -> Iterator[bytes]:
        for event in answer["EventStream"]:
            for record in event["SubscribeToShardEvent"]["Records"]:
                yield record["Data"]

    try:
        return follow(records(), target, stream, count, rate)
    finally:
        answer["EventStream"].close()


def sdk_latency(client: Client, target: Target, count: int, rate: float) -> Latency:
    """Through the SDK's client.streams.subscribe (lines of JSON)."""
    stream = make_stream(target, 1)
    marker = client.streams.put(stream, b"marker", partition_key="k")
    subscription = client.streams.subscribe(stream, "shardId-000000000000",
                                            start="AFTER_SEQUENCE_NUMBER",
                                            sequence=marker["sequence_number"])
    try:
        return follow((r["data"] for r in subscription), target, stream, count, rate)
    finally:
        subscription.close()


def loaded_latency(target: Target, count: int, rate: float, seconds: float) -> Latency:
    """Through subscribe_to_shard while the 4 producers put as fast as they can."""
    done: list[PutRound] = []
    load = threading.Thread(target=lambda: done.append(put_round(target, seconds)))
    load.start()
    time.sleep(6.0)  # their processes started and putting (put_round gives them 5 s)
    try:
        return kinesis_latency(target, count, rate)
    finally:
        load.join()


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --- delivery into a table ---------------------------------------------------------------------


def paced_json(target: Target, stream: str, per_second: float, seconds: float, start_at: float
               ) -> list[tuple[float, int]]:
    """One of the delivery's producers: JSON records (a row of the table each), in PutRecords
    of BATCH, ``per_second`` records a second for ``seconds``. Returns (when acknowledged,
    records acknowledged so far) after each call."""
    client = kinesis(target)
    rows = [{"Data": json.dumps({"user": f"u{i}", "page": f"/p/{i % 97}", "ms": i}).encode(),
             "PartitionKey": uuid.uuid4().hex} for i in range(BATCH)]
    acked, done = [], 0
    calls = int(per_second * seconds / BATCH)
    for i in range(calls):
        time.sleep(max(0.0, start_at + i * BATCH / per_second - time.time()))
        answer = client.put_records(StreamName=stream, Records=rows)
        done += BATCH - answer["FailedRecordCount"]
        acked.append((time.time(), done))
    return acked


@dataclass
class DeliveryLag:
    rate: float  # records a second put, all producers together
    interval: float  # the delivery's buffer interval, seconds
    put: int
    delivered: int
    failed: int
    record_lag_s: list[float]  # per record, from its put's answer to the sample that saw it in
    reported_ms: list[int]  # the delivery's own millis_behind, sampled


def delivery_lag(client: Client, target: Target, rate: float, seconds: float,
                 interval: float) -> DeliveryLag:
    """Put ``rate`` JSON records a second for ``seconds`` into a stream delivered into a lake
    table with ``--buffer 64MB/{interval}s``; sample the delivery's rows written every 0.2 s.
    A record's lag is from its put's answer to the first sample that counts it in the table
    (records are taken in the order they were put, across shards: an approximation)."""
    stream = make_stream(target, SHARDS)
    with contextlib.suppress(Exception):
        client.tables.create_database("bench")
    table = f"bench.clicks_{uuid.uuid4().hex[:6]}"
    client.sql(f"CREATE TABLE {table} AS SELECT 'u1' AS user, '/home' AS page, 0::BIGINT AS ms "
               "LIMIT 0")
    made = client.streams.deliver(stream, table=table, buffer=f"64MB/{interval:g}s")
    name = made.get("name", table)
    start_at = time.time() + 5.0
    with multiprocessing.get_context("spawn").Pool(PRODUCERS) as pool:
        running = pool.starmap_async(paced_json, [(target, stream, rate / PRODUCERS, seconds,
                                                   start_at)] * PRODUCERS)
        samples: list[tuple[float, int]] = []
        reported: list[int] = []
        deadline = start_at + seconds + interval + 30
        while time.time() < deadline:
            doc = client.streams.delivery(stream, name)
            samples.append((time.time(), int(doc["records"]) + int(doc["failed"])))
            if time.time() > start_at:
                reported.append(int(doc["millis_behind"]))
            if running.ready() and samples[-1][1] >= sum(a[-1][1] for a in running.get()):
                break
            time.sleep(0.2)
        acked = running.get()
    final = client.streams.delivery(stream, name)
    # When each record (in order of acknowledgement, all producers merged) was acknowledged.
    events: list[tuple[float, int]] = []  # (when a call was answered, records it wrote)
    for one in acked:
        before = 0
        for when, total in one:
            events.append((when, total - before))
            before = total
    events.sort()
    put_times: list[float] = []
    for when, n in events:
        put_times += [when] * n
    lags, at = [], 0
    for when, count in samples:
        while at < min(count, len(put_times)):
            lags.append(when - put_times[at])
            at += 1
    client.streams.stop_delivery(stream, name)
    return DeliveryLag(rate, interval, len(put_times), int(final["records"]),
                       int(final["failed"]), lags, reported)


# --- the peers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def kinesalite(work: Path) -> Iterator[tuple[str, int]]:
    if not KINESALITE.exists():
        sys.exit(f"kinesalite is not installed ({KINESALITE}): run 'make bench-streams', which "
                 "installs it with npm")
    port = free_port()
    log = work / "kinesalite.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["node", str(KINESALITE), "--port", str(port),
                                 "--createStreamMs", "0", "--deleteStreamMs", "0",
                                 "--updateStreamMs", "0", "--shardLimit", "100"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                sys.exit(f"kinesalite exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)
                break
            if time.monotonic() > deadline:
                sys.exit(f"kinesalite did not answer in 30s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="streams-", dir=DATA))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            DATA.rmdir()  # only if nothing else is left there


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each put round (10)")
    parser.add_argument("--rounds", type=int, default=3, help="put rounds per target (3)")
    parser.add_argument("--records", type=int, default=2000,
                        help="records each latency measure puts (2000)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="records a second the latency producer puts (100)")
    parser.add_argument("--delivery-rate", type=float, default=20_000.0,
                        help="records a second put into the delivered stream (20000)")
    parser.add_argument("--delivery-seconds", type=float, default=30.0,
                        help="how long they are put (30)")
    parser.add_argument("--delivery-interval", type=float, default=5.0,
                        help="the delivery's buffer interval, seconds (5)")
    args = parser.parse_args()

    rounds: dict[str, list[PutRound]] = {}
    with workspace() as work, contextlib.ExitStack() as stack:
        proc, url = start_server(work)
        stack.callback(stop_server, proc)
        try:
            client = stack.enter_context(Client(url, token=TOKEN, timeout=120))
            wait_preloaded(client)
            key = client.keys.create("bench")
            cumulo = Target("cumulo", url, key["access_key_id"], key["secret_access_key"],
                            proc.pid)
            lite_url, lite_pid = stack.enter_context(kinesalite(work))
            moto = stack.enter_context(s3_server(work))  # moto_server: every service, Kinesis too
            targets = [cumulo, Target("kinesalite", lite_url, "bench", "bench", lite_pid),
                       Target("moto", moto.endpoint, "testing", "testing", moto.proc.pid)]
            for target in targets:  # untimed: connections, first imports, first files
                put_round(target, 2.0)
            for rnd in range(args.rounds):
                for target in targets[rnd % 3:] + targets[:rnd % 3]:
                    got = put_round(target, args.seconds)
                    rounds.setdefault(target.name, []).append(got)
                    print(f"round {rnd + 1}/{args.rounds}: {target.name} "
                          f"{got.records_s:,.0f} records/s ({got.failed} failed)", flush=True)
            latency = {"kinesis": kinesis_latency(cumulo, args.records, args.rate),
                       "sdk": sdk_latency(client, cumulo, args.records, args.rate),
                       "kinesis-loaded": loaded_latency(cumulo, args.records // 2, args.rate,
                                                        args.records / 2 / args.rate + 12)}
            for name, measured in latency.items():
                print(f"latency ({name}): p99 {percentile(measured.arrivals, 99):.1f} ms",
                      flush=True)
            lag = delivery_lag(client, cumulo, args.delivery_rate, args.delivery_seconds,
                               args.delivery_interval)
            print(f"delivery: lag at most {max(lag.record_lag_s):.1f}s", flush=True)
        except BaseException:
            server_log = work / "server.log"
            if server_log.exists():
                print(f"server log (tail):\n{server_log.read_text()[-3000:]}", file=sys.stderr)
            raise
    report(rounds, latency, lag, args)
    return 0


def report(rounds: dict[str, list[PutRound]], latency: dict[str, Latency], lag: DeliveryLag,
           args: argparse.Namespace) -> None:
    rate = {name: statistics.median(r.records_s for r in runs) for name, runs in rounds.items()}
    print()
    print(f"streams: {PRODUCERS} producers x PutRecords of {BATCH} records of {RECORD} B into "
          f"{SHARDS} shards, {args.rounds} rounds of {args.seconds:.0f}s ({os.cpu_count()} CPUs)")
    print(f"{'target':<12}{'records/s':>12}{'best':>10}{'calls/s':>9}{'failed':>8}"
          f"{'server CPU/s':>14}{'clients CPU/s':>15}")
    for name, runs in rounds.items():
        print(f"{name:<12}{rate[name]:>12,.0f}{max(r.records_s for r in runs):>10,.0f}"
              f"{statistics.median(r.calls / r.seconds for r in runs):>9.0f}"
              f"{sum(r.failed for r in runs):>8}"
              f"{statistics.median(r.server_cpu_s / r.seconds for r in runs):>14.2f}"
              f"{statistics.median(r.client_cpu_s / r.seconds for r in runs):>15.2f}")
    print("CPU/s: CPU seconds per second of the round (1.0 = one core busy): the target's "
          "server process, and the 4 producers together")
    ratios = {peer: rate["cumulo"] / rate[peer] for peer in ("kinesalite", "moto")}
    print(f"put-to-get, {args.rate:.0f} records/s of {RECORD} B: ms from just before the put "
          "to the arrival; and the put's own round trip (acknowledged, on disk)")
    for name, got in latency.items():
        print(f"  {name:<15} {len(got.arrivals)} records: median "
              f"{statistics.median(got.arrivals):.1f}, p90 {percentile(got.arrivals, 90):.1f}, "
              f"p99 {percentile(got.arrivals, 99):.1f}, max {max(got.arrivals):.1f}; put p99 "
              f"{percentile(got.puts, 99):.1f}")

    lags = lag.record_lag_s
    goal_s = lag.interval + 1
    print(f"delivery into a table, --buffer 64MB/{lag.interval:g}s, {lag.rate:,.0f} records/s of "
          f"JSON: {lag.put:,} put, {lag.delivered:,} in the table, {lag.failed} failed; lag "
          f"from put to table: median {statistics.median(lags):.1f}s, p99 "
          f"{percentile(lags, 99):.1f}s, max {max(lags):.1f}s (the delivery's own "
          f"millis_behind, sampled: max {max(lag.reported_ms) / 1000:.1f}s); goal < "
          f"{goal_s:g}s")

    def line(bench: str, **fields: Any) -> None:
        print(json.dumps({"bench": bench, **fields}))

    def cpu(runs: list[PutRound]) -> dict[str, float]:
        return {"server_cpu_per_s": round(statistics.median(r.server_cpu_s / r.seconds
                                                            for r in runs), 2),
                "clients_cpu_per_s": round(statistics.median(r.client_cpu_s / r.seconds
                                                             for r in runs), 2)}

    line("streams-put", records_s=round(rate["cumulo"]), goal=f">= {PUT_GOAL:.0f}",
         met=rate["cumulo"] >= PUT_GOAL, producers=PRODUCERS, batch=BATCH,
         record_bytes=RECORD, shards=SHARDS, seconds=args.seconds, rounds=args.rounds,
         stat="median", runs=[round(r.records_s) for r in rounds["cumulo"]],
         **cpu(rounds["cumulo"]))
    for peer, ratio in ratios.items():
        line(f"streams-put-vs-{peer}", ratio=round(ratio, 2), goal=f">= {PEER_GOAL:.0f}",
             met=ratio >= PEER_GOAL, cumulo_records_s=round(rate["cumulo"]),
             peer_records_s=round(rate[peer]), runs=[round(r.records_s) for r in rounds[peer]],
             **cpu(rounds[peer]))
    loaded = latency["kinesis-loaded"]
    for name in ("kinesis", "sdk"):
        got = latency[name]
        p99 = percentile(got.arrivals, 99)
        extra = {"loaded_p99_ms": round(percentile(loaded.arrivals, 99), 1),
                 "loaded_records": len(loaded.arrivals)} if name == "kinesis" else {}
        line(f"streams-latency-{name}", p99_ms=round(p99, 1), goal=f"< {LATENCY_GOAL_MS:.0f}",
             met=p99 < LATENCY_GOAL_MS and len(got.arrivals) == args.records,
             records=len(got.arrivals), expected=args.records, rate=args.rate,
             median_ms=round(statistics.median(got.arrivals), 1),
             p90_ms=round(percentile(got.arrivals, 90), 1),
             max_ms=round(max(got.arrivals), 1), put_p99_ms=round(percentile(got.puts, 99), 1),
             **extra)

    line("streams-delivery-lag", lag_s=round(max(lags), 2), goal=f"< {goal_s:g}",
         met=max(lags) < goal_s and lag.delivered + lag.failed == lag.put,
         interval_s=lag.interval, rate=lag.rate, seconds=args.delivery_seconds, put=lag.put,
         delivered=lag.delivered, failed=lag.failed,
         median_s=round(statistics.median(lags), 2), p99_s=round(percentile(lags, 99), 2),
         reported_max_s=round(max(lag.reported_ms) / 1000, 2))


if __name__ == "__main__":
    sys.exit(main())
