"""Built-in training speed: LightGBM on a 1-million-row table through Cumulo, against the same
fit in a plain Python process on the same data.

  plain:  python plain_fit.py  -- read the Parquet file, split 80/20, fit, score (imports included)
  cumulo: client.train(table=..., algorithm="lightgbm") -- a job that reads the table, splits,
          fits, scores, logs metrics and plots to MLflow and registers the model
Goal (issue 5): Cumulo at most 1.2 times the plain fit plus 2 seconds.

    python bench/train.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server, wait_preloaded

PLAIN = """
import sys
import lightgbm as lgb
import pandas as pd
from sklearn import metrics
from sklearn.model_selection import train_test_split

frame = pd.read_parquet(sys.argv[1])
x, y = frame.drop(columns=["label"]), frame["label"]
x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42,
                                                  stratify=y)
model = lgb.LGBMClassifier(random_state=42, verbose=-1).fit(x_train, y_train)
print(metrics.accuracy_score(y_val, model.predict(x_val)))
"""


def make_data(rows: int, path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {f"f{i}": rng.normal(size=rows) for i in range(10)}
    score = columns["f0"] * 1.5 - columns["f1"] + 0.5 * columns["f2"] * columns["f3"]
    columns["label"] = (score + rng.normal(scale=0.5, size=rows) > 0).astype("int64")
    pq.write_table(pa.table(columns), path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cumulo-bench-train-") as tmp:
        work = Path(tmp)
        data = work / "data.parquet"
        make_data(args.rows, data)
        script = work / "plain_fit.py"
        script.write_text(PLAIN)
        proc, url = start_server(work)
        try:
            from cumulo import Client

            with Client(url, token=TOKEN, timeout=600) as client:
                client.tables.create_database("bench")
                client.tables.load("bench.points", str(data))
                client.models.list()  # MLflow starts on first use: not part of the timing
                preloaded = wait_preloaded(client)  # nor the fork server's imports
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, str(script), str(data)], check=True,
                                     capture_output=True, text=True)
                plain = time.perf_counter() - t0
                t0 = time.perf_counter()
                job = client.train(table="bench.points", target="label", name="bench",
                                   algorithm="lightgbm", validation_split=0.2, cpus=2)
                info = job.wait(1800)
                cumulo = time.perf_counter() - t0
                if info["state"] != "succeeded":
                    raise SystemExit(f"training job {info['state']}: {info['log_tail']}")
                accuracy = client.models.version("bench", 1)["lineage"]["metrics"]["accuracy"]
        finally:
            stop_server(proc)
    limit = 1.2 * plain + 2
    met = cumulo <= limit
    print(f"{args.rows} rows, 10 features, LightGBM, on {os.cpu_count()} CPUs")
    print(f"  plain fit      {plain:6.2f} s   (accuracy {float(out.stdout):.4f})")
    print(f"  cumulo train   {cumulo:6.2f} s   (accuracy {accuracy:.4f}; job, MLflow logging, "
          "plots and registration included)")
    print(f"goal: <= 1.2 x plain + 2 s = {limit:.2f} s -> {'met' if met else 'NOT met'}")
    print(json.dumps({"bench": "train", "ratio": round(cumulo / plain, 3),
                      "goal": "<= 1.2x plain + 2 s", "met": met, "rows": args.rows,
                      "plain_s": round(plain, 2), "cumulo_s": round(cumulo, 2),
                      "limit_s": round(limit, 2), "cpus": os.cpu_count(),
                      "preloaded_modules": len(preloaded)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
