"""What authorization costs a read: the same request as an admin (one role, one statement)
and as a user in 100 groups that hold 1,000 custom policies between them (3 statements each,
conditions included), in one run against one server.

The read is ``GET /api/v1/tables/<db>/<table>`` (``tables:Read`` on the table), sent back to
back on one kept-alive connection, the two callers interleaved in rounds so that the machine's
noise falls on both. Printed: each caller's median and p99, and the median added latency.

Then SQL: one statement joining 10 tables, run as an admin with no masks or filters and as a
user with a column mask and a row filter on each of the 10 (the same tiny tables, so what
differs is finding the rules and planning the views). Printed: the median added per
statement.

A third caller holds the developer role in one project only and reads a table of that project
(the same rows): the decision point then finds the table's project (a lookup kept for a second)
before deciding. Printed beside the others, held to the same goal.

Goals (issue 19): the read's median added latency under 1 ms; SQL with masks and filters on 10
tables under 5 ms added.

    python bench/authz.py [--requests 2000] [--statements 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server

GROUPS = 100
POLICIES = 1_000
GOAL_MS = 1.0
SQL_GOAL_MS = 5.0
TABLES = 10


def _policy(n: int) -> dict[str, Any]:
    """A policy like people write: reads on some databases, a deny, a condition."""
    return {"statements": [
        {"sid": "read", "effect": "allow", "actions": ["tables:Read", "tables:List"],
         "resources": [f"table/db{n % 50}/*", f"table/shared{n % 7}/t{n % 13}"]},
        {"sid": "no-drop", "effect": "deny", "actions": ["tables:Drop"],
         "resources": [f"table/db{n % 50}/*"]},
        {"sid": "office", "effect": "allow", "actions": ["sql:Run"], "resources": ["sql"],
         "conditions": {"source_ip": ["10.0.0.0/8", "127.0.0.0/8"],
                        "hours_utc": "00:00-24:00"}},
    ]}


def _caller(http: httpx.Client) -> Any:
    """A call to the API that stops the bench, saying why, on any refusal."""
    def call(method: str, path: str, **kwargs: Any) -> Any:
        answer = http.request(method, f"/api/v1{path}", **kwargs)
        if answer.status_code >= 400:
            sys.exit(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    return call


def setup(http: httpx.Client) -> str:
    """The user in 100 groups with 1,000 policies; a table to read. Returns their token."""
    call = _caller(http)
    call("POST", "/tables/databases", json={"name": "db7"})
    call("PUT", "/tables/db7/orders/data", params={"format": "csv"},
         content=b"id,amount\n1,2.5\n2,3.0\n",
         headers={"content-type": "text/csv"})
    call("POST", "/users", json={"name": "bench-reader", "kind": "service"})
    for g in range(GROUPS):
        call("POST", "/groups", json={"name": f"team-{g}"})
        call("PUT", f"/groups/team-{g}/members/bench-reader")
    for p in range(POLICIES):
        call("POST", "/policies", json={"name": f"policy-{p}", "document": _policy(p)})
        call("POST", "/bindings", json={"group": f"team-{p % GROUPS}", "policy": f"policy-{p}"})
    return str(call("POST", "/tokens", json={"name": "bench", "user": "bench-reader"})["token"])


def setup_project(http: httpx.Client) -> str:
    """A developer in project bench-p only, and a table of that project. Returns their token."""
    call = _caller(http)
    call("POST", "/projects", json={"name": "bench-p"})
    call("POST", "/tables/databases", json={"name": "projdb", "project": "bench-p"})
    call("PUT", "/tables/projdb/orders/data", params={"format": "csv"},
         content=b"id,amount\n1,2.5\n2,3.0\n", headers={"content-type": "text/csv"})
    call("POST", "/users", json={"name": "bench-member", "kind": "service"})
    call("POST", "/bindings", json={"user": "bench-member", "role": "developer",
                                    "project": "bench-p"})
    return str(call("POST", "/tokens", json={"name": "bench", "user": "bench-member"})["token"])


def setup_sql(http: httpx.Client) -> tuple[str, str]:
    """Ten tables; a user who reads them all with a mask and a row filter on each. Returns
    that user's token and the statement."""
    call = _caller(http)
    call("POST", "/tables/databases", json={"name": "masked"})
    call("POST", "/users", json={"name": "bench-masked", "kind": "service", "role": "analyst"})
    rows = "".join(f"{i},{i % 3},user{i}@example.com\n" for i in range(100)).encode()
    for t in range(TABLES):
        call("PUT", f"/tables/masked/t{t}/data", params={"format": "csv"},
             content=b"id,region,email\n" + rows, headers={"content-type": "text/csv"})
        for statement in (
                f"ALTER TABLE masked.t{t} ALTER COLUMN email SET MASK left(email, 2) || '***' "
                "FOR USER bench-masked",
                f"ALTER TABLE masked.t{t} SET ROW FILTER region <> 2 FOR USER bench-masked"):
            call("POST", "/sql", json={"sql": statement})
    joins = " ".join(f"JOIN masked.t{t} USING (id)" for t in range(1, TABLES))
    sql = f"SELECT count(*), min(t0.email) FROM masked.t0 {joins}"
    token = call("POST", "/tokens", json={"name": "bench", "user": "bench-masked"})["token"]
    return str(token), sql


