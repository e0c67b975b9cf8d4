"""Invoking an endpoint with and without a token: what the replicas' own check costs.

One endpoint (a scikit-learn model, 2 replicas), in one run, under the same load
(bench/loadgen.py: 64 keep-alive connections posting single-row requests, --seconds each
after a warm-up), three ways:

    public          its own address, no token (the endpoint created --public, as every
                    endpoint's address answered before tokens were checked there)
    replica+token   its own address with 'Authorization: Bearer <token>', once it is made
                    private (cumulo endpoints update --private): each replica checks the token
    control plane   POST /endpoints/NAME/invocations on the control plane with the token,
                    which checks it and forwards to the replicas

Each round measures the three ways in turn (the endpoint goes public, then private, and the
control plane's route is measured while it is private), ``--rounds`` times, and each way keeps
its best round: on a shared two-core machine another process's burst would otherwise land on
one way only.

Goals (issue 18): the replicas with a token at least 0.8 of the public figure; the control
plane's route at least 0.3 of it with a p99 under 50 ms; no errors anywhere.

    python bench/secure_invoke.py [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, TOKEN, register_model, start_server, stop_server

REPLICAS = 2
CONNECTIONS = 64
FEATURES = [f"f{i}" for i in range(8)]


def make_model(work: Path) -> Path:
    """A logistic regression on 8 numeric features, saved as MLflow saves it."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, len(FEATURES))), columns=FEATURES)
    labels = (frame.sum(axis=1) > 0).astype(int)
    path = work / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(frame.to_numpy(), labels), str(path),
                              serialization_format="pickle",
                              signature=infer_signature(frame, labels))
    return path


def load(url: str, body: Path, seconds: float, headers: list[str]) -> dict[str, Any]:
    extra = [arg for header in headers for arg in ("--header", header)]
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "loadgen.py"), url, str(body), "--connections",
         str(CONNECTIONS), "--seconds", str(seconds), "--warmup", "1", *extra],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def status(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    try:
        return httpx.post(url, content=body, timeout=10, headers={
            "content-type": "application/json", **(headers or {})}).status_code
    except httpx.TransportError:
        return 0


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most requests a second; the errors of every round."""
    top = dict(max(runs, key=lambda r: r["rps"]))
    top["errors"] = sum(r["errors"] for r in runs)
    return top


def run(work: Path, seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    import numpy as np

    model = make_model(work)
    body = work / "one-row.json"
    row = np.random.default_rng(1).normal(size=(1, len(FEATURES))).round(4).tolist()
    body.write_text(json.dumps({"dataframe_split": {"columns": FEATURES, "data": row}}))
    one = body.read_bytes()
    server, url = start_server(work)
    try:
        from cumulo.client import Client

        client = Client(url=url, token=TOKEN)
        until(lambda: client.endpoints.runtime()["fork_server"]["state"] != "starting", 120,
              "the serving fork server ready")
        register_model(url, model, "bench-secure-invoke")
        info = client.endpoints.create("churn", "churn:1", min_replicas=REPLICAS,
                                       public=True, wait=True, timeout=120)
        until(lambda: sum(r["ready"] for r in client.endpoints.show("churn")["replicas"])
              >= REPLICAS, 60, "both replicas ready")
        direct = f"{info['url']}/invocations"
        bearer = f"Authorization: Bearer {TOKEN}"
        public: list[dict[str, Any]] = []
        private: list[dict[str, Any]] = []
        plane: list[dict[str, Any]] = []
        for round_ in range(rounds):
            if round_:
                client.endpoints["churn"].update(public=True)
                until(lambda: status(direct, one) == 200, 30, "the endpoint made public")
            public.append(load(direct, body, seconds, []))
            client.endpoints["churn"].update(public=False)
            until(lambda: status(direct, one) == 401, 30, "the endpoint made private")
            until(lambda: status(direct, one, {"Authorization": f"Bearer {TOKEN}"}) == 200,
                  30, "the token taken")
            private.append(load(direct, body, seconds, [bearer]))
            plane.append(load(f"{url}/endpoints/churn/invocations", body, seconds, [bearer]))
        print("rounds, req/s: public " + ", ".join(f"{r['rps']:.0f}" for r in public)
              + "; replica+token " + ", ".join(f"{r['rps']:.0f}" for r in private)
              + "; control plane " + ", ".join(f"{r['rps']:.0f}" for r in plane))
        return {"public": best(public), "replica_token": best(private),
                "control_plane": best(plane)}
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-secure-invoke-"))
    try:
        results = run(work, args.seconds, max(1, args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'way':14} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for name, r in results.items():
        print(f"{name:14} {r['rps']:9.1f} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} "
              f"{r['errors']:7d}")
    public, replica, plane = (results["public"], results["replica_token"],
                              results["control_plane"])
    replica_ratio = replica["rps"] / public["rps"] if public["rps"] else 0.0
    plane_ratio = plane["rps"] / public["rps"] if public["rps"] else 0.0
    errors = sum(r["errors"] for r in results.values())
    print(f"\nreplicas with a token: {replica_ratio:.2f} of the public figure (goal >= 0.8); "
          f"control plane: {plane_ratio:.2f} (goal >= 0.3), p99 {plane['p99_ms']:.1f} ms "
          f"(goal < 50); errors {errors} (goal 0)")
    met = (replica_ratio >= 0.8 and plane_ratio >= 0.3 and plane["p99_ms"] < 50
           and errors == 0)
    print(json.dumps({
        "bench": "secure_invoke", "ratio": round(replica_ratio, 3), "goal": ">= 0.8",
        "met": met, "control_plane_ratio": round(plane_ratio, 3),
        "control_plane_p99_ms": plane["p99_ms"], "errors": errors,
        "public_rps": public["rps"], "replica_token_rps": replica["rps"],
        "control_plane_rps": plane["rps"], "public_p99_ms": public["p99_ms"],
        "replica_token_p99_ms": replica["p99_ms"], "replicas": REPLICAS,
        "connections": CONNECTIONS, "rounds": args.rounds, "seconds": args.seconds}))


if __name__ == "__main__":
    main()
