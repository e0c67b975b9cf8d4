"""Real-time serving: one scikit-learn model behind four servers, under the same load.

    bare    a bare ASGI app that answers a constant, on uvicorn: the ceiling for Python
    mlflow  `mlflow models serve --env-manager local -w 2`
    bentoml a BentoML 1.4 service with 2 workers, in a virtual environment of its own
            (bench/.venvs/bentoml, made on first use: its pins clash with MLflow's)
    cumulo  a Cumulo endpoint with 2 replicas, at its own address

Each gets the same number of worker processes (2) and the same client (bench/loadgen.py, its
own process): 64 keep-alive connections posting single-row requests, then 100-row requests,
for --seconds each after a warm-up. Also timed: from `endpoints create` to the first answer,
from zero replicas to the first answer, and `mlflow models serve` to its first ping.

Goals (issue 6): at least 8x MLflow's single-row throughput and at most 1/8 of its p99; at
least 2x BentoML's throughput; at least 0.7 of the bare app's; create and zero to first
answer under 3 s each.

--overhead measures instead what metrics and metering cost (issue 27): two Cumulo servers, one
with both on and one with both off, each with the endpoint above, loaded in turns (on, off,
then off, on) for --seconds at a time, single-row requests at the endpoint's address (the
figure above) and through the control plane's /endpoints/NAME/invocations (the path that
metrics count and time). Each round's figure is off's throughput over on's (above 1: on is
slower). Goal: the median of the rounds' ratios at most 1.02, at the endpoint's address. The
rounds are split among --blocks pairs of servers started afresh (which starts first
alternating), so that a difference between two server instances averages out instead of
reading as the settings'.

    python bench/serving.py [--seconds 10] [--skip-bentoml]
    python bench/serving.py --overhead [--rounds 20] [--seconds 3] [--blocks 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
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
from harness import (
    OVERHEAD_GOAL,
    OVERHEAD_SETTINGS,
    REPO,
    TOKEN,
    cpu_seconds,
    free_port,
    overhead_summary,
    overhead_verdict,
    register_model,
    start_server,
    stop_server,
    turns,
)

WORKERS = 2
CONNECTIONS = 64
FEATURES = [f"f{i}" for i in range(8)]
BENTO_VENV = REPO / "bench" / ".venvs" / "bentoml"
BENTOML = "bentoml==1.4.40"

BARE_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"predictions":[0]}'})
'''

BENTO_SERVICE = '''
import os
import pickle

import bentoml
import numpy as np


@bentoml.service(workers=WORKERS)
class Churn:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL"], "rb") as f:
            self.model = pickle.load(f)

    @bentoml.api
    def predict(self, rows: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(rows, dtype=float)).tolist()
'''.replace("WORKERS", str(WORKERS))


def make_model(work: Path) -> tuple[Path, Path]:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, len(FEATURES))), columns=FEATURES)
    labels = (frame.sum(axis=1) > 0).astype(int)
    model = LogisticRegression().fit(frame.to_numpy(), labels)
    path = work / "model"
    mlflow.sklearn.save_model(model, str(path), serialization_format="pickle",
                              signature=infer_signature(frame, labels))
    raw = work / "model.pkl"
    raw.write_bytes(pickle.dumps(model))
    return path, raw


def bodies(work: Path) -> dict[str, dict[str, Path]]:
    import numpy as np

    rng = np.random.default_rng(1)
    out: dict[str, dict[str, Path]] = {}
    for rows in (1, 100):
        data = rng.normal(size=(rows, len(FEATURES))).round(4).tolist()
        mlflow_body = work / f"mlflow-{rows}.json"
        mlflow_body.write_text(json.dumps({"dataframe_split": {"columns": FEATURES,
                                                               "data": data}}))
        bento_body = work / f"bento-{rows}.json"
        bento_body.write_text(json.dumps({"rows": data}))
        out[str(rows)] = {"mlflow": mlflow_body, "bento": bento_body}
    return out


def load(url: str, body: Path, seconds: float, *, warmup: float = 2,
         headers: tuple[str, ...] = ()) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "loadgen.py"), url, str(body), "--connections",
         str(CONNECTIONS), "--seconds", str(seconds), "--warmup", str(warmup),
         *(arg for header in headers for arg in ("--header", header))],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float,
              method: str = "GET", **kwargs: Any) -> float:
    """Seconds until ``url`` answers 200."""
    t0 = time.monotonic()
    while True:
        try:
            if httpx.request(method, url, timeout=5, **kwargs).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}; its log is "
                               "in the bench's work folder")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{url} did not answer in {timeout}s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_bare(work: Path, payloads: dict[str, dict[str, Path]],
             seconds: float) -> dict[str, Any]:
    (work / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--workers",
         str(WORKERS), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
         "--no-access-log"], cwd=work, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        wait_http(url, proc, 60, "POST", content=b"{}")
        return {rows: load(url, p["mlflow"], seconds) for rows, p in payloads.items()}
    finally:
        stop(proc)


def run_mlflow(work: Path, model: Path, payloads: dict[str, dict[str, Path]],
               seconds: float) -> dict[str, Any]:
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CUMULO_"))}
    # It runs `uvicorn` by name: this environment's must come first on PATH.
    env["PATH"] = f"{mlflow_cli.parent}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.monotonic()
    with open(work / "mlflow-serve.log", "wb") as log:
        proc = subprocess.Popen(
            [str(mlflow_cli), "models", "serve", "-m", str(model), "-p", str(port),
             "--env-manager", "local", "-w", str(WORKERS)], cwd=work, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, 120)
        first_ping = time.monotonic() - t0
        url = f"http://127.0.0.1:{port}/invocations"
        out: dict[str, Any] = {rows: load(url, p["mlflow"], seconds)
                               for rows, p in payloads.items()}
        out["first_ping_s"] = round(first_ping, 2)
        return out
    finally:
        stop(proc)


def bento_python() -> Path | None:
    python = BENTO_VENV / "bin" / "python"
    if (BENTO_VENV / ".installed").exists():
        return python
    import sklearn

    print(f"making {BENTO_VENV} with {BENTOML} (once; a minute or two)", file=sys.stderr)
    shutil.rmtree(BENTO_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENTO_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", BENTOML,
                           f"scikit-learn=={sklearn.__version__}", "numpy"])
    if done.returncode != 0:
        return None
    (BENTO_VENV / ".installed").touch()
    return python


def run_bentoml(work: Path, raw_model: Path, payloads: dict[str, dict[str, Path]],
                seconds: float) -> dict[str, Any] | None:
    python = bento_python()
    if python is None:
        print("BentoML could not be installed; skipping it", file=sys.stderr)
        return None
    folder = work / "bento"
    folder.mkdir()
    (folder / "service.py").write_text(BENTO_SERVICE)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CUMULO_"))}
    env.update(BENCH_MODEL=str(raw_model), BENTOML_DO_NOT_TRACK="true",
               BENTOML_HOME=str(work / "bentoml-home"))
    with open(work / "bentoml.log", "wb") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "bentoml", "serve", "service:Churn", "--port", str(port)],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, 180)
        url = f"http://127.0.0.1:{port}/predict"
        return {rows: load(url, p["bento"], seconds) for rows, p in payloads.items()}
    finally:
        stop(proc)


def serving_ready(client: Any) -> None:
    """Wait for the server's serving fork server to finish starting."""
    deadline = time.monotonic() + 120
    while client.endpoints.runtime()["fork_server"]["state"] == "starting":
        if time.monotonic() > deadline:
            raise TimeoutError("the serving fork server did not get ready")
        time.sleep(0.2)


