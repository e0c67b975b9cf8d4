"""Benchmark: object storage throughput against ``cp`` on the same disk.

Requirement: upload and download of a 1 GB file through Cumulo reach at least 0.5 of the
throughput of copying the same file with ``cp`` on the same disk.

What it does, in one run:

1. starts a throwaway server (``cumulo up``, SQLite and local storage under a temporary home
   in ``bench/.data/``, which is on the repository's disk and git-ignored), on a free port;
2. writes a random file of ``--size-mb`` MiB there (so it sits in the page cache);
3. ``--repeat`` rounds of, each timed on its own:
   - ``cp`` of that file to a new file in the same folder (the baseline),
   - ``client.files.upload(file, "bench/blob.bin")`` through the SDK,
   - ``client.files.download("bench/blob.bin", new_file)`` through the SDK;
4. prints a table and the ratios (Cumulo MB/s over cp MB/s, median of the rounds) for upload
   and for download, the server's peak RSS (VmHWM), then one JSON line; and cleans up.

Fairness: every side reads a file that is already in the page cache and writes a new file
without fsync (cp does not fsync, and neither does the server); dirty pages are flushed with
``sync`` *between* timed steps, never inside one; the old object and old copies are removed
untimed before each step. ``cp --reflink=never`` makes sure cp really copies bytes.

Run it with ``make bench``, or ``.venv/bin/python bench/storage.py [--size-mb N] [--repeat N]``.
The last line of output is JSON, e.g. ``{"bench": "storage", "upload_ratio": 0.7, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    DATA,
    MIB,
    TOKEN,
    cpu_seconds,
    own_cpu_seconds,
    proc_mem_mb,
    start_server,
    stop_server,
)

from cumulo import Client

GOAL = 0.5
KEY = "bench/blob.bin"



def make_source(path: Path, size_mb: int) -> str:
    """A file of random bytes (nothing compresses or dedups it); returns its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(16 * MIB)
    left = size_mb * MIB
    with open(path, "wb") as f:
        i = 0
        while left:
            # Vary each block so no two MiB of the file are alike.
            chunk = (i.to_bytes(8, "little") + block[8:])[: min(left, len(block))]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            i += 1
    os.sync()
    with open(path, "rb") as f:  # make sure it is all in the page cache
        while f.read(16 * MIB):
            pass
    return digest.hexdigest()


def timed(step: Callable[[], object], server_pid: int) -> tuple[float, float]:
    """Wall seconds of one step, and CPU seconds it cost (server + this process + cp)."""
    os.sync()  # flush earlier steps' dirty pages outside the timed region
    cpu = cpu_seconds(server_pid) + own_cpu_seconds()
    start = time.perf_counter()
    step()
    wall = time.perf_counter() - start
    return wall, cpu_seconds(server_pid) + own_cpu_seconds() - cpu