def measure_sql(url: str, tokens: dict[str, str], sql: str,
                statements: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in tokens}
    clients = {name: httpx.Client(base_url=url, timeout=60,
                                  headers={"Authorization": f"Bearer {token}"})
               for name, token in tokens.items()}
    try:
        for _ in range(5):
            for client in clients.values():
                client.post("/api/v1/sql", json={"sql": sql}).raise_for_status()
        for _ in range(statements):  # alternate: noise falls on both
            for name, client in clients.items():
                t0 = time.perf_counter()
                answer = client.post("/api/v1/sql", json={"sql": sql})
                times[name].append(time.perf_counter() - t0)
                if answer.status_code != 200:
                    sys.exit(f"{name}: {answer.status_code} {answer.text}")
    finally:
        for client in clients.values():
            client.close()
    return times


def measure(url: str, tokens: dict[str, tuple[str, str]],
            requests: int) -> dict[str, list[float]]:
    """Each caller (name -> (token, table path)) reads their table, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in tokens}
    clients = {name: httpx.Client(base_url=url, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"})
               for name, (token, _) in tokens.items()}
    paths = {name: f"/api/v1/tables/{table}" for name, (_, table) in tokens.items()}
    try:
        for name, client in clients.items():  # warm: connections, caches, the rights' read
            for _ in range(50):
                client.get(paths[name]).raise_for_status()
        rounds, per = 20, max(1, requests // 20)
        for _ in range(rounds):
            for name, client in clients.items():
                for _ in range(per):
                    t0 = time.perf_counter()
                    answer = client.get(paths[name])
                    times[name].append(time.perf_counter() - t0)
                    if answer.status_code != 200:
                        sys.exit(f"{name}: {answer.status_code} {answer.text}")
    finally:
        for client in clients.values():
            client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--statements", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-authz-"))
    server, url = start_server(work)
    try:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
            t0 = time.perf_counter()
            reader = setup(admin)
            member = setup_project(admin)
            masked, sql = setup_sql(admin)
            print(f"set up {GROUPS} groups, {POLICIES} policies and {TABLES} masked tables in "
                  f"{time.perf_counter() - t0:.1f}s")
        times = measure(url, {"admin": (TOKEN, "db7/orders"),
                              "1,000 policies": (reader, "db7/orders"),
                              "project member": (member, "projdb/orders")}, args.requests)
        sql_times = measure_sql(url, {"admin": TOKEN, "masked": masked}, sql, args.statements)
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
    stats = {}
    for name, seconds in times.items():
        ms = sorted(s * 1000 for s in seconds)
        stats[name] = {"median_ms": round(statistics.median(ms), 3),
                       "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3), "requests": len(ms)}
        print(f"{name:16} median {stats[name]['median_ms']:7.3f} ms   "
              f"p99 {stats[name]['p99_ms']:7.3f} ms   ({len(ms)} reads)")
    sql_ms = {name: statistics.median(s * 1000 for s in seconds)
              for name, seconds in sql_times.items()}
    for name, ms in sql_ms.items():
        print(f"SQL, {name:9} median {ms:7.3f} ms   ({len(sql_times[name])} statements)")
    added = stats["1,000 policies"]["median_ms"] - stats["admin"]["median_ms"]
    in_project = stats["project member"]["median_ms"] - stats["admin"]["median_ms"]
    sql_added = sql_ms["masked"] - sql_ms["admin"]
    print(f"\nadded by 1,000 policies across {GROUPS} groups: {added:.3f} ms at the median "
          f"(goal < {GOAL_MS} ms)")
    print(f"added by rights bound in the table's project: {in_project:.3f} ms at the median "
          f"(goal < {GOAL_MS} ms)")
    print(f"added to a 10-table statement by a mask and a filter on each table: "
          f"{sql_added:.3f} ms at the median (goal < {SQL_GOAL_MS} ms)")
    print(json.dumps({"bench": "authz", "added_median_ms": round(added, 3),
                      "goal": f"< {GOAL_MS} ms; SQL < {SQL_GOAL_MS} ms",
                      "met": added < GOAL_MS and in_project < GOAL_MS
                      and sql_added < SQL_GOAL_MS,
                      "project_added_median_ms": round(in_project, 3),
                      "sql_added_median_ms": round(sql_added, 3),
                      "sql_admin_median_ms": round(sql_ms["admin"], 3),
                      "sql_masked_median_ms": round(sql_ms["masked"], 3),
                      "ratio": round(stats["1,000 policies"]["median_ms"]
                                     / stats["admin"]["median_ms"], 3),
                      "admin": stats["admin"], "policies": stats["1,000 policies"],
                      "project_member": stats["project member"],
                      "groups": GROUPS, "policy_count": POLICIES}))


if __name__ == "__main__":
    main()
