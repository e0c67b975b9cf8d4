"""Running pipelines on a real server: steps as real jobs, caching, branches, failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from cumulo.errors import Conflict, Invalid, NotFound
from tests.pipelines.conftest import customer_rows
from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """The embedded defaults, but for internal URLs allowed: a URL import here comes from a
    server on loopback."""
    cumulo = start_cumulo(tmp_path_factory.mktemp("cumulo") / ".cumulo",
                          {"CUMULO_ALLOW_INTERNAL_URLS": "1"})
    yield cumulo
    cumulo.stop()


def _steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node"]: s for s in run["steps"]}


DATA_PIPELINE = {
    "name": "prep",
    "parameters": {"fraction": {"type": "number", "default": 0.75}},
    "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.customers"}},
        {"id": "cols", "component": "select_columns",
         "params": {"columns": ["id"], "drop": True}},
        {"id": "clean", "component": "clean_missing_data", "params": {"strategy": "median"}},
        {"id": "scaled", "component": "normalize",
         "params": {"method": "minmax", "exclude": ["churned"]}},
        {"id": "split", "component": "split_data",
         "params": {"fraction": {"$param": "fraction"}, "seed": 1}},
        {"id": "pro", "component": "sql_transform",
         "params": {"query": "select plan, count(*) as n from t1 group by plan order by plan"}},
        {"id": "count", "component": "python_script", "params": {
            "code": "def count(rows, extra=0):\n    return {'rows': len(rows) + extra}\n",
            "function": "count", "inputs": {"rows": "table"},
            "outputs": {"metrics": "metrics"}, "args": {"extra": 1}}},
    ],
    "edges": [
        {"from": "raw.table", "to": "cols.table"},
        {"from": "cols.table", "to": "clean.table"},
        {"from": "clean.table", "to": "scaled.table"},
        {"from": "scaled.table", "to": "split.table"},
        {"from": "split.train", "to": "pro.t1"},
        {"from": "split.test", "to": "count.rows"},
    ],
}


def test_data_steps_run_as_jobs_then_come_from_the_cache(local_server: Cumulo,
                                                         data: str) -> None:
    c = local_server.client()
    c.pipelines.create(DATA_PIPELINE)
    run = c.pipelines.run("prep", wait=True, timeout=300)
    steps = _steps(run)
    assert run["state"] == "succeeded", {n: (s["state"], s["message"], s["log_tail"])
                                         for n, s in steps.items()}
    assert all(s["state"] == "succeeded" and s["job_id"] for s in steps.values())
    train = c.tables.read(steps["split"]["outputs"]["train"], to="pandas")
    test = c.tables.read(steps["split"]["outputs"]["test"], to="pandas")
    assert len(train) == 150 and len(test) == 50
    assert "id" not in train.columns and train["spend"].notna().all()
    assert train["tenure"].between(0, 1).all() and set(train["churned"]) <= {0, 1}
    assert steps["count"]["outputs"]["metrics"] == {"rows": 51.0}
    plans = c.tables.read(steps["pro"]["outputs"]["table"], to="pandas")
    assert plans["n"].sum() == 150
    # Run again: nothing changed, every step comes from the cache, no job runs.
    started = time.perf_counter()
    again = c.pipelines.run("prep", wait=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert again["state"] == "succeeded"
    assert {s["state"] for s in again["steps"]} == {"cached"}, _steps(again)
    assert all(s["job_id"] is None for s in again["steps"])
    print(f"fully cached run: {elapsed:.2f}s")
    # A new parameter value reruns the split and what depends on it, not what comes before.
    third = _steps(c.pipelines.run("prep", {"fraction": "0.5"}, wait=True, timeout=300))
    assert [third[n]["state"] for n in ("raw", "cols", "clean", "scaled")] == ["cached"] * 4
    assert [third[n]["state"] for n in ("split", "pro", "count")] == ["succeeded"] * 3
    assert third["count"]["outputs"]["metrics"] == {"rows": 101.0}
    # New rows in the source table: Import Data reads the new version, and all runs again.
    c.tables.write("sales.customers", customer_rows(10), mode="append")
    fourth = _steps(c.pipelines.run("prep", wait=True, timeout=300))
    assert fourth["raw"]["state"] == "succeeded" and fourth["raw"]["outputs"]["table"].endswith(
        "@v1")
    assert fourth["count"]["outputs"]["metrics"] == {"rows": 54.0}


def test_bad_runs_are_refused(local_server: Cumulo, data: str) -> None:
    c = local_server.client()
    c.pipelines.create({**DATA_PIPELINE, "name": "prep2"})
    with pytest.raises(Invalid, match="parameter 'fraction' is a number, not 'most'"):
        c.pipelines.run("prep2", {"fraction": "most"})
    with pytest.raises(Invalid, match="has no parameter 'nope'"):
        c.pipelines.run("prep2", {"nope": 1})
    with pytest.raises(NotFound, match="no cluster 'gpu'"):
        c.pipelines.run("prep2", cluster="gpu")
    with pytest.raises(NotFound, match="no pipeline 'missing'"):
        c.pipelines.run("missing")
    assert c.pipelines.runs(pipeline="prep2") == []  # nothing was started


def test_a_failed_step_skips_what_depends_on_it_and_retry_goes_on(local_server: Cumulo,
                                                                 data: str) -> None:
    c = local_server.client()
    broken = {"name": "fragile", "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.customers"}},
        {"id": "pick", "component": "select_columns", "params": {"columns": ["nope"]}},
        {"id": "after", "component": "clean_missing_data", "params": {}},
        {"id": "other", "component": "select_columns", "params": {"columns": ["plan"]}}],
        "edges": [{"from": "raw.table", "to": "pick.table"},
                  {"from": "pick.table", "to": "after.table"},
                  {"from": "raw.table", "to": "other.table"}]}
    c.pipelines.create(broken)
    run = c.pipelines.run("fragile", wait=True, timeout=300)
    steps = _steps(run)
    assert run["state"] == "failed" and run["message"].startswith("step pick failed")
    assert steps["pick"]["state"] == "failed"
    assert "no column(s) nope" in steps["pick"]["log_tail"]
    assert steps["after"]["state"] == "skipped"
    assert "comes from step pick, which failed" in steps["after"]["message"]
    assert steps["other"]["state"] == "succeeded"  # not downstream of the failure
    with pytest.raises(Conflict, match="succeeded; start a new one"):
        c.pipelines.retry(c.pipelines.run("prep", wait=True, timeout=120)["id"])
    # Fixed, then retried: the steps that succeeded are reused.
    broken["nodes"][1]["params"]["columns"] = ["plan", "spend"]
    c.pipelines.create(broken)
    retried = c.pipelines.retry(run["id"], wait=True, timeout=300)
    assert retried["version"] == run["version"]  # a retry runs the same version ...
    assert _steps(retried)["raw"]["state"] == "cached"
    assert retried["state"] == "failed"  # ... which still asks for column nope
    fresh = _steps(c.pipelines.run("fragile", wait=True, timeout=300))
    assert fresh["raw"]["state"] == "cached" and fresh["after"]["state"] == "succeeded"


def test_model_steps_tune_score_and_independent_steps_run_at_once(local_server: Cumulo,
                                                                  data: str) -> None:
    c = local_server.client()
    sleep = "def nap(table):\n    import time\n    time.sleep(3)\n    return {'rows': len(table)}\n"
    doc = {"name": "models", "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.customers"}},
        {"id": "clean", "component": "clean_missing_data", "params": {}},
        {"id": "split", "component": "split_data", "params": {"fraction": 0.7}},
        {"id": "tune", "component": "tune_hyperparameters", "params": {
            "target": "churned", "algorithm": "random_forest", "trials": 2,
            "space": {"n_estimators": {"low": 5, "high": 20}, "max_depth": [2, 4]}}},
        {"id": "scored", "component": "score_model", "params": {}},
        {"id": "nap1", "component": "python_script", "params": {
            "code": sleep, "function": "nap", "inputs": {"table": "table"},
            "outputs": {"metrics": "metrics"}}},
        {"id": "nap2", "component": "python_script", "params": {
            "code": sleep, "function": "nap", "inputs": {"table": "table"},
            "outputs": {"metrics": "metrics"}}}],
        "edges": [{"from": "raw.table", "to": "clean.table"},
                  {"from": "clean.table", "to": "split.table"},
                  {"from": "split.train", "to": "tune.train"},
                  {"from": "tune.model", "to": "scored.model"},
                  {"from": "split.test", "to": "scored.table"},
                  {"from": "split.test", "to": "nap1.table"},
                  {"from": "split.test", "to": "nap2.table"}]}
    c.pipelines.create(doc)
    run = c.pipelines.run("models", wait=True, timeout=600)
    steps = _steps(run)
    assert run["state"] == "succeeded", {n: (s["state"], s["message"], s["log_tail"])
                                         for n, s in steps.items()}
    assert steps["tune"]["outputs"]["model"].startswith("models:/")
    assert 0 <= steps["tune"]["outputs"]["metrics"]["accuracy"] <= 1
    scored = c.tables.read(steps["scored"]["outputs"]["table"], to="pandas")
    test = c.tables.read(steps["split"]["outputs"]["test"], to="pandas")
    assert len(scored) == len(test) > 0 and set(scored["prediction"]) <= {0, 1}
    # The two naps ran at the same time: each started before the other ended.
    a, b = steps["nap1"], steps["nap2"]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_a_cancelled_run_stops_its_jobs_and_starts_nothing_more(local_server: Cumulo,
                                                                data: str) -> None:
    c = local_server.client()
    slow = "def slow(table):\n    import time\n    time.sleep(60)\n    return table\n"
    c.pipelines.create({"name": "slow", "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.customers"}},
        {"id": "wait", "component": "python_script", "params": {
            "code": slow, "function": "slow", "inputs": {"table": "table"},
            "outputs": {"table": "table"}}},
        {"id": "after", "component": "select_columns", "params": {"columns": ["plan"]}}],
        "edges": [{"from": "raw.table", "to": "wait.table"},
                  {"from": "wait.table", "to": "after.table"}]})
    run = c.pipelines.run("slow")
    deadline = time.monotonic() + 60
    while _steps(c.pipelines.get_run(run["id"]))["wait"]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(Conflict, match="has a run going"):
        c.pipelines.delete("slow")
    c.pipelines.cancel(run["id"])
    done = c.pipelines.wait(run["id"], 60)
    steps = _steps(done)
    assert done["state"] == "cancelled"
    assert steps["wait"]["state"] == "cancelled" and steps["after"]["state"] == "cancelled"
    assert c.jobs.get(steps["wait"]["job_id"]).info["state"] == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        c.pipelines.cancel(run["id"])
    c.pipelines.delete("slow")


def test_join_url_imports_and_steps_that_opt_out_of_the_cache(local_server: Cumulo,
                                                              data: str,
                                                              tmp_path: Any) -> None:
    """The URL is served here by a real HTTP server on a free port."""
    import functools
    import http.server
    import threading

    (tmp_path / "plans.csv").write_text("plan,price\nbasic,10\npro,30\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/plans.csv"
        c = local_server.client()
        c.pipelines.create({"name": "joined", "nodes": [
            {"id": "customers", "component": "import_data",
             "params": {"source": "table", "table": "sales.customers"}},
            {"id": "plans", "component": "import_data", "params": {"source": "url", "url": url}},
            {"id": "both", "component": "join", "params": {"on": ["plan"], "how": "left"}},
            {"id": "cols", "component": "select_columns", "cache": False,
             "params": {"columns": ["id", "plan", "price"]}}],
            "edges": [{"from": "customers.table", "to": "both.left"},
                      {"from": "plans.table", "to": "both.right"},
                      {"from": "both.table", "to": "cols.table"}]})
        first = _steps(c.pipelines.run("joined", wait=True, timeout=300))
        # (Another test may have imported the same version of sales.customers: cached.)
        assert {n: s["state"] for n, s in first.items() if n != "customers"} == {
            "plans": "succeeded", "both": "succeeded", "cols": "succeeded"}, first
        joined = c.tables.read(first["cols"]["outputs"]["table"], to="pandas")
        assert list(joined.columns) == ["id", "plan", "price"]
        assert dict(zip(joined["plan"], joined["price"], strict=False)) == {"basic": 10,
                                                                            "pro": 30}
        again = _steps(c.pipelines.run("joined", wait=True, timeout=300))
        # A URL may serve something new: it is read again. The customers table is unchanged.
        assert again["customers"]["state"] == "cached"
        assert again["plans"]["state"] == "succeeded"
        assert again["cols"]["state"] == "succeeded"  # cache: false
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_what_the_review_found(local_server: Cumulo, data: str) -> None:
    """SQL naming a table itself is not served stale from the cache; a parameter's value is
    checked where it is used; a step whose job someone cancelled fails the run; a retry reuses
    what succeeded by node, even a URL import; a dropped source table fails its step only."""
    c = local_server.client()
    c.tables.write("sales.plans", pd.DataFrame({"plan": ["basic", "pro"], "price": [1, 2]}))
    c.pipelines.create({"name": "direct", "parameters": {"op": {"type": "string",
                                                                "default": ">="}},
                        "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.customers"}},
        {"id": "priced", "component": "sql_transform", "params": {
            "query": "select t1.plan, p.price from t1 join sales.plans p on t1.plan = p.plan"}},
        {"id": "count", "component": "python_script", "params": {
            "code": "def n(table):\n    return {'rows': len(table)}\n", "function": "n",
            "inputs": {"table": "table"}, "outputs": {"metrics": "metrics"}}},
        {"id": "gate", "component": "condition",
         "params": {"metric": "rows", "value": 1, "op": {"$param": "op"}}}],
        "edges": [{"from": "raw.table", "to": "priced.t1"},
                  {"from": "priced.table", "to": "count.table"},
                  {"from": "count.metrics", "to": "gate.metrics"}]})
    first = _steps(c.pipelines.run("direct", wait=True, timeout=300))

    assert first["gate"]["state"] == "succeeded", first
    c.tables.write("sales.plans", pd.DataFrame({"plan": ["basic"], "price": [5]}),
                   mode="overwrite")
    second = _steps(c.pipelines.run("direct", wait=True, timeout=300))
    assert second["raw"]["state"] == "cached"
    assert second["priced"]["state"] == "succeeded"  # sales.plans changed
    with pytest.raises(Invalid, match=r"nodes\[3\] \(gate\)\.params\.op: expected one of"):
        c.pipelines.run("direct", {"op": "gt"})
    # A job cancelled from outside the pipeline: the run fails, and can be retried.
    slow = "def slow(table):\n    import time\n    time.sleep(60)\n    return table\n"
    c.pipelines.create({"name": "outside", "nodes": [
        {"id": "raw", "component": "import_data",
         "params": {"source": "table", "table": "sales.plans"}},
        {"id": "wait", "component": "python_script", "params": {
            "code": slow, "function": "slow", "inputs": {"table": "table"},
            "outputs": {"table": "table"}}}],
        "edges": [{"from": "raw.table", "to": "wait.table"}]})
    run = c.pipelines.run("outside")
    deadline = time.monotonic() + 60
    while not (job := _steps(c.pipelines.get_run(run["id"]))["wait"]["job_id"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    c.jobs.get(job).cancel()
    done = c.pipelines.wait(run["id"], 60)
    assert done["state"] == "failed" and "was cancelled" in _steps(done)["wait"]["message"]
    retried = c.pipelines.retry(run["id"])
    deadline = time.monotonic() + 30
    while (raw := _steps(c.pipelines.get_run(retried["id"]))["raw"])["state"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert raw["state"] == "cached" and "(retried)" in raw["message"]
    c.pipelines.cancel(retried["id"])
    c.pipelines.wait(retried["id"], 60)
    # The source table dropped: Import Data fails with why; the run ends failed.
    c.tables.drop("sales.plans")
    gone = c.pipelines.run("outside", wait=True, timeout=60)
    assert gone["state"] == "failed"
    assert "sales.plans" in _steps(gone)["raw"]["message"]
    assert _steps(gone)["wait"]["state"] == "skipped"
