"""What Prometheus metrics cost: the serving bench's hot path and the jobs bench's job start,
on two servers side by side, one with metrics on (the default) and one with ``metrics =
false``, measured in turns so both see the same machine load.

    serving  bench/serving.py's load (bench/loadgen.py, 64 connections, single-row requests)
             through the control plane's invocations (/endpoints/NAME/invocations: the path
             that counts and times each request) and at the endpoint's own address (its
             replicas: the same code either way, so their figure shows the noise)
    jobs     bench/jobs.py's job start latency: submission to the job's first line of code

On a shared machine throughput and latency move by tens of percent from one run to the next,
whatever is measured; the CPU time a server spends per request moves far less. So the figures
that decide are the control plane's CPU seconds per request and per job, with metrics on
against off; throughput, p99 and job start latency are printed beside them. And the cost of
the hook itself, timed in this process: microseconds per request observed.

Goal (issue 27): metrics add under 2% to each figure.

    python bench/metrics_overhead.py [--seconds 8] [--rounds 3] [--jobs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, cpu_seconds, free_port, register_model, stop_server, wait_preloaded
from jobs import STAMP
from jobs import cumulo as job_latency

from serving import CONNECTIONS, WORKERS, bodies, make_model

GOAL_PCT = 2.0


def start(work: Path, metrics: bool) -> tuple[subprocess.Popen[bytes], str]:
    """``cumulo up`` as bench/harness.py starts it, with metrics on or off."""
    exe = Path(sys.executable).parent / "cumulo"
    cumulo = str(exe) if exe.exists() else shutil.which("cumulo")
    if not cumulo:
        sys.exit("cannot find the 'cumulo' command; run 'make bench' (it installs the project)")
    work.mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULO_")}
    env.update({"CUMULO_HOME": str(work / "home"), "CUMULO_PORT": str(port),
                "CUMULO_ADMIN_TOKEN": TOKEN, "CUMULO_CREDENTIALS": str(work / "cred.toml"),
                "CUMULO_LOG_LEVEL": "warning", "CUMULO_METRICS": str(metrics).lower()})
    with open(work / "server.log", "wb") as out:
        proc = subprocess.Popen([cumulo, "up"], env=env, cwd=work, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            sys.exit(f"cumulo up did not start:\n{(work / 'server.log').read_text()[-3000:]}")
        time.sleep(0.1)


def load(url: str, body: Path, seconds: float, token: bool) -> dict[str, Any]:
    headers = ["--header", f"Authorization: Bearer {TOKEN}"] if token else []
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "loadgen.py"), url, str(body),
         "--connections", str(CONNECTIONS), "--seconds", str(seconds), "--warmup", "0",
         *headers], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def prepare(url: str, model: Path, code: Path) -> tuple[Any, str]:
    """An endpoint of WORKERS replicas on the server at ``url``; its client, its address."""
    from cumulo import Client

    client = Client(url, token=TOKEN)
    deadline = time.monotonic() + 120
    while client.endpoints.runtime()["fork_server"]["state"] == "starting":
        if time.monotonic() > deadline:
            sys.exit("the serving fork server did not get ready")
        time.sleep(0.2)
    register_model(url, model, "bench-metrics")
    info = client.endpoints.create("churn", "churn:1", min_replicas=WORKERS, public=True)
    client.endpoints["churn"].wait(60)
    while len([r for r in client.endpoints.show("churn")["replicas"] if r["ready"]]) < WORKERS:
        time.sleep(0.1)
    wait_preloaded(client)
    for _ in range(3):  # warm the job path: the pool, the snapshot
        job_latency(client, code)
    return client, info["url"]


def hook_cost(n: int = 200_000) -> float:
    """Microseconds the metrics hook adds to a request (server/telemetry.py): finding the
    route's template, counting and timing it; the best of five runs."""
    from cumulo.server.telemetry import observe_scope

    class Route:
        path_format = "/jobs/{job_id}"
        path_regex = re.compile(r"^/jobs/(?P<job_id>[^/]+)$")

    scope = {"method": "GET", "path": "/api/v1/jobs/abc", "route": Route()}
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            observe_scope(scope, 200, 0.003)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def overhead(on: float, off: float, *, higher_is_better: bool) -> float:
    """How much worse ``on`` is than ``off``, in percent (negative: better)."""
    worse = (off - on) if higher_is_better else (on - off)
    return round(worse / off * 100, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20, help="jobs per server per round")
    parser.add_argument("--first", choices=("on", "off"), default="on",
                        help="which server starts first (a check of the order's own effect)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-metrics-"))
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        model, _ = make_model(work)
        one = bodies(work)["1"]["mlflow"]
        code = work / "src"
        code.mkdir()
        (code / "stamp.py").write_text(STAMP)
        targets: dict[str, tuple[Any, str, str]] = {}
        order = (("on", True), ("off", False))
        for name, on in (order if args.first == "on" else order[::-1]):
            proc, url = start(work / name, on)
            servers[name] = proc
            client, address = prepare(url, model, code)
            targets[name] = (client, url, address)
        figures: dict[str, dict[str, list[float]]] = {
            name: {"control_plane_cpu_us_per_request": [], "control_plane_rps": [],
                   "control_plane_p99_ms": [], "replicas_cpu_us_per_request": [],
                   "replicas_rps": [], "control_plane_cpu_ms_per_job": [],
                   "job_start_ms": []} for name in targets}
        for round_ in range(args.rounds):
            # Each round in the other order: neither always runs on a warmer machine.
            for name in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                client, url, address = targets[name]
                pid = servers[name].pid
                replicas = [r["pid"] for r in client.endpoints.show("churn")["replicas"]]
                f = figures[name]
                before = cpu_seconds(pid)
                through = load(f"{url}/endpoints/churn/invocations", one, args.seconds, True)
                f["control_plane_cpu_us_per_request"].append(
                    (cpu_seconds(pid) - before) / through["requests"] * 1e6)
                f["control_plane_rps"].append(through["rps"])
                f["control_plane_p99_ms"].append(through["p99_ms"])
                before = sum(cpu_seconds(r) for r in replicas)
                direct = load(f"{address}/invocations", one, args.seconds, False)
                f["replicas_cpu_us_per_request"].append(
                    (sum(cpu_seconds(r) for r in replicas) - before) / direct["requests"] * 1e6)
                f["replicas_rps"].append(direct["rps"])
                before = cpu_seconds(pid)
                f["job_start_ms"] += [job_latency(client, code) * 1000 for _ in range(args.jobs)]
                f["control_plane_cpu_ms_per_job"].append(
                    (cpu_seconds(pid) - before) / args.jobs * 1000)
                print(f"round {round_ + 1} metrics {name:3}: control plane "
                      f"{f['control_plane_cpu_us_per_request'][-1]:6.1f} us CPU a request, "
                      f"{through['rps']:8.1f} req/s; replicas "
                      f"{f['replicas_cpu_us_per_request'][-1]:6.1f} us CPU a request; "
                      f"{f['control_plane_cpu_ms_per_job'][-1]:6.1f} ms CPU a job",
                      file=sys.stderr, flush=True)
    finally:
        for proc in servers.values():
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    med = {name: {k: statistics.median(v) for k, v in f.items()} for name, f in figures.items()}
    lower_is_better = {"control_plane_cpu_us_per_request", "control_plane_p99_ms",
                       "replicas_cpu_us_per_request", "control_plane_cpu_ms_per_job",
                       "job_start_ms"}
    result = {f"{key}_pct": overhead(med["on"][key], med["off"][key],
                                     higher_is_better=key not in lower_is_better)
              for key in med["on"]}
    hook_us = hook_cost()
    share = round(hook_us / med["off"]["control_plane_cpu_us_per_request"] * 100, 2)
    for name in ("on", "off"):
        m = med[name]
        print(f"metrics {name:3}: control plane {m['control_plane_cpu_us_per_request']:6.1f} us "
              f"CPU a request, {m['control_plane_rps']:8.1f} req/s (p99 "
              f"{m['control_plane_p99_ms']:6.2f} ms); replicas "
              f"{m['replicas_cpu_us_per_request']:6.1f} us CPU a request, "
              f"{m['replicas_rps']:8.1f} req/s; job start median {m['job_start_ms']:6.1f} ms, "
              f"{m['control_plane_cpu_ms_per_job']:6.1f} ms CPU a job")
    # A job costs the control plane about 50 ms of CPU, counted in 10 ms ticks, and its
    # metrics a few microseconds (its requests, its end): the per-job figures are printed,
    # but only the per-request ones can show a 2% difference.
    deciding = [result["control_plane_cpu_us_per_request_pct"], share]
    worst = max(deciding)
    met = worst < GOAL_PCT
    print(f"overhead of metrics (%, median of {args.rounds} rounds): {result}")
    print(f"the hook: {hook_us:.2f} us a request, {share}% of the control plane's CPU a "
          f"request; goal < {GOAL_PCT:g}% -> {'met' if met else 'NOT met'}")
    print(json.dumps({"bench": "metrics_overhead", "ratio": worst, "goal": f"< {GOAL_PCT:g}%",
                      "met": met, **result, "hook_us": round(hook_us, 3),
                      "hook_share_pct": share, "rounds": args.rounds,
                      "seconds": args.seconds, "jobs": args.jobs, "cpus": os.cpu_count(),
                      "on": {k: round(v, 2) for k, v in med["on"].items()},
                      "off": {k: round(v, 2) for k, v in med["off"].items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
