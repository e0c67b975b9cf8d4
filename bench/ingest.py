"""Benchmark: loading a CSV file into a table, against pyarrow reading it and writing Parquet.

Requirement: loading a 1 GB CSV into a table reaches at least 0.8 of the throughput of pyarrow
reading the CSV and writing Parquet, with the server's peak memory under 1 GB.

What it does, in one run:

1. starts a throwaway server (``cumulo up``, SQLite and local storage under a temporary home
   in ``bench/.data/``, which is on the repository's disk and git-ignored), on a free port;
2. writes, with DuckDB, a CSV file of about ``--size-mb`` MiB there (with a header; integers,
   floats, short strings, booleans, timestamps and dates), so it sits in the page cache;
3. ``--repeat`` rounds of, each timed on its own:
   - pyarrow (the baseline), in a fresh Python process: ``pyarrow.csv.open_csv`` streaming
     the file with pyarrow's default options and ``pyarrow.parquet.ParquetWriter`` writing
     each batch to a new Parquet file; timed inside that process (after its imports), which
     also reports its own peak RSS (VmHWM);
   - Cumulo: ``client.tables.load("bench.t", csv)`` through the SDK, end to end (the file
     streamed over HTTP, spooled by the server, read and written as a Delta table, committed),
     ``mode="overwrite"`` after the first round; the server's peak RSS is reset
     (``/proc/PID/clear_refs``) before each load and read after it;
4. prints a table and the ratio (Cumulo MB/s over pyarrow MB/s, median of the rounds), the
   server's peak RSS during the loads against its idle peak, then one JSON line; and cleans up.

Fairness: both sides read a file that is already in the page cache and write new files without
fsync; dirty pages are flushed with ``sync`` *between* timed steps, never inside one; old
outputs are removed untimed before each step.

Run it with ``make bench``, or ``.venv/bin/python bench/ingest.py [--size-mb N] [--repeat N]``.
The last line of output is JSON, e.g. ``{"bench": "ingest", "ratio": 0.9, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from harness import (
    DATA,
    MIB,
    TOKEN,
    cpu_seconds,
    own_cpu_seconds,
    proc_mem_mb,
    reset_peak,
    start_server,
    stop_server,
)

from cumulo import Client

GOAL = 0.8
MEMORY_GOAL_MB = 1024
TABLE = "bench.t"

# The baseline, run in its own process so that its peak RSS is its own.
BASELINE = """
import json, sys, time
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

src, dst = sys.argv[1], sys.argv[2]
start = time.perf_counter()
reader = pacsv.open_csv(src)
rows = 0
with pq.ParquetWriter(dst, reader.schema) as writer:
    for batch in reader:
        writer.write_batch(batch)
        rows += batch.num_rows
seconds = time.perf_counter() - start
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": hwm / 1024}))
"""

# Mixed column types, values from hashes of the row number (the same file every run).
COLUMNS = """
    i AS id,
    CAST(hash(i, 1) % 100000 + 1 AS INTEGER) AS customer_id,
    CAST(hash(i, 2) % 20 + 1 AS INTEGER) AS quantity,
    CAST(hash(i, 3) % 1000000 AS DOUBLE) / 100 AS price,
    CAST(hash(i, 4) % 50 AS DOUBLE) / 100 AS discount,
    ['north', 'south', 'east', 'west', 'central'][CAST(hash(i, 5) % 5 + 1 AS INTEGER)]
        AS region,
    'sku-' || CAST(hash(i, 6) % 100000 AS VARCHAR) AS product,
    ['placed', 'shipped', 'delivered', 'returned'][CAST(hash(i, 7) % 4 + 1 AS INTEGER)]
        AS status,
    hash(i, 8) % 10 = 0 AS gift,
    TIMESTAMP '2024-01-01' + to_seconds(CAST(hash(i, 9) % 31536000 AS BIGINT)) AS created_at,
    DATE '2024-01-01' + CAST(hash(i, 10) % 400 AS INTEGER) AS ship_date
