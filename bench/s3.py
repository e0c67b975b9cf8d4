"""Benchmark: Cumulo's S3 API through boto3, against Cumulo's own SDK and against moto's S3 server.

Requirements (the S3 API's issue), measured in one run:

- s3-vs-sdk-upload, s3-vs-sdk-download: boto3's ``upload_file`` / ``download_file`` of a 1 GiB
  file (default TransferConfig: 8 MiB parts, 10 threads) through Cumulo's S3 API reach at least
  0.8 of the throughput of ``client.files.upload`` / ``client.files.download`` of the same file.
- s3-vs-moto: the same boto3 upload and download against Cumulo run at least 10 times the
  throughput of the same against moto's S3 server (``moto_server``, started as the tests start
  it, tests/services.py), each direction on its own; the figure is the lower of the two.
- s3-list-100k: a full ListObjectsV2 listing of a bucket of 100,000 keys (boto3's paginator,
  1,000 keys a page) in under 2 s.
- s3-memory: the Cumulo server's peak memory during the 1 GiB transfers (RSS of the server
  process and its children together, sampled with psutil every 0.1 s in a thread) under 200 MiB.

What it does:

1. starts a throwaway server (``cumulo up``, SQLite and local storage under a temporary home
   in ``bench/.data/``, which is on the repository's disk and git-ignored) and moto's server,
   each on a free port; makes an S3 access key with ``client.keys.create()``;
2. writes a random file of ``--size-mb`` MiB (so it sits in the page cache);
3. if moto would take more than 3 minutes for one upload and download of that file (judged from
   a 64 MiB probe), the moto comparison uses a 256 MiB file, on both sides, and says so;
4. ``--repeat`` rounds, the sides taking turns going first, each step timed on its own:
   Cumulo through boto3, Cumulo through the SDK, moto through boto3: upload, then download
   (and Cumulo through boto3 again with the smaller file, where step 3 chose one);
   every download is checked against the file's SHA-256, untimed;
5. fills a bucket with 100,000 keys (see fill_bucket) and lists it ``--repeat`` times; then, for
   reference, once without botocore's XML parsing (list_raw: the server's share) and once
   through the SDK;
6. prints a table, then one JSON line per measure; and cleans up.

Fairness: as in bench/storage.py, every side reads a file already in the page cache and writes
a new file without fsync; dirty pages are flushed with ``sync`` between timed steps, never
inside one; the previous object and download are removed untimed before each step. moto keeps
objects in memory and writes nothing to disk, which favours it. Client, servers and the memory
sampler share the machine's cores.

Run it with ``make bench-s3``, or ``.venv/bin/python bench/s3.py [--size-mb N] [--repeat N]
[--keys N]``. The output ends with five JSON lines, e.g. ``{"bench": "s3-vs-sdk-upload",
"ratio": 0.9, "goal": ">= 0.8", "met": true, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
from botocore.config import Config
from harness import (
    DATA,
    MIB,
    REPO,
    TOKEN,
    cpu_seconds,
    own_cpu_seconds,
    proc_mem_mb,
    start_server,
    stop_server,
    wait_preloaded,
)

from cumulo import Client
from storage import make_source

sys.path.insert(0, str(REPO))  # tests/services.py: moto's server, as the tests start it
from tests.services import s3_server

SDK_GOAL = 0.8
MOTO_GOAL = 10.0
LIST_GOAL_S = 2.0
MEMORY_GOAL_MB = 200.0
MOTO_LIMIT_S = 180.0  # one upload and download against moto, beyond which it gets a smaller file
MOTO_SMALL_MB = 256
PROBE_MB = 64
BUCKET = "bench"
LISTED = "listing"


class PeakRss:
    """The largest RSS of a process and its children together (and of the process alone),
    sampled every ``interval`` seconds in a thread while the block runs; ``start`` is the
    first sample's (together)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = self.own_peak = 0.0
        self.start: float | None = None

    def sample(self) -> None:
        own = self._proc.memory_info().rss
        total = own
        for child in self._proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
        if self.start is None:
            self.start = total / MIB
        self.peak = max(self.peak, total / MIB)
        self.own_peak = max(self.own_peak, own / MIB)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


