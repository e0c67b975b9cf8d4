"""Jobs per second through one control plane and through two, on one PostgreSQL and one S3.

Two setups run side by side, each on a database and a bucket of its own (PostgreSQL and moto's
S3 server, started as the tests start them: tests/services.py):
  one:  a single control plane
  two:  two control planes on the same database and bucket (homes and ports of their own)
Each round submits the same batch of short jobs (a Python file that does nothing, on a local
cluster sized to this machine), from two client threads: both to the one control plane, or one
to each of the two. The time is from the first submission to the moment every job is seen
succeeded. Rounds alternate between the setups so that both see the same machine load; the
figure of each setup is its median round. The control planes run as the tests start them
(the fork server off). Also reported: how busy the machine's cores were (all processes, this
one's and any other's), and so the machine's CPU time per job. Goal (issue 23): two control
planes run at least 1.6 times the jobs per second of one.

On one machine both control planes, their workers and the jobs share the same cores: the
figure says what a second control plane costs or gains there, not what a second machine adds.

    python bench/scale.py [--jobs 60] [--rounds 3] [--cpus 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/services.py
from tests.services import Cumulo, Postgres, S3Server, postgres, s3_server, start_cumulo

GOAL = 1.6
NOOP = "pass\n"


@dataclass
class Setup:
    name: str
    planes: list[Cumulo]
    database: str

    def owners(self, tag: str) -> Counter[str]:
        """How many of the round's jobs each control plane ran (the jobs' owner column)."""
        import psycopg

        with psycopg.connect(self.database) as conn:
            rows = conn.execute("select owner, count(*) from jobs where tags::text like %s "
                                "group by owner", (f'%"{tag}"%',)).fetchall()
        return Counter({str(owner)[:8]: n for owner, n in rows})


def start_setup(name: str, count: int, pg: Postgres, s3: S3Server, work: Path,
                cluster_cpus: float) -> Setup:
    db = "b" + uuid.uuid4().hex[:10]
    env = {"CUMULO_DATABASE_URL": pg.create_database(db),
           "CUMULO_STORAGE_URL": s3.create_bucket(db), **s3.env()}
    planes = [start_cumulo(work / name / f"plane-{i}" / ".cumulo", env) for i in range(count)]
    client = planes[0].client()
    client.clusters.create("scale", max_cpus=cluster_cpus, min_workers=2, max_workers=8)
    return Setup(name=name, planes=planes, database=env["CUMULO_DATABASE_URL"])


def busy_since(before: Any) -> float:
    """The share of this machine's CPU time that was not idle since ``before``."""
    after = psutil.cpu_times()
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 1 - idle / total if total > 0 else 0.0


