"""Job start latency: from submission to the job's first line of user code, on a local cluster.

The same script is run two ways, interleaved so both see the same machine load:
  bare:   subprocess.run([python, stamp.py])  -- an interpreter start, the floor for a process
  cumulo: client.jobs.run("stamp.py", code=folder) -- snapshot check, queue, warm worker, run
Each run's script prints time.time() as its first statement; latency = that stamp minus the
moment just before the call. Goal (issue 4): Cumulo's median under 150 ms, and under 3 times
the bare subprocess's median.

--overhead measures instead what metrics and metering cost (issue 27): two servers, one with
both on and one with both off, each given --jobs jobs a round, one at a time in turns (on, off,
then off, on); each round's figure is the ratio of the two servers' median start latency.
Goal: the median of the rounds' ratios at most 1.02. The rounds are split among --blocks pairs
of servers started afresh (which starts first alternating), so that a difference between two
server instances averages out instead of reading as the settings'.

    python bench/jobs.py [--jobs 50]
    python bench/jobs.py --overhead [--rounds 30] [--jobs 20] [--blocks 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    OVERHEAD_GOAL,
    OVERHEAD_SETTINGS,
    TOKEN,
    overhead_summary,
    overhead_verdict,
    start_server,
    stop_server,
    turns,
    wait_preloaded,
)

GOAL_MS = 150.0
GOAL_RATIO = 3.0
STAMP = "import time; print(repr(time.time()), flush=True)\n"


def bare(script: Path) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.splitlines()[0]) - t0


def cumulo(client, code: Path) -> float:  # type: ignore[no-untyped-def]
    t0 = time.time()
    job = client.jobs.run("stamp.py", code=code)
    info = job.wait(60)
    if info["state"] != "succeeded":
        raise SystemExit(f"job {job.id} {info['state']}: {info['log_tail']}")
    return float(next(iter(job.logs()))) - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overhead(rounds: int, jobs: int, blocks: int = 3) -> int:
    """Job start latency with metrics and metering on against off (the module's docstring).
    The rounds are split into ``blocks``, each with two servers started afresh (the one with
    the settings on first in one block, second in the next), so that a difference between
    two server instances averages out instead of reading as the settings'."""
    from cumulo import Client

    servers: dict[str, subprocess.Popen[bytes]] = {}
    ratios: list[float] = []
    medians: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-jobs-overhead-") as tmp:
        work = Path(tmp)
        code = work / "src"
        code.mkdir()
        (code / "stamp.py").write_text(STAMP)
        try:
            done = 0
            for block in range(blocks):
                clients = {}
                for name in list(OVERHEAD_SETTINGS)[::1 if block % 2 == 0 else -1]:
                    servers[name], url = start_server(work / f"block{block}" / name,
                                                      env=OVERHEAD_SETTINGS[name])
                    clients[name] = Client(url, token=TOKEN)
                for client in clients.values():
                    wait_preloaded(client)
                    for _ in range(3):  # warm the pool and the snapshot
                        cumulo(client, code)
                for _ in range(rounds // blocks + (1 if block < rounds % blocks else 0)):
                    # One job at a time on each, in turns within the round too: the load of
                    # the machine's other users comes and goes faster than a round.
                    took: dict[str, list[float]] = {"on": [], "off": []}
                    for order in turns(jobs + done % 2)[done % 2:]:
                        for name in order:
                            took[name].append(cumulo(clients[name], code))
                    for name, seconds in took.items():
                        medians[name].append(statistics.median(seconds) * 1000)
                    ratios.append(medians["on"][-1] / medians["off"][-1])
                    done += 1
                    print(f"block {block + 1}, round {done:2d}: median start on "
                          f"{medians['on'][-1]:6.1f} ms, off {medians['off'][-1]:6.1f} ms, "
                          f"ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
                for client in clients.values():
                    client.close()
                for proc in servers.values():
                    stop_server(proc)
                servers.clear()
        finally:
            for proc in servers.values():
                stop_server(proc)
    summary = overhead_summary(ratios)
    met = summary["ratio"] <= OVERHEAD_GOAL
    print(f"{rounds} rounds of {jobs} jobs a server in {blocks} blocks, on {os.cpu_count()} "
          f"CPUs, load average "
          f"{os.getloadavg()[0]:.2f}: job start median with metrics and metering on / off = "
          f"{summary['ratio']:.3f} (IQR {summary['q1']:.3f} to {summary['q3']:.3f}, 95% CI "
          f"{summary['ci95']}); goal <= {OVERHEAD_GOAL} -> {'met' if met else 'NOT met'}")
    print(overhead_verdict(summary))
    print(json.dumps({
        "bench": "jobs-overhead", **summary, "goal": f"<= {OVERHEAD_GOAL}", "met": met,
        "verdict": overhead_verdict(summary).split(":")[0],
        "figure": "job start latency median, on / off", "rounds": rounds, "blocks": blocks,
        "jobs": jobs,
        "on_median_ms": round(statistics.median(medians["on"]), 1),
        "off_median_ms": round(statistics.median(medians["off"]), 1),
        "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
    }))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs each way (50), or each server's a round with --overhead (20)")
    parser.add_argument("--overhead", action="store_true",
                        help="what metrics and metering cost: two servers, on and off")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of --overhead")
    parser.add_argument("--blocks", type=int, default=3,
                        help="--overhead's rounds are split among this many pairs of servers, "
                        "started afresh")
    args = parser.parse_args()
    if args.overhead:
        return overhead(args.rounds, args.jobs or 20, max(1, min(args.blocks, args.rounds)))
    args.jobs = args.jobs or 50
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-jobs-") as tmp:
        work = Path(tmp)
        code = work / "src"
        code.mkdir()
        (code / "stamp.py").write_text(STAMP)
        proc, url = start_server(work)
        try:
            from cumulo import Client

            with Client(url, token=TOKEN) as client:
                # Python jobs fork from the fork server once it has imported the ML stack:
                # measure that steady state, not its imports running beside the first jobs.
                wait_preloaded(client)
                for _ in range(3):  # warm both paths: the page cache, the pool, the snapshot
                    bare(code / "stamp.py")
                    cumulo(client, code)
                results: dict[str, list[float]] = {"bare": [], "cumulo": []}
                for _ in range(args.jobs):
                    results["bare"].append(bare(code / "stamp.py"))
                    results["cumulo"].append(cumulo(client, code))
        finally:
            stop_server(proc)
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    p90 = {k: pct(v, 0.9) * 1000 for k, v in results.items()}
    ratio = med["cumulo"] / med["bare"]
    met = med["cumulo"] < GOAL_MS and ratio < GOAL_RATIO
    print(f"{args.jobs} jobs each way, on {os.cpu_count()} CPUs")
    for name in ("bare", "cumulo"):
        print(f"  {name:7s} median {med[name]:7.1f} ms   p90 {p90[name]:7.1f} ms   "
              f"min {min(results[name]) * 1000:7.1f} ms")
    print(f"goal: median < {GOAL_MS:.0f} ms and < {GOAL_RATIO:g}x bare: "
          f"{med['cumulo']:.1f} ms, {ratio:.2f}x -> {'met' if met else 'NOT met'}")
    print(json.dumps({
        "bench": "jobs", "ratio": round(ratio, 3), "goal": f"< {GOAL_RATIO:g}x bare and "
        f"< {GOAL_MS:.0f} ms median", "met": met, "jobs": args.jobs,
        "cumulo_median_ms": round(med["cumulo"], 1), "bare_median_ms": round(med["bare"], 1),
        "cumulo_p90_ms": round(p90["cumulo"], 1), "bare_p90_ms": round(p90["bare"], 1),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