def run_cumulo(work: Path, model: Path, payloads: dict[str, dict[str, Path]],
               seconds: float) -> dict[str, Any]:
    server, url = start_server(work)
    try:
        from cumulo.client import Client

        client = Client(url=url, token=TOKEN)
        serving_ready(client)
        register_model(url, model, "bench-serving")
        one = payloads["1"]["mlflow"].read_bytes()
        t0 = time.monotonic()
        info = client.endpoints.create("churn", "churn:1", min_replicas=WORKERS,
                                        public=True)  # the same, open address as before
        created = wait_http(f"{info['url']}/invocations", None, 60, "POST", content=one,
                            headers={"content-type": "application/json"})
        created = time.monotonic() - t0
        client.endpoints["churn"].wait(60)
        while len([r for r in client.endpoints.show("churn")["replicas"] if r["ready"]]) < 2:
            time.sleep(0.1)
        endpoint = f"{info['url']}/invocations"
        out: dict[str, Any] = {rows: load(endpoint, p["mlflow"], seconds)
                               for rows, p in payloads.items()}
        out["create_to_first_answer_s"] = round(created, 2)
        sleepy = client.endpoints.create("sleepy", "churn:1", min_replicas=0, public=True,
                                         scale_to_zero_after=1, wait=True)
        while client.endpoints.show("sleepy")["replicas"]:
            time.sleep(0.1)
        t0 = time.monotonic()
        answer = httpx.post(f"{sleepy['url']}/invocations", content=one, timeout=60,
                            headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        out["zero_to_first_answer_s"] = round(time.monotonic() - t0, 2)
        return out
    finally:
        stop_server(server)


def overhead_endpoint(name: str, work: Path, model: Path) -> tuple[subprocess.Popen[bytes],
                                                                    Any, dict[str, str]]:
    """A server with OVERHEAD_SETTINGS[name] and the endpoint of run_cumulo; the server's
    process, a client, and the endpoint's two addresses (its own, the control plane's)."""
    from cumulo.client import Client

    server, url = start_server(work / name, env=OVERHEAD_SETTINGS[name])
    client = Client(url=url, token=TOKEN)
    serving_ready(client)
    register_model(url, model, f"bench-serving-{name}")
    info = client.endpoints.create("churn", "churn:1", min_replicas=WORKERS, public=True)
    client.endpoints["churn"].wait(60)
    while len([r for r in client.endpoints.show("churn")["replicas"] if r["ready"]]) < WORKERS:
        time.sleep(0.1)
    return server, client, {"endpoint": f"{info['url']}/invocations",
                            "control_plane": f"{url}/endpoints/churn/invocations"}


def _overhead_round(figures: dict[str, dict[str, dict[str, list[float]]]],
                    order: tuple[str, str], clients: dict[str, Any],
                    servers: dict[str, subprocess.Popen[bytes]],
                    addresses: dict[str, dict[str, str]], body: Path, seconds: float) -> None:
    """One round: each path's load on each server, in ``order``."""
    for path, by in figures.items():
        for name in order:
            # The endpoint's address is its replicas'; through the control plane, both.
            pids = [r["pid"] for r in clients[name].endpoints.show("churn")["replicas"]]
            if path == "control_plane":
                pids.append(servers[name].pid)
            before = sum(cpu_seconds(pid) for pid in pids)
            r = load(addresses[name][path], body, seconds, warmup=0, headers=(
                (f"Authorization: Bearer {TOKEN}",) if path == "control_plane" else ()))
            if r["errors"]:
                raise RuntimeError(f"{r['errors']} errors from {addresses[name][path]}")
            by["rps"][name].append(r["rps"])
            by["cpu_us"][name].append(
                (sum(cpu_seconds(pid) for pid in pids) - before) / r["requests"] * 1e6)


def overhead(rounds: int, seconds: float, blocks: int = 3) -> None:
    """Throughput with metrics and metering on against off (the module's docstring); beside
    it, the CPU the server's processes spent a request (far steadier on a shared machine).

    Two servers are never quite alike (where their replicas' processes land, which started
    first): such a difference would stay for the whole run and read as the settings'. So the
    rounds are split into ``blocks``, each with two servers started afresh, the one with the
    settings on started first in one block and second in the next."""
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-serving-overhead-"))
    servers: dict[str, subprocess.Popen[bytes]] = {}
    # figures[path][figure][server]: one value a round
    figures: dict[str, dict[str, dict[str, list[float]]]] = {
        path: {"rps": {"on": [], "off": []}, "cpu_us": {"on": [], "off": []}}
        for path in ("endpoint", "control_plane")}
    try:
        model, _ = make_model(work)
        one = bodies(work)["1"]["mlflow"]
        done = 0
        for block in range(blocks):
            order_started = list(OVERHEAD_SETTINGS)[::1 if block % 2 == 0 else -1]
            clients, addresses = {}, {}
            for name in order_started:
                servers[name], clients[name], addresses[name] = overhead_endpoint(
                    name, work / f"block{block}", model)
            for name in servers:  # warm both: the connections, the replicas' first requests
                load(addresses[name]["endpoint"], one, 1, warmup=1)
            share = rounds // blocks + (1 if block < rounds % blocks else 0)
            for order in turns(share):
                done += 1
                _overhead_round(figures, order, clients, servers, addresses, one, seconds)
                print(f"block {block + 1}, round {done:2d}: " + "; ".join(
                    f"{path} on/off {by['rps']['on'][-1]:7.0f}/{by['rps']['off'][-1]:7.0f} "
                    f"req/s, {by['cpu_us']['on'][-1]:5.1f}/{by['cpu_us']['off'][-1]:5.1f} us "
                    "CPU a request" for path, by in figures.items()), file=sys.stderr,
                    flush=True)
            for client in clients.values():
                client.close()
            for proc in servers.values():
                stop_server(proc)
            servers.clear()
    finally:
        for proc in servers.values():
            stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    # Above 1, on is the slower: off's throughput over on's, on's CPU over off's.
    summaries: dict[str, dict[str, Any]] = {path: {
        "throughput": overhead_summary(
            [off / on for on, off in zip(by["rps"]["on"], by["rps"]["off"], strict=True)]),
        "cpu_per_request": overhead_summary(
            [on / off for on, off in zip(by["cpu_us"]["on"], by["cpu_us"]["off"], strict=True)]),
        **{f"{figure}_median": {name: round(statistics.median(v), 1) for name, v in f.items()}
           for figure, f in by.items()}} for path, by in figures.items()}
    summary = summaries["endpoint"]["throughput"]
    met = summary["ratio"] <= OVERHEAD_GOAL
    load_average = round(os.getloadavg()[0], 2)
    for path, found in summaries.items():
        for figure in ("throughput", "cpu_per_request"):
            f = found[figure]
            print(f"{path:13s} {figure:15s} on vs off: {f['ratio']:.3f} (IQR {f['q1']:.3f} "
                  f"to {f['q3']:.3f}, 95% CI {f['ci95']})")
    print(f"{rounds} rounds of {seconds:g} s in {blocks} blocks, on {os.cpu_count()} CPUs, "
          f"load average {load_average}; goal <= {OVERHEAD_GOAL} for throughput at the "
          f"endpoint's address -> {'met' if met else 'NOT met'}")
    print(overhead_verdict(summary))
    print(json.dumps({
        "bench": "serving-overhead", **summary, "goal": f"<= {OVERHEAD_GOAL}", "met": met,
        "verdict": overhead_verdict(summary).split(":")[0],
        "figure": "single-row throughput at the endpoint's address, off / on", **summaries,
        "rounds": rounds, "blocks": blocks, "seconds": seconds, "workers": WORKERS,
        "connections": CONNECTIONS, "cpus": os.cpu_count(), "load_average": load_average}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=None,
                        help="of each load: 10, or 3 with --overhead")
    parser.add_argument("--skip-bentoml", action="store_true")
    parser.add_argument("--only", help="comma list of servers to run (for a quick look): "
                        "bare,cumulo,mlflow,bentoml; prints no ratios")
    parser.add_argument("--overhead", action="store_true",
                        help="what metrics and metering cost: two Cumulo servers, on and off")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of --overhead")
    parser.add_argument("--blocks", type=int, default=3,
                        help="--overhead's rounds are split among this many pairs of servers, "
                        "started afresh")
    args = parser.parse_args()
    if args.overhead:
        overhead(args.rounds, args.seconds or 3, max(1, min(args.blocks, args.rounds)))
        return
    args.seconds = args.seconds or 10
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-serving-"))
    try:
        model, raw = make_model(work)
        payloads = bodies(work)
        results: dict[str, Any] = {}
        only = set(args.only.split(",")) if args.only else {"bare", "cumulo", "mlflow",
                                                             "bentoml"}
        if "bare" in only:
            results["bare"] = run_bare(work, payloads, args.seconds)
        if "cumulo" in only:
            results["cumulo"] = run_cumulo(work, model, payloads, args.seconds)
        if "mlflow" in only:
            results["mlflow"] = run_mlflow(work, model, payloads, args.seconds)
        if "bentoml" in only and not args.skip_bentoml:
            results["bentoml"] = run_bentoml(work, raw, payloads, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'server':8} {'rows':>4} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for name, result in results.items():
        if result is None:
            continue
        for rows in ("1", "100"):
            r = result[rows]
            print(f"{name:8} {rows:>4} {r['rps']:9.1f} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} "
                  f"{r['errors']:7d}")
    if args.only:
        return
    c, m, b, bare = (results["cumulo"], results["mlflow"], results.get("bentoml"),
                     results["bare"])
    vs_mlflow = c["1"]["rps"] / m["1"]["rps"]
    p99_vs_mlflow = m["1"]["p99_ms"] / c["1"]["p99_ms"]
    vs_bento = c["1"]["rps"] / b["1"]["rps"] if b else None
    vs_bare = c["1"]["rps"] / bare["1"]["rps"]
    print(f"\nsingle-row throughput: {vs_mlflow:.1f}x MLflow (goal >= 8), "
          + (f"{vs_bento:.2f}x BentoML (goal >= 2), " if vs_bento else "BentoML skipped, ")
          + f"{vs_bare:.2f} of the bare ASGI app (goal >= 0.7)")
    print(f"p99: MLflow's is {p99_vs_mlflow:.1f}x Cumulo's (goal >= 8)")
    print(f"100-row throughput: {c['100']['rps'] / m['100']['rps']:.1f}x MLflow"
          + (f", {c['100']['rps'] / b['100']['rps']:.2f}x BentoML" if b else ""))
    print(f"create to first answer {c['create_to_first_answer_s']} s, zero replicas to first "
          f"answer {c['zero_to_first_answer_s']} s (goal < 3 each); mlflow models serve to "
          f"first ping {m['first_ping_s']} s")
    met = (vs_mlflow >= 8 and p99_vs_mlflow >= 8 and (vs_bento is None or vs_bento >= 2)
           and vs_bare >= 0.7 and c["create_to_first_answer_s"] < 3
           and c["zero_to_first_answer_s"] < 3)
    print(json.dumps({
        "bench": "serving", "ratio": round(vs_mlflow, 2), "goal": ">= 8", "met": met,
        "p99_vs_mlflow": round(p99_vs_mlflow, 2),
        "vs_bentoml": round(vs_bento, 2) if vs_bento else None, "vs_bare": round(vs_bare, 3),
        "create_to_first_answer_s": c["create_to_first_answer_s"],
        "zero_to_first_answer_s": c["zero_to_first_answer_s"],
        "mlflow_first_ping_s": m["first_ping_s"], "workers": WORKERS,
        "connections": CONNECTIONS}))


if __name__ == "__main__":
    main()