"""


def make_csv(path: Path, size_mb: int) -> int:
    """A CSV file of about ``size_mb`` MiB; returns its number of data rows."""
    con = duckdb.connect()
    sample = path.with_suffix(".sample.csv")
    probe = 200_000
    con.execute(f"COPY (SELECT {COLUMNS} FROM range({probe}) r(i)) TO '{sample}' "
                "(FORMAT csv, HEADER)")
    rows = max(probe, int(size_mb * MIB / (sample.stat().st_size / probe)))
    # Again with the last rows, whose ids are longer: the file ends up just under the size.
    con.execute(f"COPY (SELECT {COLUMNS} FROM range({rows - probe}, {rows}) r(i)) TO "
                f"'{sample}' (FORMAT csv, HEADER)")
    rows = max(1, int(size_mb * MIB / (sample.stat().st_size / probe)))
    sample.unlink()
    con.execute(f"COPY (SELECT {COLUMNS} FROM range({rows}) r(i) ORDER BY i) TO '{path}' "
                "(FORMAT csv, HEADER)")
    con.close()
    os.sync()
    with open(path, "rb") as f:  # make sure it is all in the page cache
        while f.read(16 * MIB):
            pass
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each step (2)")
    args = parser.parse_args()
    size_mb, repeat = int(args.size_mb), max(1, int(args.repeat))

    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ingest-", dir=DATA))
    proc: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    times: dict[str, list[float]] = {"pyarrow": [], "cumulo": []}
    cpus: dict[str, list[float]] = {"pyarrow": [], "cumulo": []}
    peaks: dict[str, list[float]] = {"pyarrow": [], "cumulo": []}
    sent: list[float] = []  # seconds until the SDK had handed over the last byte
    try:
        source = work / "source.csv"
        print(f"writing a {size_mb} MiB CSV file in {work} ...", flush=True)
        start = time.perf_counter()
        rows = make_csv(source, size_mb)
        size = source.stat().st_size
        print(f"  {rows:,} rows, {size / MIB:.0f} MiB, in {time.perf_counter() - start:.1f}s",
              flush=True)

        proc, url = start_server(work)
        pid = proc.pid
        idle = proc_mem_mb(pid)
        client = Client(url, token=TOKEN, timeout=600)
        client.tables.create_database("bench")
        tables = client.tables
        parquet = work / "baseline.parquet"
        resettable = True
        clock: dict[str, float] = {"begin": 0.0, "handed": 0}

        def progress(n: int) -> None:
            clock["handed"] += n
            if clock["handed"] >= size:
                sent.append(time.perf_counter() - clock["begin"])

        def timed(name: str, step: Callable[[], Any]) -> Any:
            os.sync()  # flush earlier steps' dirty pages outside the timed region
            cpu = cpu_seconds(pid) + own_cpu_seconds()
            begin = time.perf_counter()
            out = step()
            times[name].append(time.perf_counter() - begin)
            cpus[name].append(cpu_seconds(pid) + own_cpu_seconds() - cpu)
            return out

        for rnd in range(1, repeat + 1):
            parquet.unlink(missing_ok=True)
            done = timed("pyarrow", lambda: subprocess.run(
                [sys.executable, "-c", BASELINE, str(source), str(parquet)],
                check=True, capture_output=True, text=True))
            report = json.loads(done.stdout.strip().splitlines()[-1])
            times["pyarrow"][-1] = float(report["seconds"])  # without interpreter start-up
            peaks["pyarrow"].append(float(report["peak_mb"]))
            if report["rows"] != rows:
                raise SystemExit(f"pyarrow read {report['rows']} rows, not {rows}")
            parquet.unlink()

            resettable = reset_peak(pid) and resettable
            clock.update(begin=0.0, handed=0)
            mode = "append" if rnd == 1 else "overwrite"

            def load(mode: Any = mode) -> Any:
                clock["begin"] = time.perf_counter()
                return tables.load(TABLE, source, mode=mode, progress=progress)

            result = timed("cumulo", load)
            peaks["cumulo"].append(proc_mem_mb(pid)["VmHWM"])
            if result.get("rows_added") != rows:
                raise SystemExit(f"the load added {result.get('rows_added')} rows, not {rows}")
            print(f"round {rnd}/{repeat}: pyarrow {times['pyarrow'][-1]:.2f}s, "
                  f"cumulo {times['cumulo'][-1]:.2f}s (bytes sent at {sent[-1]:.2f}s), "
                  f"server peak {peaks['cumulo'][-1]:.0f} MiB", flush=True)

        info = client.tables.show(TABLE)
        mem = proc_mem_mb(pid)
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
    ratio = med["cumulo"] / med["pyarrow"]
    peak = max(peaks["cumulo"]) if resettable else mem["VmHWM"]
    met = ratio >= GOAL and peak < MEMORY_GOAL_MB

    print()
    print(f"ingest: {size / MIB:.0f} MiB CSV, {rows:,} rows x 11 columns, {repeat} rounds, on "
          f"{work.parent} ({os.cpu_count()} CPUs); MB/s = MiB of CSV per second")
    print(f"{'step':<10}{'median s':>10}{'best s':>9}{'median MB/s':>13}{'best MB/s':>11}"
          f"{'ratio':>7}{'CPU s':>8}{'peak RSS MiB':>14}")
    for name in ("pyarrow", "cumulo"):
        t = times[name]
        shown = "" if name == "pyarrow" else f"{ratio:.2f}"
        print(f"{name:<10}{statistics.median(t):>10.2f}{min(t):>9.2f}{med[name]:>13.0f}"
              f"{best[name]:>11.0f}{shown:>7}{statistics.median(cpus[name]):>8.2f}"
              f"{max(peaks[name]):>14.0f}")
    print(f"cumulo: the SDK had sent the last byte after {statistics.median(sent):.2f}s "
          f"(median); the rest is the server reading the spooled CSV and writing the Delta "
          f"table ({(info.get('bytes') or 0) / MIB:.0f} MiB, {info.get('files')} file(s))")
    print("CPU s: user+system seconds (median); pyarrow: its process; cumulo: the server and "
          "this SDK process together")
    print(f"server peak RSS during a load (VmHWM{', reset before each' if resettable else ''}):"
          f" {peak:.0f} MiB (idle {idle['VmHWM']:.0f} MiB, now {mem['VmRSS']:.0f} MiB)")
    print(f"goal: ratio >= {GOAL} and server peak < {MEMORY_GOAL_MB} MiB: "
          f"{ratio:.2f}, {peak:.0f} MiB, {'met' if met else 'NOT met'}")
    print(json.dumps({
        "bench": "ingest",
        "ratio": round(ratio, 3),
        "goal": f">= {GOAL}, server peak < {MEMORY_GOAL_MB} MiB",
        "met": met,
        "ratio_met": ratio >= GOAL,
        "memory_met": peak < MEMORY_GOAL_MB,
        "size_mb": round(size / MIB, 1),
        "rows": rows,
        "repeat": repeat,
        "stat": "median",
        "pyarrow_mb_s": round(med["pyarrow"], 1),
        "cumulo_mb_s": round(med["cumulo"], 1),
        "best_ratio": round(best["cumulo"] / best["pyarrow"], 3),
        "cumulo_sent_s": round(statistics.median(sent), 2),
        "pyarrow_cpu_s": round(statistics.median(cpus["pyarrow"]), 2),
        "cumulo_cpu_s": round(statistics.median(cpus["cumulo"]), 2),
        "server_peak_rss_mb": round(peak, 1),
        "server_idle_rss_mb": round(idle["VmHWM"], 1),
        "pyarrow_peak_rss_mb": round(max(peaks["pyarrow"]), 1),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