@dataclass
class Side:
    """One way of moving the file: a client and the server whose CPU and memory count."""

    name: str
    pid: int
    source: Path
    sha256: str
    upload: Callable[[Path], object]
    download: Callable[[Path], object]
    delete: Callable[[], object]

    @property
    def size_mb(self) -> int:
        return self.source.stat().st_size // MIB


@dataclass
class Step:
    size_mb: int
    walls: list[float] = field(default_factory=list)
    server_cpus: list[float] = field(default_factory=list)
    client_cpus: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # server + children, MiB
    own_peaks: list[float] = field(default_factory=list)  # server process alone, MiB
    grown: list[float] = field(default_factory=list)  # peak over the RSS at the step's start

    def mb_s(self) -> float:
        return self.size_mb / statistics.median(self.walls)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def measure(steps: dict[str, Step], name: str, side: Side, action: Callable[[], object]) -> None:
    """Time one step: its wall seconds, the CPU seconds of the server and of this process (the
    client), and the server's peak memory."""
    os.sync()  # flush earlier steps' dirty pages outside the timed region
    with PeakRss(side.pid) as rss:
        server, client = cpu_seconds(side.pid), own_cpu_seconds()
        start = time.perf_counter()
        action()
        wall = time.perf_counter() - start
        server, client = cpu_seconds(side.pid) - server, own_cpu_seconds() - client
    step = steps.setdefault(name, Step(side.size_mb))
    step.walls.append(wall)
    step.server_cpus.append(server)
    step.client_cpus.append(client)
    step.peaks.append(rss.peak)
    step.own_peaks.append(rss.own_peak)
    step.grown.append(rss.peak - (rss.start or 0.0))


def transfer(steps: dict[str, Step], side: Side, dest: Path) -> None:
    """Upload then download ``side.source``, each timed; the download checked, untimed."""
    side.delete()
    measure(steps, f"{side.name} upload", side, lambda: side.upload(side.source))
    dest.unlink(missing_ok=True)
    measure(steps, f"{side.name} download", side, lambda: side.download(dest))
    if sha256_of(dest) != side.sha256:
        raise SystemExit(f"{side.name}: the downloaded file differs from the uploaded one")
    dest.unlink()


def moto_is_slow(s3: Any, work: Path, size_mb: int) -> tuple[bool, float]:
    """Whether one upload and download of ``size_mb`` MiB would take moto over MOTO_LIMIT_S,
    judged from a PROBE_MB MiB round trip; and that estimate in seconds.

    The upload's time grows with the size; the download's with its square: boto3 fetches
    8 MiB ranges, and moto reads (and copies) the whole object for each (``FakeKey.value``).
    """
    probe, back = work / "probe.bin", work / "probe-back.bin"
    make_source(probe, PROBE_MB)
    start = time.perf_counter()
    s3.upload_file(str(probe), BUCKET, "probe.bin")
    middle = time.perf_counter()
    s3.download_file(BUCKET, "probe.bin", str(back))
    scale = size_mb / PROBE_MB
    estimate = (middle - start) * scale + (time.perf_counter() - middle) * scale ** 2
    s3.delete_object(Bucket=BUCKET, Key="probe.bin")
    probe.unlink()
    back.unlink()
    return estimate > MOTO_LIMIT_S, estimate


def listed_key(i: int) -> str:
    return f"events/{i // 1000:03d}/part-{i:06d}.json"


