"""Built-in training: a table and a target in, a registered model with metrics and plots out."""

from __future__ import annotations

import pytest

from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo


@pytest.mark.parametrize("algorithm", ["lightgbm", "xgboost", "random_forest",
                                       "logistic_regression"])
def test_classification(tracked: Cumulo, customers: str, algorithm: str) -> None:
    c = tracked.client()
    name = f"churn-{algorithm.replace('_', '-')}"
    job = c.train(table=f"{customers}@v0", target="churned", name=name, algorithm=algorithm,
                  features=["tenure", "spend", "plan"])
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    version = c.models.version(name, 1)
    metrics = version["lineage"]["metrics"]
    assert metrics["accuracy"] > 0.7 and {"f1", "roc_auc"} <= set(metrics)
    assert version["lineage"]["inputs"] == {"train": "shop.customers@v0"}
    assert version["lineage"]["hyperparameters"]["task"] == "classification"
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = tracked.token
    artifacts = {a.path for a in MlflowClient().list_artifacts(version["run_id"])}
    assert {"confusion_matrix.png", "feature_importances.png"} <= artifacts
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert model.metadata.get_input_schema() is not None  # registered with its signature


def test_regression_and_a_second_version(tracked: Cumulo, customers: str) -> None:
    c = tracked.client()
    for _ in range(2):  # training into an existing name adds a version
        info = c.train(table=customers, target="revenue", name="revenue", algorithm="linear",
                       features=["tenure", "spend"]).wait(300)
        assert info["state"] == "succeeded", info["log_tail"]
    versions = c.models.versions("revenue")
    assert [v["version"] for v in versions] == ["1", "2"]
    metrics = c.models.version("revenue", 2)["lineage"]["metrics"]
    assert {"rmse", "mae", "r2"} <= set(metrics) and metrics["r2"] > 0.5
    # The model scores rows of its own table as they are: tenure is an integer column there
    # (fitted as floats, the signature keeps it an integer: a regression test).
    import os

    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = tracked.token
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    rows = c.tables.read(customers, to="pandas", limit=20)[["tenure", "spend"]]
    assert str(rows["tenure"].dtype) == "int64"
    assert len(mlflow.pyfunc.load_model("models:/revenue/2").predict(rows)) == 20


def test_bad_training_input(tracked: Cumulo, customers: str) -> None:
    c = tracked.client()
    with pytest.raises(Invalid, match="target column 'nope' is not in"):
        c.train(table=customers, target="nope", name="bad")
    with pytest.raises(NotFound, match="no version 9"):
        c.train(table=f"{customers}@v9", target="churned", name="bad")
    with pytest.raises(Invalid, match="model name"):
        c.train(table=customers, target="churned", name="bad/name")
    with pytest.raises(Invalid, match="algorithm 'magic'"):
        c.train(table=customers, target="churned", name="bad", algorithm="magic")
    single = c.train(table=customers, target="same", name="bad").wait(300)
    assert single["state"] == "failed" and "single class" in single["log_tail"]
    empty = c.train(table="shop.empty", target="b", name="bad").wait(300)
    assert empty["state"] == "failed" and "table is empty" in empty["log_tail"]
    refused = c.train(table=customers, target="churned", name="bad", algorithm="random_forest",
                      hyperparameters={"n_estimators": -3}).wait(300)
    assert refused["state"] == "failed" and "n_estimators" in refused["log_tail"]
    with pytest.raises(NotFound):  # no version was registered by any failed run
        c.models.show("bad")


def test_train_cli(tracked: Cumulo, customers: str) -> None:
    out = tracked.cli("train", "--table", customers, "--target", "churned", "--algorithm",
                      "random_forest", "--features", "tenure,spend", "--hyperparameters",
                      '{"n_estimators": 20}', "--name", "churn-cli", "--wait")
    assert out.returncode == 0, out.stderr
    assert "registered churn-cli version 1" in out.stdout and "accuracy" in out.stdout
    assert "training job job-" in out.stdout and " succeeded after " in out.stdout
    bad = tracked.cli("train", "--table", customers, "--target", "churned", "--name", "x",
                      "--hyperparameters", "{oops")
    assert bad.returncode == 1 and "not JSON" in bad.stderr
