"""Environments: building one, finding it again, and starting a job in it.

Three measurements, each beside its baseline in the same run (sides alternating, so both see
the same machine load):

- build: ``client.envs.create(NAME, ["pandas", "scikit-learn"], isolated=True)`` on a fresh
  server home each round (so it is resolved and built, not found), uv's package cache warm;
  against the same work by hand: ``uv venv`` then ``uv pip install pandas scikit-learn`` with
  the same indexes. Isolated, so that every package is installed (a layer over the server's
  packages would install nothing here: it has pandas and scikit-learn). Goal (issue 21): under
  15 s.
- lookup: the same requirements again, through the API (``envs create`` of a second name for
  them: the request's digest is looked up, nothing resolved or built); against a read of the
  environment (``GET /envs/DIGEST``), the floor of an API call. Goal: under 50 ms.
- start: submission to the first line of user code (as bench/jobs.py measures it) of a job in
  that environment, warm (the jobs before it in the environment leave a worker of it), against
  the same job in the server's own environment. Goal: within 2x the server's own.
- serving: a model logged with scikit-learn 1.5.2 (the server has another) is served in its own
  environment (the default for it) and in the server's (--env server); create-to-first-answer
  of the first, its environment already built by an endpoint before it (goal: under 5 s), and
  the throughput of both, measured one after the other with bench/loadgen.py, twice each,
  alternating (goal: the model's environment at least 0.8 of the server's).

    python bench/envs.py [--builds 3] [--lookups 30] [--jobs 30] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server, wait_preloaded

REQUIREMENTS = ["pandas", "scikit-learn"]
GOAL_BUILD_S = 15.0
GOAL_LOOKUP_MS = 50.0
GOAL_START_RATIO = 2.0
GOAL_FIRST_ANSWER_S = 5.0
GOAL_THROUGHPUT = 0.8
OLD_SKLEARN = "1.5.2"
STAMP = "import time; print(repr(time.time()), flush=True)\n"


def by_hand(folder: Path) -> float:
    """What a user would run for the same environment: uv venv, then uv pip install."""
    from cumulo.compute.environments.build import index_args, uv_bin

    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    t0 = time.perf_counter()
    subprocess.run([uv_bin(), "venv", "--quiet", "--python", sys.executable, str(folder)],
                   check=True, env=env)
    subprocess.run([uv_bin(), "pip", "install", "--quiet", "--python",
                    str(folder / "bin" / "python"), *REQUIREMENTS, *index_args()],
                   check=True, env=env)
    took = time.perf_counter() - t0
    shutil.rmtree(folder, ignore_errors=True)
    return took


def cumulo_build(work: Path) -> tuple[float, Any, str]:
    """A fresh server home, then envs create (resolved and built): its time, and the server
    (left running) with its URL."""
    work.mkdir()
    proc, url = start_server(work)
    from cumulo import Client

    client = Client(url, token=TOKEN)
    wait_preloaded(client)  # its fork server's imports are not the build's
    t0 = time.perf_counter()
    env = client.envs.create("ml", REQUIREMENTS, isolated=True)
    took = time.perf_counter() - t0
    client.close()
    if env["state"] != "ready":
        raise SystemExit(f"the environment did not build: {env['error']}")
    return took, proc, url


def start_latency(client: Any, code: Path, environment: str | None) -> float:
    t0 = time.time()
    job = client.jobs.run("stamp.py", code=code, environment=environment)
    info = job.wait(60)
    if info["state"] != "succeeded":
        raise SystemExit(f"job {job.id} {info['state']}: {info['reason']}")
    return float(next(iter(job.logs()))) - t0


def log_model(url: str) -> None:
    """A pyfunc model whose recorded requirements pin an older scikit-learn: its own
    environment differs from the server's. It answers a score per row (no sklearn object is
    pickled, so either environment loads it)."""
    import cloudpickle
    import mlflow
    import mlflow.pyfunc

    class Score(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import sklearn

            return [float(sklearn.__version__.split(".")[1]) * 0.01 + r for r in
                    model_input.sum(axis=1)]

    os.environ["MLFLOW_TRACKING_TOKEN"] = TOKEN
    mlflow.set_tracking_uri(f"{url}/mlflow")
    mlflow.set_registry_uri(f"{url}/mlflow")
    mlflow.set_experiment("bench-envs")
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=Score(), registered_model_name="old-sklearn",
            pip_requirements=[f"scikit-learn=={OLD_SKLEARN}", f"mlflow=={mlflow.__version__}",
                              f"cloudpickle=={cloudpickle.__version__}"])


def serving(client: Any, url: str, work: Path, seconds: float) -> dict[str, Any]:
    import httpx

    log_model(url)
    body = work / "one.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": ["a", "b"],
                                                    "data": [[1.0, 2.0]]}}))
    # The model's environment is built by a first endpoint; the measured one finds it built.
    first = client.endpoints.create("warm-env", "old-sklearn:1", public=True, wait=True,
                                    timeout=600)
    client.endpoints.delete(first["name"])
    t0 = time.perf_counter()
    info = client.endpoints.create("in-model-env", "old-sklearn:1", public=True)
    while True:
        try:
            answer = httpx.post(f"{info['url']}/invocations", content=body.read_bytes(),
                                headers={"content-type": "application/json"}, timeout=60)
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.perf_counter() - t0 > 120:
            raise SystemExit("the endpoint in the model's environment did not answer in 120 s")
        time.sleep(0.02)
    first_answer = time.perf_counter() - t0
    served = client.endpoints.create("in-server-env", "old-sklearn:1", public=True, env="server",
                                     wait=True)
    urls = {"model": f"{info['url']}/invocations", "server": f"{served['url']}/invocations"}
    rps: dict[str, list[float]] = {"model": [], "server": []}
    for _ in range(2):
        for side in ("model", "server"):
            out = subprocess.run([sys.executable, str(Path(__file__).parent / "loadgen.py"),
                                  urls[side], str(body), "--connections", "4", "--seconds",
                                  str(seconds), "--warmup", "1"],
                                 capture_output=True, text=True, check=True)
            rps[side].append(json.loads(out.stdout.strip().splitlines()[-1])["rps"])
    return {"first_answer_s": first_answer,
            "rps_model": statistics.median(rps["model"]),
            "rps_server": statistics.median(rps["server"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-envs-") as tmp:
        work = Path(tmp)
        code = work / "src"
        code.mkdir()
        (code / "stamp.py").write_text(STAMP)
        by_hand(work / "warm")  # uv's cache holds every package from here on
        builds: dict[str, list[float]] = {"by hand": [], "cumulo": []}
        proc = None
        try:
            for i in range(args.builds + 1):  # the first round warms both, untimed
                if proc is not None:
                    stop_server(proc)
                hand = by_hand(work / "by-hand")
                took, proc, url = cumulo_build(work / f"round-{i}")
                if i:
                    builds["by hand"].append(hand)
                    builds["cumulo"].append(took)
            from cumulo import Client

            with Client(url, token=TOKEN) as client:
                digest = client.envs.show("ml")["digest"]
                lookups: dict[str, list[float]] = {"read": [], "cumulo": []}
                for i in range(args.lookups + 3):
                    t0 = time.perf_counter()
                    client.envs.show(digest)
                    read = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    again = client.envs.create("ml-again", REQUIREMENTS, isolated=True)
                    lookup = time.perf_counter() - t0
                    if again["digest"] != digest or again["state"] != "ready":
                        raise SystemExit(f"the same requirements gave {again}")
                    if i >= 3:
                        lookups["read"].append(read)
                        lookups["cumulo"].append(lookup)
                starts: dict[str, list[float]] = {"own": [], "environment": []}
                for i in range(args.jobs + 3):  # the first ones leave warm workers
                    own = start_latency(client, code, None)
                    env = start_latency(client, code, "ml")
                    if i >= 3:
                        starts["own"].append(own)
                        starts["environment"].append(env)
                served = serving(client, url, work, args.seconds)
        finally:
            if proc is not None:
                stop_server(proc)
    build = {k: statistics.median(v) for k, v in builds.items()}
    lookup = {k: statistics.median(v) * 1000 for k, v in lookups.items()}
    start = {k: statistics.median(v) * 1000 for k, v in starts.items()}
    build_ratio = build["cumulo"] / build["by hand"]
    lookup_ratio = lookup["cumulo"] / lookup["read"]
    start_ratio = start["environment"] / start["own"]
    throughput = served["rps_model"] / served["rps_server"]
    met = {"build": build["cumulo"] < GOAL_BUILD_S, "lookup": lookup["cumulo"] < GOAL_LOOKUP_MS,
           "start": start_ratio < GOAL_START_RATIO,
           "first_answer": served["first_answer_s"] < GOAL_FIRST_ANSWER_S,
           "throughput": throughput >= GOAL_THROUGHPUT}
    print(f"on {os.cpu_count()} CPUs; medians")
    print(f"  build  ({args.builds}x, isolated pandas + scikit-learn, warm uv cache): "
          f"by hand {build['by hand']:.2f} s, cumulo {build['cumulo']:.2f} s "
          f"({build_ratio:.2f}x); goal < {GOAL_BUILD_S:g} s -> "
          f"{'met' if met['build'] else 'NOT met'}")
    print(f"  lookup ({args.lookups}x, the same requirements again): read {lookup['read']:.1f} "
          f"ms, cumulo {lookup['cumulo']:.1f} ms ({lookup_ratio:.2f}x); goal < "
          f"{GOAL_LOOKUP_MS:g} ms -> {'met' if met['lookup'] else 'NOT met'}")
    print(f"  start  ({args.jobs} jobs each, submission to user code): server's own "
          f"{start['own']:.1f} ms, "
          f"in the environment {start['environment']:.1f} ms ({start_ratio:.2f}x); goal < "
          f"{GOAL_START_RATIO:g}x -> {'met' if met['start'] else 'NOT met'}")
    print(f"  serving (a model pinning scikit-learn {OLD_SKLEARN}): create to first answer in "
          f"its own environment {served['first_answer_s']:.2f} s (goal < "
          f"{GOAL_FIRST_ANSWER_S:g} s -> {'met' if met['first_answer'] else 'NOT met'}); "
          f"throughput {served['rps_model']:.0f} req/s against {served['rps_server']:.0f} in "
          f"the server's ({throughput:.2f}; goal >= {GOAL_THROUGHPUT} -> "
          f"{'met' if met['throughput'] else 'NOT met'})")
    print(json.dumps({
        "bench": "envs", "ratio": round(start_ratio, 3),
        "goal": f"build < {GOAL_BUILD_S:g} s, lookup < {GOAL_LOOKUP_MS:g} ms, start < "
                f"{GOAL_START_RATIO:g}x the server's own environment, endpoint first answer < "
                f"{GOAL_FIRST_ANSWER_S:g} s, throughput >= {GOAL_THROUGHPUT} of the server's",
        "met": all(met.values()),
        "build_s": round(build["cumulo"], 2), "build_by_hand_s": round(build["by hand"], 2),
        "build_ratio": round(build_ratio, 3),
        "lookup_ms": round(lookup["cumulo"], 1), "read_ms": round(lookup["read"], 1),
        "lookup_ratio": round(lookup_ratio, 3),
        "start_env_ms": round(start["environment"], 1),
        "start_default_ms": round(start["own"], 1), "start_ratio": round(start_ratio, 3),
        "first_answer_s": round(served["first_answer_s"], 2),
        "rps_model_env": served["rps_model"], "rps_server_env": served["rps_server"],
        "throughput_ratio": round(throughput, 3),
        "builds": args.builds, "lookups": args.lookups, "jobs": args.jobs,
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