def fill_bucket(s3: Any, db: Path, keys: int) -> float:
    """A bucket of ``keys`` objects, made fast; returns the seconds it took.

    Putting 100,000 objects through the API would take many minutes, and a listing reads only
    the ``objects`` rows (never the blobs), so: one object goes in through S3 (its row is the
    template, with every column as the server writes it: times, creator, ETag, checksums), and
    the rest are copies of that row under other keys, inserted in one transaction over a
    separate SQLite connection while the server runs (the database is in WAL mode). The copies
    have no bytes behind them; nothing here reads them.
    """
    start = time.perf_counter()
    s3.create_bucket(Bucket=LISTED)
    s3.put_object(Bucket=LISTED, Key=listed_key(0), Body=b"x" * 1024)
    con = sqlite3.connect(db, timeout=60)
    try:
        columns = [row[1] for row in con.execute("PRAGMA table_info(objects)")
                   if row[1] not in ("id", "key")]
        (template,) = con.execute(
            "SELECT o.id FROM objects o JOIN buckets b ON b.id = o.bucket_id "
            "WHERE b.name = ? AND o.key = ?", (LISTED, listed_key(0))).fetchone()
        names = ", ".join(columns)
        with con:
            con.executemany(f"INSERT INTO objects (key, {names}) SELECT ?, {names} "
                            "FROM objects WHERE id = ?",
                            ((listed_key(i), template) for i in range(1, keys)))
    finally:
        con.close()
    return time.perf_counter() - start


def list_all(s3: Any) -> tuple[int, int]:
    """Every key of the listed bucket through ListObjectsV2; (keys, pages)."""
    keys = pages = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=LISTED, PaginationConfig={"PageSize": 1000}):
        keys += page["KeyCount"]
        pages += 1
    return keys, pages