def run_round(setup: Setup, code: Path, jobs: int, cpus: float,
              tag: str) -> tuple[float, float]:
    """Submit ``jobs`` jobs from two threads (one per control plane where there are two) and
    wait for all of them: the seconds from the first submission to the last success seen, and
    how busy the machine's cores were meanwhile."""
    targets = [setup.planes[i % len(setup.planes)] for i in range(2)]
    clients = [plane.client() for plane in targets]  # one HTTP client per thread
    # The snapshot is uploaded before the clock starts, one client after the other: two
    # first uploads of one snapshot at once fail (a check-then-insert in the server).
    for client in clients:
        client.jobs.upload_code(code)
    submitted: list[list[Any]] = [[], []]
    failures: list[BaseException] = []

    def submit(n: int) -> None:
        try:
            for _ in range(jobs // 2 + (n < jobs % 2)):
                submitted[n].append(clients[n].jobs.run("noop.py", code=code, cluster="scale",
                                                        cpus=cpus, tags=[tag]))
        except BaseException as exc:  # reported after the join
            failures.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    cpu0 = psutil.cpu_times()
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    watcher = setup.planes[0].client()
    pending = [job for batch in submitted for job in batch]
    deadline = time.monotonic() + 600
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"{len(pending)} jobs of {setup.name} not done in 600 s")
        ended = watcher.jobs.wait_any(pending, timeout=30)
        for job in ended:
            if job.info["state"] != "succeeded":
                sys.exit(f"job {job.id} on {setup.name}: {job.info['state']}: "
                         f"{job.info['reason']} {job.info['log_tail']}")
        pending = [job for job in pending if job not in ended]
    return time.perf_counter() - t0, busy_since(cpu0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=0.25, help="each job's CPUs")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-scale-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        code = work / "src"
        code.mkdir()
        (code / "noop.py").write_text(NOOP)
        pg = stack.enter_context(postgres(work))
        s3 = stack.enter_context(s3_server(work))
        setups = [start_setup("one", 1, pg, s3, work, cores),
                  start_setup("two", 2, pg, s3, work, cores)]
        for setup in setups:
            for plane in setup.planes:
                stack.callback(plane.stop)
        for setup in setups:  # warm up: the code snapshot, each plane's worker pool
            run_round(setup, code, 8, args.cpus, "warm-up")
        seconds: dict[str, list[float]] = {s.name: [] for s in setups}
        busy: dict[str, list[float]] = {s.name: [] for s in setups}
        cpu_per_job: dict[str, list[float]] = {s.name: [] for s in setups}
        shares: dict[str, Counter[str]] = {}
        for r in range(args.rounds):
            for setup in setups if r % 2 == 0 else reversed(setups):
                tag = f"r{r}-{setup.name}"
                took, used = run_round(setup, code, args.jobs, args.cpus, tag)
                seconds[setup.name].append(took)
                busy[setup.name].append(used)
                # The whole machine's CPU time (servers, workers, jobs, PostgreSQL, S3, this
                # script) over the round, per job.
                cpu_per_job[setup.name].append(used * cores * took / args.jobs)
                shares[setup.name] = setup.owners(tag)
                print(f"round {r + 1} {setup.name:3s}: {args.jobs} jobs in {took:6.2f} s "
                      f"({args.jobs / took:5.2f} jobs/s), cores {used:4.0%} busy; run by "
                      f"{dict(shares[setup.name])}", flush=True)
    rate = {name: args.jobs / statistics.median(s) for name, s in seconds.items()}
    ratio = rate["two"] / rate["one"]
    met = ratio >= GOAL
    print(f"{args.jobs} jobs of {args.cpus:g} CPU each, {args.rounds} round(s), on {cores} CPUs")
    cores_busy = {name: statistics.median(b) for name, b in busy.items()}
    per_job = {name: statistics.median(c) for name, c in cpu_per_job.items()}
    for name, label in (("one", "one control plane "), ("two", "two control planes")):
        print(f"  {label} {rate[name]:6.2f} jobs/s, cores {cores_busy[name]:.0%} busy, "
              f"{per_job[name] * 1000:.0f} CPU-ms per job")
    print(f"goal: two >= {GOAL:g}x one: {ratio:.2f}x -> {'met' if met else 'NOT met'}")
    print(json.dumps({
        "bench": "scale", "ratio": round(ratio, 3), "goal": f">= {GOAL:g}", "met": met,
        "jobs": args.jobs, "rounds": args.rounds, "job_cpus": args.cpus,
        "one_jobs_per_s": round(rate["one"], 2), "two_jobs_per_s": round(rate["two"], 2),
        "one_s": [round(s, 2) for s in seconds["one"]],
        "two_s": [round(s, 2) for s in seconds["two"]],
        "two_split": sorted(shares["two"].values(), reverse=True), "cpus": cores,
        "one_busy": round(cores_busy["one"], 2), "two_busy": round(cores_busy["two"], 2),
        "one_cpu_ms_per_job": round(per_job["one"] * 1000),
        "two_cpu_ms_per_job": round(per_job["two"] * 1000),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
