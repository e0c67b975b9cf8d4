"""The control plane under a crowd: 256 clients at once, for a minute, mixing what a team does.

Each client is a closed loop (its next request leaves when its last is answered), with a kind:
  read     listing buckets, tables and jobs, reading one small object, asking who it is
  upload   PUT of a 256 KiB object; one in three is slow, its body sent over ~3 seconds
  sql      a small aggregate over a table; one in six a long one (a few seconds of DuckDB)
  job      a job submission (a one-line script), then a pause
A prober, in a process of its own, asks /healthz every 50 ms throughout. Goals (issue 18):
no 5xx at all, /healthz p99 under 100 ms, and no background loop (job supervisor, endpoint
manager, schedules) failing in the server's log. Reported per kind: requests, req/s, p50 and
p99, and any non-2xx statuses.

    python bench/control_plane_load.py [--clients 256] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server

HEALTHZ_P99_MS = 100.0
KINDS = {"read": 0.70, "upload": 0.14, "sql": 0.12, "job": 0.04}
SMALL = b"x" * 4096
BODY = bytes(random.Random(7).getrandbits(8) for _ in range(256 * 1024))
LONG_SQL = ("SELECT count(*) AS n FROM range(60000000) t(i) "
            "WHERE (i * 2654435761) % 1000003 < 17")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Tally:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.failures: Counter[str] = Counter()

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[kind][status] += 1
        if 200 <= status < 300:
            self.latency[kind].append(seconds)


async def _timed(tally: Tally, kind: str, request: object) -> None:
    t0 = time.perf_counter()
    try:
        response = await request  # type: ignore[misc]
    except httpx.HTTPError as exc:
        tally.failures[f"{kind}: {type(exc).__name__}: {str(exc)[:80]}"] += 1
        return
    tally.add(kind, response.status_code, time.perf_counter() - t0)


async def _slow_body() -> object:
    for start in range(0, len(BODY), 32 * 1024):
        yield BODY[start:start + 32 * 1024]
        await asyncio.sleep(0.35)


async def client_loop(n: int, kind: str, http: httpx.AsyncClient, stop: float,
                      tally: Tally) -> None:
    rng = random.Random(n)
    while time.monotonic() < stop:
        if kind == "read":
            path = rng.choice(["/api/v1/files/buckets", "/api/v1/tables",
                               "/api/v1/jobs?limit=20", "/api/v1/files/buckets/load/objects/small",
                               "/api/v1/me"])
            await _timed(tally, "read", http.get(path))
        elif kind == "upload":
            slow = n % 3 == 0
            key = f"/api/v1/files/buckets/load/objects/c{n}/{rng.randrange(1 << 30)}"
            content = _slow_body() if slow else BODY
            headers = {"content-length": str(len(BODY))}
            await _timed(tally, "upload-slow" if slow else "upload",
                         http.put(key, content=content, headers=headers))
        elif kind == "sql":
            long = n % 6 == 0
            sql = LONG_SQL if long else "SELECT plan, count(*) AS n FROM load.rows GROUP BY plan"
            await _timed(tally, "sql-long" if long else "sql",
                         http.post("/api/v1/sql", json={"sql": sql, "timeout_s": 120}))
        else:
            body = {"command": ["python", "-c", "print(1)"], "cpus": 0.1}
            await _timed(tally, "job", http.post("/api/v1/jobs", json=body))
            await asyncio.sleep(1.0)


def prober(url: str, seconds: float, out: Any) -> None:
    """In a process of its own: the clients' event loop, busy with 256 of them, would add its
    own lag to what it measures. One plain connection, a request every 50 ms."""
    latencies, failures = [], 0
    with httpx.Client(base_url=url, timeout=30) as http:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                ok = http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                failures += 1
            time.sleep(0.05)
    out.put((latencies, failures))


async def run(url: str, clients: int, seconds: float) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    kinds = [kind for kind, share in KINDS.items() for _ in range(round(share * clients))]
    kinds = (kinds + ["read"] * clients)[:clients]
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120.0), limits=limits,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        results: Any = multiprocessing.Queue()
        probe = multiprocessing.Process(target=prober, args=(url, seconds, results))
        probe.start()
        stop = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(n, kind, http, stop, tally)
                               for n, kind in enumerate(kinds)))
        latencies, failures = results.get(timeout=60)
        probe.join()
    tally.latency["healthz"] = latencies
    tally.statuses["healthz"][200] = len(latencies)
    if failures:
        tally.failures["healthz"] += failures
    return tally


def prepare(url: str) -> None:
    import pyarrow as pa

    from cumulo import Client

    with Client(url, token=TOKEN) as c:
        c.files.create_bucket("load")
        c.files.upload(SMALL, "load/small")
        c.tables.create_database("load")
        c.tables.write("load.rows", pa.table({"plan": ["basic", "pro"] * 5000,
                                              "spend": list(range(10000))}))


def loop_failures(log: Path) -> list[str]:
    """Lines where a background loop failed: the supervisor, endpoint manager, schedules or
    pipeline orchestrator logging an error."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                found.append(line)
            continue
        level = str(record.get("level", "")).lower()
        logger = str(record.get("logger", ""))
        if level in ("error", "critical") and not logger.startswith(("cumulo.access",
                                                                     "cumulo.server")):
            found.append(line[:300])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        proc, url = start_server(work)
        try:
            prepare(url)
            tally = asyncio.run(run(url, args.clients, args.seconds))
        finally:
            stop_server(proc)
        failures = loop_failures(work / "server.log")
    kinds = {}
    server_errors = 0
    for kind in sorted(tally.statuses):
        statuses = tally.statuses[kind]
        count = sum(statuses.values())
        server_errors += sum(n for s, n in statuses.items() if s >= 500)
        lat = tally.latency[kind]
        kinds[kind] = {"requests": count, "req_s": round(count / args.seconds, 1),
                       "p50_ms": round(pct(lat, 0.50) * 1000, 1),
                       "p99_ms": round(pct(lat, 0.99) * 1000, 1),
                       "not_2xx": {str(s): n for s, n in statuses.items() if not 200 <= s < 300}}
        print(f"{kind:12} {count:7} req {count / args.seconds:8.1f} req/s  "
              f"p50 {kinds[kind]['p50_ms']:8.1f} ms  p99 {kinds[kind]['p99_ms']:8.1f} ms  "
              f"{kinds[kind]['not_2xx'] or ''}")
    if tally.failures:
        print("client-side failures:", dict(tally.failures))
    for line in failures[:10]:
        print("loop failure:", line)
    healthz_p99 = kinds.get("healthz", {}).get("p99_ms", float("inf"))
    met = (server_errors == 0 and not tally.failures and not failures
           and healthz_p99 < HEALTHZ_P99_MS)
    print(json.dumps({"bench": "control_plane_load", "clients": args.clients,
                      "seconds": args.seconds, "server_errors": server_errors,
                      "client_failures": sum(tally.failures.values()),
                      "loop_failures": len(failures), "healthz_p99_ms": healthz_p99,
                      "kinds": kinds,
                      "goal": "0 5xx, healthz p99 < 100 ms, no loop failure", "met": met}))


if __name__ == "__main__":
    main()