def cp_command() -> list[str]:
    help_text = subprocess.run(["cp", "--help"], capture_output=True, text=True).stdout
    return ["cp", "--reflink=never"] if "--reflink" in help_text else ["cp"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each step (3)")
    args = parser.parse_args()
    size_mb, repeat = int(args.size_mb), max(1, int(args.repeat))
    size = size_mb * MIB

    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="storage-", dir=DATA))
    proc: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    try:
        source = work / "source.bin"
        print(f"writing a {size_mb} MiB test file in {work} ...", flush=True)
        sha = make_source(source, size_mb)

        proc, url = start_server(work)
        idle = proc_mem_mb(proc.pid)
        client = Client(url, token=TOKEN, timeout=600)
        client.files.create_bucket("bench")

        cp = cp_command()
        copy, downloaded = work / "copy.bin", work / "downloaded.bin"
        times: dict[str, list[float]] = {"cp": [], "upload": [], "download": []}
        cpus: dict[str, list[float]] = {"cp": [], "upload": [], "download": []}
        files = client.files
        pid = proc.pid

        def record(name: str, step: Callable[[], object]) -> None:
            wall, cpu = timed(step, pid)
            times[name].append(wall)
            cpus[name].append(cpu)

        for rnd in range(1, repeat + 1):
            copy.unlink(missing_ok=True)
            record("cp", lambda: subprocess.run([*cp, source, copy], check=True))
            copy.unlink()

            if files.exists(KEY):
                files.delete(KEY)
            info = None

            def upload() -> None:
                nonlocal info
                info = files.upload(source, KEY)

            record("upload", upload)
            if info is None or info.size != size or info.sha256 != sha:
                raise SystemExit(f"upload stored the wrong bytes: {info}")

            downloaded.unlink(missing_ok=True)
            record("download", lambda: files.download(KEY, downloaded))
            if downloaded.stat().st_size != size:
                raise SystemExit("download wrote the wrong number of bytes")
            downloaded.unlink()
            print(f"round {rnd}/{repeat}: " + ", ".join(
                f"{name} {t[-1]:.2f}s" for name, t in times.items()), flush=True)

        mem = proc_mem_mb(proc.pid)
    except BaseException:
        server_log = work / "server.log"
        if server_log.exists():
            print(f"server log (tail):\n{server_log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        if client is not None:
            client.close()
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            DATA.rmdir()  # only if nothing else is left there

    def mb_s(t: float) -> float:
        return size / MIB / t

    med = {name: mb_s(statistics.median(t)) for name, t in times.items()}
    best = {name: mb_s(min(t)) for name, t in times.items()}
    up_ratio, down_ratio = med["upload"] / med["cp"], med["download"] / med["cp"]
    ratio = min(up_ratio, down_ratio)

    print()
    print(f"storage: {size_mb} MiB file, {repeat} rounds, on {work.parent} "
          f"({os.cpu_count()} CPUs); MB/s = MiB per second")
    print(f"{'step':<10}{'median s':>10}{'best s':>9}{'median MB/s':>13}{'best MB/s':>11}"
          f"{'ratio vs cp':>13}{'CPU s':>8}")
    for name, ratio_of in (("cp", None), ("upload", up_ratio), ("download", down_ratio)):
        t = times[name]
        shown = "" if ratio_of is None else f"{ratio_of:.2f}"
        print(f"{name:<10}{statistics.median(t):>10.2f}{min(t):>9.2f}{med[name]:>13.0f}"
              f"{best[name]:>11.0f}{shown:>13}{statistics.median(cpus[name]):>8.2f}")
    print("CPU s: user+system seconds of the server, this SDK process and cp together (median)")
    print(f"server peak RSS (VmHWM): {mem['VmHWM']:.0f} MiB (idle {idle['VmHWM']:.0f} MiB, "
          f"now {mem['VmRSS']:.0f} MiB); bench client peak RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"goal: each ratio >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}")
    print(json.dumps({
        "bench": "storage",
        "upload_ratio": round(up_ratio, 3),
        "download_ratio": round(down_ratio, 3),
        "ratio": round(ratio, 3),
        "goal": f">= {GOAL}",
        "met": ratio >= GOAL,
        "size_mb": size_mb,
        "repeat": repeat,
        "stat": "median",
        "cp_mb_s": round(med["cp"], 1),
        "upload_mb_s": round(med["upload"], 1),
        "download_mb_s": round(med["download"], 1),
        "best_upload_ratio": round(best["upload"] / best["cp"], 3),
        "best_download_ratio": round(best["download"] / best["cp"], 3),
        "cp_cpu_s": round(statistics.median(cpus["cp"]), 2),
        "upload_cpu_s": round(statistics.median(cpus["upload"]), 2),
        "download_cpu_s": round(statistics.median(cpus["download"]), 2),
        "server_peak_rss_mb": round(mem["VmHWM"], 1),
        "server_idle_rss_mb": round(idle["VmHWM"], 1),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