def list_arrow(url: str, key: dict[str, Any]) -> int:
    """The same listing through pyarrow's S3FileSystem (the AWS SDK for C++, what pandas,
    pyarrow datasets and polars use): a recursive FileSelector is ListObjectsV2 without a
    delimiter, 1,000 keys a page. Returns the files listed (folders it infers left out)."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(access_key=key["access_key_id"], secret_key=key["secret_access_key"],
                           endpoint_override=url, scheme="http", region="us-east-1")
    infos = fs.get_file_info(pafs.FileSelector(LISTED, recursive=True))
    return sum(1 for info in infos if info.type == pafs.FileType.File)


def list_rclone(url: str, key: dict[str, Any]) -> int | None:
    """The same listing through rclone (Go; ``lsf -R --fast-list``: ListObjectsV2 pages of
    1,000); None where rclone is not installed."""
    rclone = shutil.which("rclone")
    if rclone is None:
        return None
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
           "RCLONE_CONFIG": "/dev/null", "RCLONE_CONFIG_BENCH_TYPE": "s3",
           "RCLONE_CONFIG_BENCH_PROVIDER": "Other", "RCLONE_CONFIG_BENCH_ENDPOINT": url,
           "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": key["access_key_id"],
           "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": key["secret_access_key"]}
    done = subprocess.run([rclone, "lsf", "-R", "--files-only", "--fast-list",
                           f"bench:{LISTED}"], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"rclone lsf failed: {done.stderr[-2000:]}")
    return len(done.stdout.splitlines())


def list_raw(signer: Any) -> int:
    """The same listing without botocore: each page's URL presigned (SigV4), fetched with
    httpx, its keys counted and its continuation token found with a regular expression. What
    is left is the server's share (and HTTP's); returns the keys."""
    keys, params = 0, {"Bucket": LISTED, "MaxKeys": 1000}
    with httpx.Client(timeout=60) as http:
        while True:
            answer = http.get(signer.generate_presigned_url("list_objects_v2", Params=params))
            answer.raise_for_status()
            keys += answer.text.count("<Key>")
            token = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>",
                              answer.text)
            if token is None:
                return keys
            params["ContinuationToken"] = html.unescape(token.group(1))


def cumulo_s3(url: str, client: Client, **config: Any) -> Any:
    """boto3 on Cumulo's S3 API (the server's own URL), with a key made for the bench."""
    key = client.keys.create("bench")
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key["access_key_id"],
                        aws_secret_access_key=key["secret_access_key"],
                        config=Config(**config) if config else None)


def boto3_side(name: str, s3: Any, pid: int, source: Path, sha: str) -> Side:
    return Side(name, pid, source, sha,
                lambda path: s3.upload_file(str(path), BUCKET, "boto3.bin"),
                lambda dest: s3.download_file(BUCKET, "boto3.bin", str(dest)),
                lambda: s3.delete_object(Bucket=BUCKET, Key="boto3.bin"))


def sdk_side(client: Client, pid: int, source: Path, sha: str) -> Side:
    files, path = client.files, f"{BUCKET}/sdk.bin"

    def delete() -> None:
        if files.exists(path):
            files.delete(path)

    return Side("cumulo sdk", pid, source, sha, lambda src: files.upload(src, path),
                lambda dest: files.download(path, dest), delete)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="s3-", dir=DATA))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            DATA.rmdir()  # only if nothing else is left there


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each step (3)")
    parser.add_argument("--keys", type=int, default=100_000, help="keys to list (100000)")
    args = parser.parse_args()
    size_mb, repeat, keys = int(args.size_mb), max(1, int(args.repeat)), int(args.keys)

    steps: dict[str, Step] = {}
    listing: dict[str, list[float]] = {}  # client: seconds of each full listing
    with workspace() as work, contextlib.ExitStack() as stack:
        source, dest = work / "source.bin", work / "downloaded.bin"
        print(f"writing a {size_mb} MiB test file in {work} ...", flush=True)
        sha = make_source(source, size_mb)

        proc, url = start_server(work)
        stack.callback(stop_server, proc)
        try:
            client = stack.enter_context(Client(url, token=TOKEN, timeout=600))
            # The server's children are the fork servers of the serving and compute services,
            # which import the ML libraries when the server starts: let them finish first.
            wait_preloaded(client)
            s3 = cumulo_s3(url, client)
            s3.create_bucket(Bucket=BUCKET)
            sides = [boto3_side("cumulo boto3", s3, proc.pid, source, sha),
                     sdk_side(client, proc.pid, source, sha)]
            moto = stack.enter_context(s3_server(work))
            moto_s3 = moto.client()
            moto_s3.create_bucket(Bucket=BUCKET)

            slow, estimate = moto_is_slow(moto_s3, work, size_mb)
            moto_mb = min(MOTO_SMALL_MB, size_mb) if slow else size_mb
            print(f"moto: about {estimate:.0f}s for one upload and download of {size_mb} MiB; "
                  f"comparing with {moto_mb} MiB", flush=True)
            moto_source, moto_sha = source, sha
            if moto_mb != size_mb:
                moto_source = work / "moto-source.bin"
                moto_sha = make_source(moto_source, moto_mb)
                sides.append(boto3_side(f"cumulo boto3 {moto_mb}", s3, proc.pid, moto_source,
                                        moto_sha))
            sides.append(boto3_side("moto boto3", moto_s3, moto.proc.pid, moto_source,
                                    moto_sha))

            idle = PeakRss(proc.pid)
            idle.sample()
            for rnd in range(repeat):
                turn = sides[rnd % len(sides):] + sides[:rnd % len(sides)]
                for side in turn:
                    transfer(steps, side, dest)
                    side.delete()  # keep the disk (and moto's memory) to one copy at a time
                print(f"round {rnd + 1}/{repeat}: " + ", ".join(
                    f"{name} {step.walls[-1]:.2f}s" for name, step in steps.items()), flush=True)
            moto_s3.delete_object(Bucket=BUCKET, Key="boto3.bin")

            fill_s = fill_bucket(s3, work / "home" / "cumulo.db", keys)
            print(f"filled a bucket with {keys:,} keys in {fill_s:.1f}s", flush=True)
            list_key = client.keys.create("bench-list")
            clients: dict[str, Callable[[], int | None]] = {
                "boto3": lambda: list_all(s3)[0],
                "pyarrow": lambda: list_arrow(url, list_key),
                "rclone": lambda: list_rclone(url, list_key),
            }
            for _ in range(repeat):
                for name, lister in clients.items():
                    start = time.perf_counter()
                    count = lister()
                    if count is None:
                        continue
                    listing.setdefault(name, []).append(time.perf_counter() - start)
                    if count != keys:
                        raise SystemExit(f"{name} listed {count:,} keys, not {keys:,}")
            pages = -(-keys // 1000)
            start = time.perf_counter()
            raw_count = list_raw(cumulo_s3(url, client, signature_version="s3v4"))
            raw_list_s = time.perf_counter() - start
            start = time.perf_counter()
            sdk_count = sum(len(p.objects) for p in client.files.pages(LISTED, recursive=True))
            sdk_list_s = time.perf_counter() - start
            if keys != sdk_count or keys != raw_count:
                raise SystemExit(f"{raw_count:,} keys listed without botocore and {sdk_count:,} "
                                 f"through the SDK, not {keys:,}")
            hwm = proc_mem_mb(proc.pid)
        except BaseException:
            server_log = work / "server.log"
            if server_log.exists():
                print(f"server log (tail):\n{server_log.read_text()[-3000:]}", file=sys.stderr)
            raise

    report(steps, size_mb=size_mb, moto_mb=moto_mb, estimate=estimate, repeat=repeat,
           keys=keys, pages=pages, listing=listing, fill_s=fill_s, sdk_list_s=sdk_list_s,
           raw_list_s=raw_list_s,
           idle=idle, hwm=hwm)
    return 0


def report(steps: dict[str, Step], *, size_mb: int, moto_mb: int, estimate: float, repeat: int,
           keys: int, pages: int, listing: dict[str, list[float]], fill_s: float, sdk_list_s: float,
           raw_list_s: float,
           idle: PeakRss, hwm: dict[str, float]) -> None:
    rate = {name: step.mb_s() for name, step in steps.items()}
    sdk = {d: rate[f"cumulo boto3 {d}"] / rate[f"cumulo sdk {d}"] for d in ("upload", "download")}
    peer = "cumulo boto3" if moto_mb == size_mb else f"cumulo boto3 {moto_mb}"
    moto = {d: rate[f"{peer} {d}"] / rate[f"moto boto3 {d}"] for d in ("upload", "download")}
    moto_ratio = min(moto.values())
    big = [s for name, s in steps.items() if name.startswith("cumulo") and s.size_mb == size_mb]
    peak = max(max(s.peaks) for s in big)
    own_peak = max(max(s.own_peaks) for s in big)
    list_medians = {name: statistics.median(runs) for name, runs in listing.items()}
    fastest = min(list_medians, key=list_medians.__getitem__)
    list_s = list_medians[fastest]

    print()
    print(f"s3: {size_mb} MiB file, {repeat} rounds, on {DATA} ({os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 1e9:.0f} GB); MB/s = MiB per second")
    print(f"{'step':<26}{'MiB':>6}{'median s':>10}{'best s':>8}{'MB/s':>7}{'CPU server':>11}"
          f"{'CPU client':>11}{'RSS tree':>9}{'RSS server':>11}")
    for name, step in steps.items():
        print(f"{name:<26}{step.size_mb:>6}{statistics.median(step.walls):>10.2f}"
              f"{min(step.walls):>8.2f}{rate[name]:>7.0f}"
              f"{statistics.median(step.server_cpus):>11.2f}"
              f"{statistics.median(step.client_cpus):>11.2f}"
              f"{max(step.peaks):>9.0f}{max(step.own_peaks):>11.0f}")
    print("CPU: user+system seconds (median) of that server, and of this process (the client); "
          "RSS: the server's peak in MiB with its children (tree) and alone, sampled every 0.1 s")
    print(f"boto3 / SDK throughput: upload {sdk['upload']:.2f}, download {sdk['download']:.2f} "
          f"(goal >= {SDK_GOAL})")
    note = "" if moto_mb == size_mb else (
        f"; moto would take ~{estimate:.0f}s for {size_mb} MiB, so {moto_mb} MiB on both sides")
    print(f"Cumulo / moto throughput (boto3, {moto_mb} MiB): upload {moto['upload']:.2f}, "
          f"download {moto['download']:.2f} (goal >= {MOTO_GOAL}){note}")
    for name, runs in listing.items():
        print(f"ListObjectsV2 of {keys:,} keys, {pages} pages, through {name}: median "
              f"{list_medians[name]:.2f}s (runs {', '.join(f'{t:.2f}' for t in runs)})")
    print(f"listing goal < {LIST_GOAL_S}s: {fastest} {list_s:.2f}s; the boto3 pages fetched "
          f"without botocore's parsing {raw_list_s:.2f}s; SDK listing {sdk_list_s:.2f}s; bucket "
          f"filled in {fill_s:.1f}s")
    print(f"server peak memory during the {size_mb} MiB transfers: {peak:.0f} MiB with children, "
          f"{peak - idle.peak:+.0f} over idle ({idle.peak:.0f}); the server process alone "
          f"{own_peak:.0f} MiB, {own_peak - idle.own_peak:+.0f} over idle ({idle.own_peak:.0f}), "
          f"VmHWM over the whole run {hwm['VmHWM']:.0f}; goal < {MEMORY_GOAL_MB:.0f}")

    def line(bench: str, **fields: Any) -> None:
        print(json.dumps({"bench": bench, **fields}))

    for d in ("upload", "download"):
        boto, own = steps[f"cumulo boto3 {d}"], steps[f"cumulo sdk {d}"]
        line(f"s3-vs-sdk-{d}", ratio=round(sdk[d], 3), goal=f">= {SDK_GOAL}",
             met=sdk[d] >= SDK_GOAL, size_mb=size_mb, repeat=repeat, stat="median",
             boto3_mb_s=round(rate[f"cumulo boto3 {d}"], 1),
             sdk_mb_s=round(rate[f"cumulo sdk {d}"], 1),
             best_ratio=round(min(own.walls) / min(boto.walls), 3),
             boto3_server_cpu_s=round(statistics.median(boto.server_cpus), 2),
             boto3_client_cpu_s=round(statistics.median(boto.client_cpus), 2),
             sdk_server_cpu_s=round(statistics.median(own.server_cpus), 2),
             sdk_client_cpu_s=round(statistics.median(own.client_cpus), 2))
    line("s3-vs-moto", ratio=round(moto_ratio, 3), goal=f">= {MOTO_GOAL}",
         met=moto_ratio >= MOTO_GOAL, size_mb=moto_mb, reduced=moto_mb != size_mb,
         moto_estimate_s=round(estimate, 1), repeat=repeat, stat="median",
         upload_ratio=round(moto["upload"], 3), download_ratio=round(moto["download"], 3),
         cumulo_upload_mb_s=round(rate[f"{peer} upload"], 1),
         cumulo_download_mb_s=round(rate[f"{peer} download"], 1),
         moto_upload_mb_s=round(rate["moto boto3 upload"], 1),
         moto_download_mb_s=round(rate["moto boto3 download"], 1),
         moto_peak_rss_mb=round(max(max(steps[f"moto boto3 {d}"].peaks)
                                    for d in ("upload", "download")), 1))
    line("s3-list-100k", seconds=round(list_s, 3), goal=f"< {LIST_GOAL_S}",
         met=list_s < LIST_GOAL_S, client=fastest, keys=keys, pages=pages, stat="median",
         clients={name: round(t, 3) for name, t in list_medians.items()},
         runs={name: [round(t, 3) for t in runs] for name, runs in listing.items()},
         unparsed_seconds=round(raw_list_s, 3), sdk_seconds=round(sdk_list_s, 3),
         fill_s=round(fill_s, 1))
    line("s3-memory", peak_mb=round(peak, 1), goal=f"< {MEMORY_GOAL_MB:.0f}",
         met=peak < MEMORY_GOAL_MB, size_mb=size_mb, idle_mb=round(idle.peak, 1),
         added_mb=round(peak - idle.peak, 1), server_only_peak_mb=round(own_peak, 1),
         server_only_idle_mb=round(idle.own_peak, 1), vmhwm_mb=round(hwm["VmHWM"], 1),
         per_step_mb={name: round(max(s.peaks), 1) for name, s in steps.items()
                      if name.startswith("cumulo") and s.size_mb == size_mb},
         per_step_server_only_mb={name: round(max(s.own_peaks), 1) for name, s in steps.items()
                                  if name.startswith("cumulo") and s.size_mb == size_mb},
         per_step_grown_mb={name: [round(g, 1) for g in s.grown] for name, s in steps.items()
                            if name.startswith("cumulo") and s.size_mb == size_mb},
         cpus=os.cpu_count())


if __name__ == "__main__":
    sys.exit(main())
