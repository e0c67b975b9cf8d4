"""Benchmark: Cumulo SQL against DuckDB reading the same Parquet files directly.

Requirement: a set of aggregation, filter and join queries over a 10-million-row table, Cumulo
SQL against DuckDB reading the same Parquet files directly, in one run; Cumulo's time is at
most 1.15 times DuckDB's.

What it does, in one run:

1. starts a throwaway server (``cumulo up``, SQLite and local storage under a temporary home
   in ``bench/.data/``, which is on the repository's disk and git-ignored), on a free port;
2. generates, with DuckDB, a fact table of ``--rows`` rows (10 million: id, customer_id,
   region, status, amount, quantity, ts) and a dimension table of ``--customers`` customers
   (customer_id, name, segment, country), each as one Parquet file, and loads both into
   Cumulo with ``client.tables.load`` (``bench.orders``, ``bench.customers``);
3. for each query (aggregations with GROUP BY, selective filters, a join with the dimension
   table, count distinct, a top-N; every result is small, so the comparison is about the
   scan): one untimed warm-up of each side, then ``--repeat`` timed rounds of
   - DuckDB: a plain in-process ``duckdb.connect()`` (one connection, kept open) whose
     ``bench.orders`` and ``bench.customers`` are views over ``read_parquet([...])`` of the
     Delta tables' own Parquet files (``DeltaTable(path).file_uris()``), the query run and its
     whole result fetched (the baseline),
   - Cumulo: ``client.sql(query)`` through the SDK, end to end as a user sees it (HTTP, the
     sandbox, the query, the result written to the server's result file, the first page
     back as JSON);
   - for reference only, the same DuckDB baseline with the ``read_parquet`` options Cumulo's
     sandbox uses (``union_by_name = true``, which changes DuckDB's plan);
   the sides take turns going first, and the results are checked to be equal;
4. prints a table per query (median times, ratio, the server's own ``duration_ms``, CPU
   seconds), the overall ratio (sum of Cumulo's medians over the sum of DuckDB's), then one
   JSON line; and cleans up.

Fairness: both sides run DuckDB with its default settings (as many threads as CPUs) on the
same machine over the same files, which are in the page cache after the warm-up; while one
side runs, the other is idle.

Run it with ``make bench``, or ``.venv/bin/python bench/sql.py [--rows N] [--repeat N]``.
The last line of output is JSON, e.g. ``{"bench": "sql", "ratio": 1.07, ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable
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

GOAL = 1.15

# name -> SQL; the same text runs on both sides (bench.orders, bench.customers).
QUERIES: dict[str, str] = {
    "group_by": (
        "SELECT region, count(*) AS n, sum(amount) AS total, avg(amount) AS mean, "
        "max(quantity) AS most FROM bench.orders GROUP BY region ORDER BY region"
    ),
    "filter": (
        "SELECT count(*) AS n, sum(amount) AS total FROM bench.orders "
        "WHERE amount > 990 AND region = 'west' AND status = 'returned'"
    ),
    "time_range": (
        "SELECT status, count(*) AS n, avg(amount) AS mean FROM bench.orders "
        "WHERE ts >= TIMESTAMP '2024-03-01' AND ts < TIMESTAMP '2024-03-08' "
        "GROUP BY status ORDER BY status"
    ),
    "join": (
        "SELECT c.segment, c.country, count(*) AS n, sum(o.amount) AS total "
        "FROM bench.orders o JOIN bench.customers c ON o.customer_id = c.customer_id "
        "WHERE o.status = 'shipped' GROUP BY c.segment, c.country ORDER BY c.segment, c.country"
    ),
    "count_distinct": (
        "SELECT region, count(DISTINCT customer_id) AS customers FROM bench.orders "
        "GROUP BY region ORDER BY region"
    ),
    "top_n": (
        "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM bench.orders "
        "GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10"
    ),
    "point_lookup": (
        "SELECT id, region, status, amount, quantity FROM bench.orders "
        "WHERE customer_id = 4242 ORDER BY id"
    ),
}


def make_tables(work: Path, rows: int, customers: int) -> tuple[Path, Path]:
    """The fact and dimension tables as Parquet files, the same for the same arguments."""
    orders, dims = work / "orders.parquet", work / "customers.parquet"
    con = duckdb.connect()
    # Values from hashes of the row number: deterministic, and spread over the whole file.
    con.execute(f"""
        COPY (
            SELECT i AS id,
                   CAST(hash(i, 1) % {customers} + 1 AS INTEGER) AS customer_id,
                   ['north', 'south', 'east', 'west', 'central'][CAST(hash(i, 2) % 5 + 1
                       AS INTEGER)] AS region,
                   ['placed', 'shipped', 'delivered', 'returned'][CAST(hash(i, 3) % 4 + 1
                       AS INTEGER)] AS status,
                   CAST(hash(i, 4) % 100000 AS DOUBLE) / 100 AS amount,
                   CAST(hash(i, 5) % 20 + 1 AS INTEGER) AS quantity,
                   TIMESTAMP '2024-01-01' + to_seconds(CAST(hash(i, 6) % 31536000 AS BIGINT))
                       AS ts
            FROM range({rows}) r(i)
            ORDER BY i
        ) TO '{orders}' (FORMAT parquet)
    """)
    con.execute(f"""
        COPY (
            SELECT i AS customer_id,
                   'customer ' || i AS name,
                   ['consumer', 'corporate', 'home office'][CAST(hash(i, 7) % 3 + 1
                       AS INTEGER)] AS segment,
                   ['DE', 'FR', 'US', 'JP', 'BR', 'IN', 'GB', 'CA'][CAST(hash(i, 8) % 8 + 1
                       AS INTEGER)] AS country
            FROM range(1, {customers} + 1) r(i)
        ) TO '{dims}' (FORMAT parquet)
    """)
    con.close()
    return orders, dims


def fetch_all(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[Any, ...]]:
    """The baseline: run the query and fetch its whole result."""
    return con.execute(query).fetchall()


def same_rows(got: list[Sequence[Any]], want: list[tuple[Any, ...]]) -> bool:
    """Whether two results hold the same values (floats up to summation order)."""
    if len(got) != len(want):
        return False
    for row, other in zip(got, want, strict=True):
        for a, b in zip(row, other, strict=True):
            if isinstance(a, float) or isinstance(b, float):
                if not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6):
                    return False
            elif a != b:
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000,
                        help="rows of the fact table (10000000)")
    parser.add_argument("--customers", type=int, default=100_000,
                        help="rows of the dimension table (100000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds of each query (5)")
    args = parser.parse_args()
    rows, customers, repeat = int(args.rows), int(args.customers), max(1, int(args.repeat))

    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sql-", dir=DATA))
    proc: subprocess.Popen[bytes] | None = None
    client: Client | None = None
    bases: list[duckdb.DuckDBPyConnection] = []
    sides = ("duckdb", "like", "cumulo")
    times: dict[str, dict[str, list[float]]] = {
        q: {side: [] for side in (*sides, "server")} for q in QUERIES}
    cpus: dict[str, dict[str, list[float]]] = {q: {side: [] for side in sides} for q in QUERIES}
    result_rows: dict[str, int] = {}
    try:
        print(f"writing {rows:,} orders and {customers:,} customers as Parquet in {work} ...",
              flush=True)
        start = time.perf_counter()
        orders_file, customers_file = make_tables(work, rows, customers)
        print(f"  {time.perf_counter() - start:.1f}s, orders "
              f"{orders_file.stat().st_size / MIB:.0f} MiB", flush=True)

        proc, url = start_server(work)
        idle = proc_mem_mb(proc.pid)
        client = Client(url, token=TOKEN, timeout=600)
        client.tables.create_database("bench")
        files: dict[str, list[str]] = {}
        for table, source in (("orders", orders_file), ("customers", customers_file)):
            start = time.perf_counter()
            client.tables.load(f"bench.{table}", source)
            info = client.tables.show(f"bench.{table}")
            path = work / "home" / "storage" / info["location"]
            files[table] = DeltaTable(str(path)).file_uris()
            print(f"  loaded bench.{table}: {info['rows']:,} rows, {len(files[table])} file(s), "
                  f"{(info['bytes'] or 0) / MIB:.0f} MiB, in {time.perf_counter() - start:.1f}s",
                  flush=True)
            if info["rows"] != (rows if table == "orders" else customers):
                raise SystemExit(f"bench.{table} has {info['rows']} rows")
        for f in (orders_file, customers_file):
            f.unlink()  # only the Delta tables' own files are read from here on

        # The baseline: plain read_parquet over the files. "like": the same, with the options
        # Cumulo's sandbox passes (union_by_name), for reference only; the goal uses the first.
        for options in ("", ", union_by_name = true"):
            con = duckdb.connect()
            bases.append(con)
            con.execute("CREATE SCHEMA bench")
            for table, listed in files.items():
                quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in listed)
                con.execute(f"CREATE VIEW bench.{table} AS SELECT * FROM "
                            f"read_parquet([{quoted}]{options})")
        plain, like = bases
        sql = client.sql
        pid = proc.pid

        for name, query in QUERIES.items():
            steps: dict[str, Callable[[], Any]] = {
                "duckdb": functools.partial(fetch_all, plain, query),
                "like": functools.partial(fetch_all, like, query),
                "cumulo": functools.partial(sql, query, page_size=1000),
            }
            expected = steps["duckdb"]()  # warm-ups, and the reference result
            if not same_rows(steps["like"](), expected):
                raise SystemExit(f"{name}: union_by_name changes DuckDB's result")
            first = steps["cumulo"]()
            if first.rows != len(expected) or not same_rows(
                    [list(r.values()) for r in first.page], expected):
                raise SystemExit(f"{name}: Cumulo's result differs from DuckDB's:\n"
                                 f"  cumulo: {first.page[:5]}\n  duckdb: {expected[:5]}")
            result_rows[name] = len(expected)

            for rnd in range(repeat):
                for side in sides[rnd % 3:] + sides[:rnd % 3]:  # each side goes first in turn
                    server = side == "cumulo"
                    cpu = own_cpu_seconds() + (cpu_seconds(pid) if server else 0.0)
                    begin = time.perf_counter()
                    out = steps[side]()
                    times[name][side].append(time.perf_counter() - begin)
                    cpus[name][side].append(
                        own_cpu_seconds() + (cpu_seconds(pid) if server else 0.0) - cpu)
                    if server:
                        times[name]["server"].append((out.duration_ms or 0.0) / 1000)
            t = times[name]
            print(f"  {name:<15} duckdb {statistics.median(t['duckdb']) * 1000:7.1f} ms   "
                  f"cumulo {statistics.median(t['cumulo']) * 1000:7.1f} ms", flush=True)

        mem = proc_mem_mb(proc.pid)
    except BaseException:
        server_log = work / "server.log"
        if server_log.exists():
            print(f"server log (tail):\n{server_log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for con in bases:
            con.close()
        if client is not None:
            client.close()
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            DATA.rmdir()  # only if nothing else is left there

    med = {q: {side: statistics.median(v) for side, v in t.items()} for q, t in times.items()}
    total = {side: sum(m[side] for m in med.values()) for side in (*sides, "server")}
    ratio = total["cumulo"] / total["duckdb"]
    like_ratio = total["cumulo"] / total["like"]
    per_query = {q: m["cumulo"] / m["duckdb"] for q, m in med.items()}
    met = ratio <= GOAL

    def ms(x: float) -> str:
        return f"{x * 1000:.0f}"

    print()
    print(f"sql: {rows:,} orders x {customers:,} customers, {len(QUERIES)} queries, "
          f"{repeat} timed rounds each, on {work.parent} ({os.cpu_count()} CPUs); "
          f"times are medians in ms")
    print(f"{'query':<16}{'rows':>5}{'duckdb':>8}{'cumulo':>8}{'ratio':>7}{'server':>8}"
          f"{'other':>7}{'like':>7}{'ratio':>7}{'CPU duckdb':>11}{'CPU cumulo':>11}")
    for q, m in med.items():
        print(f"{q:<16}{result_rows[q]:>5}{ms(m['duckdb']):>8}{ms(m['cumulo']):>8}"
              f"{per_query[q]:>7.2f}{ms(m['server']):>8}{ms(m['cumulo'] - m['server']):>7}"
              f"{ms(m['like']):>7}{m['cumulo'] / m['like']:>7.2f}"
              f"{statistics.median(cpus[q]['duckdb']):>11.2f}"
              f"{statistics.median(cpus[q]['cumulo']):>11.2f}")
    print(f"{'total':<16}{'':>5}{ms(total['duckdb']):>8}{ms(total['cumulo']):>8}{ratio:>7.2f}"
          f"{ms(total['server']):>8}{ms(total['cumulo'] - total['server']):>7}"
          f"{ms(total['like']):>7}{like_ratio:>7.2f}")
    print("duckdb: the baseline, read_parquet([files]); server: the query's duration_ms as the "
          "server records it (sandbox, query, result file); other: the rest (HTTP, request "
          "handling, history, first page as JSON); like: DuckDB with the sandbox's read_parquet "
          "options (union_by_name = true), for reference; CPU: user+system seconds (median), "
          "duckdb: this process, cumulo: the server and this SDK process together")
    print(f"server peak RSS (VmHWM): {mem['VmHWM']:.0f} MiB (idle {idle['VmHWM']:.0f} MiB, "
          f"now {mem['VmRSS']:.0f} MiB)")
    print(f"goal: sum of Cumulo's medians / sum of DuckDB's <= {GOAL}: "
          f"{ratio:.2f}, {'met' if met else 'NOT met'}")
    print(json.dumps({
        "bench": "sql",
        "ratio": round(ratio, 3),
        "goal": f"<= {GOAL}",
        "met": met,
        "rows": rows,
        "customers": customers,
        "queries": len(QUERIES),
        "repeat": repeat,
        "stat": "median",
        "duckdb_ms": round(total["duckdb"] * 1000, 1),
        "cumulo_ms": round(total["cumulo"] * 1000, 1),
        "server_ms": round(total["server"] * 1000, 1),
        "per_query_ratio": {q: round(r, 3) for q, r in per_query.items()},
        "like_ratio": round(like_ratio, 3),
        "worst_query_ratio": round(max(per_query.values()), 3),
        "server_peak_rss_mb": round(mem["VmHWM"], 1),
        "server_idle_rss_mb": round(idle["VmHWM"], 1),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
