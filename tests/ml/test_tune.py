"""Hyperparameter tuning: trials as jobs, in parallel, early stopping, the best registered."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo

SPACE = {"learning_rate": {"low": 0.02, "high": 0.3, "log": True},
         "num_leaves": {"low": 4, "high": 31}, "n_estimators": [20, 40]}


def test_tune_built_in_lightgbm(tracked: Cumulo, customers: str) -> None:
    from mlflow.tracking._model_registry import utils as registry_utils

    registry_before = registry_utils._registry_uri
    environ_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI",
                                                      "MLFLOW_REGISTRY_URI")}
    c = tracked.client()
    events: list[str] = []
    result = c.tune(name="tuned", table=customers, target="churned",
                    features=["tenure", "spend", "plan"], objective="roc_auc",
                    search_space=SPACE, strategy="random", max_trials=4, max_parallel=2,
                    seed=1, on_event=lambda kind, info: events.append(kind))
    assert [t["state"] for t in result["trials"]] == ["complete"] * 4, result["trials"]
    # Registering the best left this process's MLflow settings as they were (a regression:
    # it used to pin the registry to MLflow's default, a local SQLite file).
    assert registry_utils._registry_uri == registry_before
    assert {k: os.environ.get(k) for k in environ_before} == environ_before
    assert events.count("started") == events.count("ended") == 4
    values = [t["value"] for t in result["trials"]]
    assert result["best"]["value"] == max(values) and result["direction"] == "maximize"
    assert result["model"] == {"name": "tuned", "version": "1",
                               "run_id": result["best"]["run_id"]}
    version = c.models.version("tuned", 1)
    assert version["tags"]["cumulo.tuning_run"] == result["run_id"]
    params = version["lineage"]["hyperparameters"]
    assert float(params["hp.learning_rate"]) == pytest.approx(
        result["best"]["params"]["learning_rate"])
    # Two trials ran at once: some trial started before another one ended.
    jobs = [c.jobs.get(t["job"]).info for t in result["trials"]]
    spans = sorted((j["running_at"], j["finished_at"]) for j in jobs)
    assert any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1)), spans
    # The trial runs are nested under the tuning run, which holds the history plot.
    runs = c.transport.json("POST", "/mlflow/api/2.0/mlflow/runs/search", json={
        "experiment_ids": [_experiment(c, "tuned")],
        "filter": f"tags.`mlflow.parentRunId` = '{result['run_id']}'"})["runs"]
    assert len(runs) == 4
    plot = c.transport.request("GET", "/mlflow/get-artifact", params={
        "run_id": result["run_id"], "path": "optimization_history.png"})
    assert plot.content.startswith(b"\x89PNG")


def _experiment(c, name: str) -> str:  # type: ignore[no-untyped-def]
    return c.transport.json("GET", "/mlflow/api/2.0/mlflow/experiments/get-by-name",
                            params={"experiment_name": name})["experiment"]["experiment_id"]


CURVE = """
import argparse
import time

import cumulo.job

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float)
args = parser.parse_args()
for step in range(1, 9):
    cumulo.job.log_metric("score", args.quality * step, step=step)
    time.sleep(0.4)
print("done")
"""


def test_tune_a_script_with_early_stopping(tracked: Cumulo, tmp_path: Path) -> None:
    (tmp_path / "curve.py").write_text(textwrap.dedent(CURVE))
    c = tracked.client()
    est = c.estimator(entry_point="curve.py", code=str(tmp_path), name="curve")
    result = c.tune(estimator=est, objective="score", direction="maximize",
                    search_space={"quality": [4.0, 3.0, 0.1, 0.2, 0.3]}, strategy="grid",
                    max_trials=50, max_parallel=1, early_stopping=True, seed=3)
    states = {t["params"]["quality"]: t["state"] for t in result["trials"]}
    assert len(states) == 5  # a grid of 5: no more trials than that
    assert result["best"]["params"]["quality"] == 4.0 and result["best"]["value"] == 32.0
    pruned = [t for t in result["trials"] if t["state"] == "pruned"]
    assert pruned and all(t["params"]["quality"] < 1 for t in pruned), result["trials"]
    assert all(c.jobs.get(t["job"]).state == "cancelled" for t in pruned)
    assert all("stopped early" in t["reason"] for t in pruned)
    assert result["model"] is None  # the script saved no model: nothing to register


def test_bad_tuning_input(tracked: Cumulo, customers: str) -> None:
    c = tracked.client()
    before = len(c.jobs.list(limit=1000))
    cases = [
        ({"learning_rate": {"low": 0.3, "high": 0.01}}, "tpe", "inverted"),
        ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "tpe", "above zero"),
        ({"learning_rate": {"low": "a", "high": 1}}, "tpe", "needs numbers"),
        ({"learning_rate": []}, "tpe", "empty"),
        ({"learning_rate": {"low": 0.1, "high": 0.3}}, "grid", "grid search needs values"),
        ({"learning_rate": {"low": 0.1, "high": 0.3}}, "bayes", "strategy 'bayes'"),
        ({}, "tpe", "must be a JSON object"),
    ]
    for space, strategy, message in cases:
        with pytest.raises(Invalid, match=message):
            c.tune(name="bad", table=customers, target="churned", objective="roc_auc",
                   search_space=space, strategy=strategy)
    with pytest.raises(Invalid, match="maximize or minimize"):
        c.tune(name="bad", table=customers, target="churned", objective="wow",
               search_space=SPACE)
    with pytest.raises(Invalid, match="target column 'nope'"):
        c.tune(name="bad", table=customers, target="nope", objective="roc_auc",
               search_space=SPACE)
    assert len(c.jobs.list(limit=1000)) == before  # nothing was submitted
    cli = tracked.cli("tune", "--name", "bad", "--table", customers, "--target", "churned",
                      "--objective", "roc_auc", "--space", '{"x": {"low": 5, "high": 1}}')
    assert cli.returncode != 0 and "inverted" in cli.stderr + cli.stdout


def test_lightgbm_reports_progress_for_early_stopping(tracked: Cumulo, customers: str) -> None:
    c = tracked.client()
    command = ["python", "-m", "cumulo.ml.train", "--target", "churned", "--algorithm",
               "lightgbm", "--hyperparameters", '{"n_estimators": 40}', "--name", "progress",
               "--no-register", "--objective", "roc_auc", "--report-every", "10"]
    job = c.jobs.run(command=command, inputs={"train": customers})
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    series = job.metrics()["roc_auc"]
    steps = [p["step"] for p in series]
    assert steps == [0, 10, 20, 30]  # the final value (step 0), then rounds 10, 20, 30
    assert all(0.5 < p["value"] <= 1 for p in series)
    with pytest.raises(NotFound):  # --no-register: the model was logged, not registered
        c.models.show("progress")
