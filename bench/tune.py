"""Tuning speed: 16 LightGBM trials with 2 running at once on the local cluster, against the
same 16 trials run one after another.

Both studies go through Cumulo (`client.tune`) on the same table with the same search space,
strategy and seed, so they try the same hyperparameters: the only difference is
``max_parallel``. Each trial is a job with 1 CPU (a LightGBM fit with one thread, its MLflow
logging and the model it logs).
Goal (issue 5): the parallel study at least 1.7 times faster.

    python bench/tune.py [--rows 100000] [--trials 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server, wait_preloaded

SPACE = {"learning_rate": {"low": 0.02, "high": 0.3, "log": True},
         "num_leaves": {"low": 8, "high": 64}, "min_child_samples": {"low": 5, "high": 50}}


def make_table(client: object, rows: int) -> None:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    columns = {f"f{i}": rng.normal(size=rows) for i in range(10)}
    score = columns["f0"] * 1.5 - columns["f1"] + 0.5 * columns["f2"] * columns["f3"]
    columns["label"] = (score + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
    client.tables.create_database("bench")  # type: ignore[attr-defined]
    client.tables.write("bench.points", pa.table(columns))  # type: ignore[attr-defined]


def study(client: object, name: str, trials: int, parallel: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = client.tune(  # type: ignore[attr-defined]
        name=name, table="bench.points", target="label", algorithm="lightgbm",
        objective="roc_auc", search_space=SPACE, strategy="random", seed=7,
        max_trials=trials, max_parallel=parallel, cpus=1,
        hyperparameters={"n_estimators": 150})
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-tune-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            from cumulo import Client

            with Client(url, token=TOKEN, timeout=600) as client:
                make_table(client, args.rows)
                client.models.list()  # MLflow starts on first use: not part of the timing
                preloaded = wait_preloaded(client)  # nor the fork server's imports
                # Nor the tuner's own imports, which only the first study would pay.
                import matplotlib.pyplot  # noqa: F401
                import mlflow  # noqa: F401
                import optuna.visualization.matplotlib  # noqa: F401
                sequential, one = study(client, "one-at-a-time", args.trials, 1)
                parallel, two = study(client, "two-at-a-time", args.trials, 2)
        finally:
            stop_server(proc)
    same = [t["params"] for t in one["trials"]] == [t["params"] for t in two["trials"]]
    ratio = sequential / parallel
    met = ratio >= 1.7
    done = sum(t["state"] == "complete" for t in one["trials"] + two["trials"])
    print(f"{args.trials} LightGBM trials on {args.rows} rows, 1 CPU each, on "
          f"{os.cpu_count()} CPUs (same hyperparameters in both: {same}; {done} of "
          f"{2 * args.trials} trials complete)")
    print(f"  one at a time   {sequential:6.2f} s  (best roc_auc {one['best']['value']:.4f})")
    print(f"  two at a time   {parallel:6.2f} s  (best roc_auc {two['best']['value']:.4f})")
    print(f"speed-up {ratio:.2f}x; goal >= 1.7x -> {'met' if met else 'NOT met'}")
    print(json.dumps({"bench": "tune", "ratio": round(ratio, 3), "goal": ">= 1.7",
                      "met": met, "trials": args.trials, "rows": args.rows,
                      "sequential_s": round(sequential, 2), "parallel_s": round(parallel, 2),
                      "cpus": os.cpu_count(), "preloaded_modules": len(preloaded)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
