"""Pipeline orchestration: a 10-step pipeline run twice on a local cluster.

The pipeline is a chain (each step takes the previous one's table), so its steps' own times
add up: import a table, clean, normalize, select columns, a SQL transform, then five Python
Script steps that each add a column. Measured:

- the first run: its wall time, from the run's start to its end, minus the steps' own time
  (each step job's run time, from its process start to its exit), divided by the steps: the
  orchestration overhead per step (submitting the job, the job starting, the outputs coming
  back, the next step being noticed). Goal (issue 7): under 200 ms.
- the second run, nothing changed, so every step comes from the cache: its time end to end,
  from the client's request to the run's end as the client sees it. Goal: under 1 s.

    python bench/pipelines.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TOKEN, start_server, stop_server, wait_preloaded

ADD = "def add{n}(table):\n    table['f{n}'] = table['x'] * {n}\n    return table\n"


def definition() -> dict:
    nodes = [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "bench.events"}},
        {"id": "clean", "component": "clean_missing_data", "params": {"strategy": "mean"}},
        {"id": "scale", "component": "normalize", "params": {"exclude": ["id"]}},
        {"id": "pick", "component": "select_columns", "params": {"columns": ["id", "x"]}},
        {"id": "sql", "component": "sql_transform",
         "params": {"query": "select id, x * 2 as x from t1"}},
    ]
    nodes += [{"id": f"add{n}", "component": "python_script", "params": {
        "code": ADD.format(n=n), "function": f"add{n}", "inputs": {"table": "table"},
        "outputs": {"table": "table"}}} for n in range(1, 6)]
    chain = [n["id"] for n in nodes]
    ports = {"sql": "t1"}
    edges = [{"from": f"{a}.table", "to": f"{b}.{ports.get(b, 'table')}"}
             for a, b in itertools.pairwise(chain)]
    return {"name": "bench-chain", "nodes": nodes, "edges": edges}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    import numpy as np
    import pandas as pd

    from cumulo import Client

    with tempfile.TemporaryDirectory(prefix="cumulo-bench-pipelines-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            c = Client(url, token=TOKEN)
            wait_preloaded(c)
            rng = np.random.default_rng(0)
            frame = pd.DataFrame({"id": np.arange(args.rows), "x": rng.normal(size=args.rows),
                                  "y": rng.normal(size=args.rows)})
            frame.loc[::10, "x"] = None
            c.tables.create_database("bench")
            c.tables.write("bench.events", frame)
            c.pipelines.create(definition())
            first = c.pipelines.run("bench-chain", wait=True, timeout=600)
            if first["state"] != "succeeded":
                failed = [s for s in first["steps"] if s["state"] == "failed"]
                sys.exit(f"the first run failed: {failed}")
            steps = first["steps"]
            own = sum(s["seconds"] or 0 for s in steps)
            overhead_ms = (first["duration_s"] - own) / len(steps) * 1000
            started = time.perf_counter()
            second = c.pipelines.run("bench-chain", wait=True, timeout=60)
            cached_s = time.perf_counter() - started
            states = {s["state"] for s in second["steps"]}
        finally:
            stop_server(proc)
    print(f"first run: {first['duration_s']:.2f}s for {len(steps)} steps whose own time "
          f"adds up to {own:.2f}s")
    for s in steps:
        print(f"  {s['node']:6} {s['component']:20} {s['seconds']:.2f}s")
    print(f"orchestration overhead: {overhead_ms:.0f} ms per step (goal < 200)")
    print(f"second run (every step {'/'.join(sorted(states))}): {cached_s:.3f}s end to end "
          "(goal < 1 s)")
    print(json.dumps({"bench": "pipelines-overhead", "ms_per_step": round(overhead_ms, 1),
                      "goal": "< 200", "met": overhead_ms < 200, "steps": len(steps),
                      "run_s": round(first["duration_s"], 3), "steps_own_s": round(own, 3)}))
    print(json.dumps({"bench": "pipelines-cached", "seconds": round(cached_s, 3),
                      "goal": "< 1", "met": cached_s < 1 and states == {"cached"}}))


if __name__ == "__main__":
    main()
