"""Benchmark: a model monitor's drift report over 1 million captured rows, under 10 s.

What is timed is what a monitor run does with the data (cumulo.serving.monitors.runs): read
the endpoint's capture table (a Delta table of 1,000,000 captured requests, one row each, as
replicas capture them: the JSON body, the answer, the time), read them back into features
(DuckDB's JSON reader, cumulo.serving.monitors.captured), and compare them with a baseline
table version of 1,000,000 rows: per numeric feature (4) PSI at the baseline's deciles, KS,
missing and out-of-range rates; per categorical feature (2) PSI and the unseen rate; the
predictions' PSI; and the thresholds. The metadata database and the report's write (a few
rows) are left out: milliseconds.

The baseline it is held against: the same work done the plain way in pandas (each body read
with json.loads, a DataFrame built from the records, pandas' quantiles, value_counts and
scipy's ks_2samp per feature), over the same rows.

Run it with ``make bench-monitors`` or ``.venv/bin/python bench/monitors.py [--rows N]``. The
last line of output is JSON: ``{"bench": "monitors", "seconds": ..., "goal": "< 10 s",
"met": ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from harness import DATA

from cumulo.serving.monitors import stats
from cumulo.serving.monitors.captured import decode
from cumulo.serving.monitors.models import Monitor
from cumulo.serving.monitors.runs import breaches, compare

NUMERIC = ["tenure", "spend", "calls", "age"]
CATEGORICAL = ["plan", "region"]
FEATURES = ([{"name": n, "kind": "numeric"} for n in NUMERIC]
            + [{"name": n, "kind": "categorical"} for n in CATEGORICAL])
PLANS, REGIONS = ["basic", "plus", "pro"], ["eu", "us", "apac", "latam"]
GOAL_S = 10.0


def _frame(rows: int, rng: np.random.Generator, shift: float) -> pd.DataFrame:
    return pd.DataFrame({
        "tenure": rng.integers(1, 72, rows) + int(shift * 10),
        "spend": rng.normal(50 + shift * 5, 10, rows),
        "calls": rng.poisson(3 + shift, rows).astype("float64"),
        "age": rng.normal(40, 12, rows),
        "plan": rng.choice(PLANS + (["enterprise"] if shift else []), rows),
        "region": rng.choice(REGIONS, rows)})


def _capture_table(path: Path, rows: int) -> None:
    """Captured requests as the capture writer writes them (cumulo.serving.capture)."""
    rng = np.random.default_rng(2)
    frame = _frame(rows, rng, 0.5)
    frame.loc[rng.random(rows) < 0.01, "spend"] = None  # some missing values
    records = frame.to_dict(orient="records")
    scores = rng.random(rows)
    data = pa.table({
        "captured_at": pa.array(np.arange(rows) * 1000 + 1_700_000_000_000_000,
                                pa.timestamp("us", tz="UTC")),
        "endpoint": pa.array(["churn"] * rows), "variant": pa.array(["churn-1"] * rows),
        "status": pa.array([200] * rows, pa.int32()),
        "latency_ms": pa.array([1.0] * rows), "model_latency_ms": pa.array([0.5] * rows),
        "content_type": pa.array(["application/json"] * rows),
        "request": pa.array([orjson.dumps({"dataframe_records": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in r.items()}]}).decode() for r in records]),
        "request_encoding": pa.array(["utf-8"] * rows),
        "response": pa.array([f'{{"predictions":[{s:.6f}]}}' for s in scores])})
    write_deltalake(str(path), data)


def _baseline_table(path: Path, rows: int) -> None:
    frame = _frame(rows, np.random.default_rng(1), 0.0)
    frame["prediction"] = np.random.default_rng(3).random(rows)
    write_deltalake(str(path), pa.Table.from_pandas(frame, preserve_index=False))


def _monitor() -> Monitor:
    return Monitor(name="bench", endpoint="churn", baseline="bench.baseline@v0",
                   features=FEATURES, prediction_column="prediction",
                   thresholds={"psi": 0.2, "ks": 0.1, "missing": 0.05, "unseen": 0.01},
                   reference=None)


def cumulo_run(captured: Path, baseline: Path) -> list[dict[str, Any]]:
    """What a run does with the data, as runs._compute does it (less the catalog)."""
    columns = ["status", "content_type", "request", "request_encoding", "response"]
    end = pa.scalar(2_000_000_000_000_000, pa.timestamp("us", tz="UTC"))  # the window's end
    table = DeltaTable(str(captured)).to_pyarrow_dataset().to_table(
        columns=columns, filter=ds.field("captured_at") <= end)
    base = DeltaTable(str(baseline)).to_pyarrow_dataset().to_table(
        columns=[*NUMERIC, *CATEGORICAL, "prediction"])
    current = decode(table, FEATURES)
    monitor = _monitor()
    figures, _ = compare(monitor, base, current)
    breaches(figures, monitor.thresholds)
    return figures


def pandas_run(captured: Path, baseline: Path) -> dict[str, float]:
    """The same figures, the plain way."""
    from scipy.stats import ks_2samp

    table = DeltaTable(str(captured)).to_pandas(columns=["status", "request", "response"])
    table = table[table["status"] == 200]
    rows: list[dict[str, Any]] = []
    predictions: list[Any] = []
    for request, response in zip(table["request"], table["response"], strict=True):
        rows.extend(json.loads(request)["dataframe_records"])
        predictions.extend(json.loads(response)["predictions"])
    current = pd.DataFrame(rows)
    current["prediction"] = predictions
    base = DeltaTable(str(baseline)).to_pandas()
    out: dict[str, float] = {}
    for name in [*NUMERIC, "prediction"]:
        b, c = base[name].dropna(), current[name].astype(float)
        edges = np.unique(b.quantile(np.linspace(0.1, 0.9, 9)).to_numpy())
        bins = [-np.inf, *edges, np.inf]
        e = pd.cut(b, bins).value_counts(normalize=True, sort=False).to_numpy()
        a = pd.cut(c.dropna(), bins).value_counts(normalize=True, sort=False).to_numpy()
        out[f"{name}.psi"] = stats.psi(e, a)
        out[f"{name}.ks"] = float(ks_2samp(b, c.dropna()).statistic)
        out[f"{name}.missing"] = float(c.isna().mean())
        out[f"{name}.oor"] = float(((c < b.min()) | (c > b.max())).mean())
    for name in CATEGORICAL:
        e_counts = base[name].value_counts(normalize=True)
        a_counts = current[name].value_counts(normalize=True)
        unseen = float(a_counts[~a_counts.index.isin(e_counts.index)].sum())
        out[f"{name}.psi"] = stats.psi([*e_counts.to_numpy(), 0.0],
                                       [*a_counts.reindex(e_counts.index, fill_value=0), unseen])
        out[f"{name}.unseen"] = unseen
    return out


def _make_tables(captured: Path, baseline: Path, rows: int) -> None:
    _capture_table(captured, rows)
    _baseline_table(baseline, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="Cumulo's runs (the median "
                        "is its figure)")
    parser.add_argument("--skip-pandas", action="store_true", help="time Cumulo's way only")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="monitors-", dir=DATA))
    try:
        captured, baseline = work / "captured", work / "baseline"
        print(f"writing {args.rows:,} captured requests and a baseline of as many rows ...")
        # In a child process: this one's peak memory is then the runs' own.
        maker = multiprocessing.get_context("fork").Process(
            target=_make_tables, args=(captured, baseline, args.rows))
        maker.start()
        maker.join()
        if maker.exitcode:
            sys.exit("writing the tables failed")
        times, cpu = [], []
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            started, cpu_started = time.perf_counter(), time.process_time()
            figures = cumulo_run(captured, baseline)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        seconds = statistics.median(times)
        mine = {f["feature"]: f for f in figures}
        print(f"cumulo: {seconds:.2f} s for {mine['tenure']['rows']:,} rows (median of "
              f"{', '.join(f'{t:.2f}' for t in times)})")
        for f in figures:
            ks = "-" if f["ks"] is None else f"{f['ks']:.4f}"
            print(f"  {f['feature']:<13} psi {f['psi']:.4f}  ks {ks:<6}  "
                  f"missing {f['missing_rate']:.4f}  past: {','.join(f['breached']) or '-'}")
        # The process's peak so far: the runs' (the tables were made in a child).
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result: dict[str, Any] = {"bench": "monitors", "rows": args.rows,
                                  "seconds": round(seconds, 2), "goal": f"< {GOAL_S:g} s",
                                  "met": seconds < GOAL_S, "runs": [round(t, 2) for t in times],
                                  # CPU seconds (all threads): what the run costs whatever else
                                  # runs; the load average says how shared the cores were.
                                  "cpu_seconds": round(statistics.median(cpu), 2),
                                  "load_average": round(load, 1), "peak_mb": round(peak_mb)}
        if not args.skip_pandas:
            started = time.perf_counter()
            plain = pandas_run(captured, baseline)
            pandas_s = time.perf_counter() - started
            # The two ways agree (pandas' KS is scipy's).
            for name in NUMERIC:
                assert math.isclose(plain[f"{name}.psi"], mine[name]["psi"], rel_tol=1e-6,
                                    abs_tol=1e-9), name
                assert math.isclose(plain[f"{name}.ks"], mine[name]["ks"], rel_tol=1e-9), name
            for name in CATEGORICAL:
                assert math.isclose(plain[f"{name}.psi"], mine[name]["psi"], rel_tol=1e-6), name
            print(f"pandas, the plain way: {pandas_s:.2f} s")
            result.update({"pandas_seconds": round(pandas_s, 2),
                           "speedup": round(pandas_s / seconds, 1)})
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
