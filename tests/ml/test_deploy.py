"""SageMaker's deploy shape: ``Estimator.deploy()`` and ``client.models[name].version(n)
.deploy()`` return the endpoint's handle; ``client.transformer(...)`` scores tables; and
``cumulo train`` / ``endpoints batch`` show Cumulo's progress, not MLflow's console output."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cumulo.errors import Conflict, CumuloError, Invalid, NotFound
from cumulo.serving.sdk import Endpoint
from tests.services import Cumulo

TRAIN = """
import argparse

import mlflow
from sklearn.linear_model import LogisticRegression

import cumulo.job

parser = argparse.ArgumentParser()
parser.add_argument("--how", default="save")
args = parser.parse_args()
frame = cumulo.job.inputs["train"].to_pandas()
model = LogisticRegression(max_iter=500).fit(frame[["tenure", "spend"]], frame["churned"])
if args.how == "save":
    mlflow.sklearn.save_model(model, str(cumulo.job.model_dir))
"""

ROWS = pd.DataFrame({"tenure": [2, 50], "spend": [30.0, 80.0]})
# What MLflow itself prints, which the CLI's output must not hold.
MLFLOW_NOISE = ("🏃", "🧪", "View run", "View experiment", "UserWarning",
                "Inferred schema contains integer", "Successfully registered model",
                "Created version", "Downloading artifacts", "INFO mlflow")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(TRAIN))
    return folder


@pytest.fixture(scope="module")
def trained(tracked: Cumulo, customers: str) -> subprocess.CompletedProcess[str]:
    """'cumulo train --wait' as a user runs it: model 'quiet', version 1."""
    out = tracked.cli("train", "--table", customers, "--target", "churned", "--name", "quiet",
                      "--algorithm", "logistic_regression", "--features", "tenure,spend",
                      "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_estimator_deploys_the_version_fit_registered(tracked: Cumulo, customers: str,
                                                      src: Path) -> None:
    c = tracked.client()
    est = c.estimator(entry_point="train.py", code=str(src), name="Deploy_Est")
    with pytest.raises(Invalid, match=r"call fit\(\) first"):
        est.deploy()
    est.fit(inputs={"train": customers}, wait=False)
    with pytest.raises(Conflict, match="once it has succeeded"):  # still queued or running
        est.deploy()
    assert est.job.wait(300)["state"] == "succeeded"
    predictor = est.deploy(min_replicas=1)  # named after the model: deploy-est
    try:
        assert isinstance(predictor, Endpoint) and predictor.name == "deploy-est"
        info = predictor.show()
        assert info["state"] == "in_service"
        assert [v["name"] for v in info["variants"]] == ["Deploy_Est-1"]
        assert len(predictor.predict(ROWS)) == 2
        assert predictor.update(max_replicas=2)["max_replicas"] == 2
    finally:
        predictor.delete()
    assert "deploy-est" not in [e["name"] for e in c.endpoints.list()]


def test_a_fit_that_registered_nothing_has_nothing_to_deploy(tracked: Cumulo, customers: str,
                                                             src: Path) -> None:
    c = tracked.client()
    est = c.estimator(entry_point="train.py", code=str(src), name="deploy-none",
                      hyperparameters={"how": "nothing"})
    est.fit(inputs={"train": customers}, logs=False)
    with pytest.raises(Conflict, match="registered no model version"):
        est.deploy()
    assert "deploy-none" not in [e["name"] for e in c.endpoints.list()]


def test_a_version_that_cannot_load_raises_the_endpoints_own_error(tracked: Cumulo) -> None:
    import mlflow.pyfunc

    class Broken(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def load_context(self, context):  # type: ignore[no-untyped-def]
            raise RuntimeError("weights are corrupt")

        def predict(self, context, model_input):  # type: ignore[no-untyped-def]
            return model_input

    os.environ["MLFLOW_TRACKING_TOKEN"] = tracked.token
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    mlflow.set_registry_uri(f"{tracked.url}/mlflow")
    mlflow.set_experiment("deploy-tests")
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Broken(),
                                registered_model_name="deploy-broken",
                                pip_requirements=["mlflow"])
    c = tracked.client()
    with pytest.raises(NotFound, match="no version"):
        c.models["deploy-broken"].version(7).deploy("deploy-seven")
    with pytest.raises(Conflict, match="weights are corrupt") as caught:
        c.models["deploy-broken"].version(1).deploy(timeout=90)
    assert caught.value.details == {"endpoint": "deploy-broken", "state": "failed"}
    endpoint = c.endpoints["deploy-broken"]  # left to be read, then removed
    assert endpoint.show()["state"] == "failed"
    endpoint.delete()
    assert [e["name"] for e in c.endpoints.list()] == []


def test_train_and_batch_show_cumulos_progress_not_mlflows(
        tracked: Cumulo, customers: str, trained: subprocess.CompletedProcess[str]) -> None:
    for noise in MLFLOW_NOISE:
        assert noise not in trained.stdout + trained.stderr, trained.stdout + trained.stderr
    links = [line for line in trained.stdout.splitlines() if line.startswith("MLflow run: ")]
    run = tracked.client().models.version("quiet", 1)["run_id"]
    assert len(links) == 1 and links[0].startswith(f"MLflow run: {tracked.url}/mlflow/#/")
    assert links[0].endswith(f"/runs/{run}")
    assert "registered quiet version 1" in trained.stdout
    out = tracked.cli("endpoints", "batch", "--model", "quiet:1", "--table", customers,
                      "--output", "shop.quiet_scored", "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    for noise in MLFLOW_NOISE:
        assert noise not in out.stdout + out.stderr, out.stdout + out.stderr
    assert "loaded model quiet version 1" in out.stdout and "scored 400 rows" in out.stdout
    assert "wrote shop.quiet_scored" in out.stdout


def test_transformer_scores_tables_with_a_model_version(
        tracked: Cumulo, customers: str, trained: subprocess.CompletedProcess[str]) -> None:
    c = tracked.client()
    job = c.transformer(model="quiet:1").transform(customers, output="shop.transformed")
    assert job.info["state"] == "succeeded"
    scored = c.tables.read("shop.transformed", to="pandas")
    assert len(scored) == 400 and "prediction" in scored.columns
    # From the version's handle; a job that fails raises with its reason and writes nothing.
    transformer = c.models["quiet"].version(1).transformer(prediction_column="churn")
    with pytest.raises(CumuloError, match="nothing to score") as caught:
        transformer.transform("shop.empty", output="shop.nothing")
    assert caught.value.details == {"job": transformer.job.id}
    with pytest.raises(NotFound):
        c.tables.show("shop.nothing")
