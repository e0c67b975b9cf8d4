"""Built-in training: a table and a target in, a registered model with metrics and plots out."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
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
    schema = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert schema == {"tenure": "long", "spend": "double", "plan": "string"}
    # It scores the table's rows as they are, text included, even a plan it never saw, and
    # answers with the table's own labels.
    rows = c.tables.read(customers, to="pandas", limit=20)[["tenure", "spend", "plan"]]
    rows.loc[0, "plan"] = "enterprise"
    predicted = model.predict(rows)
    assert len(predicted) == 20 and {bool(v) for v in predicted} <= {True, False}
    assert str(predicted.dtype) == "bool", predicted.dtype


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


def test_text_target_keeps_its_labels(tracked: Cumulo, customers: str) -> None:
    # XGBoost numbers the classes 0..k-1; the registered model answers with the table's labels.
    c = tracked.client()
    info = c.train(table=customers, target="plan", name="plan-xgb", algorithm="xgboost",
                   features=["tenure", "spend"]).wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    import os

    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = tracked.token
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    rows = c.tables.read(customers, to="pandas", limit=30)[["tenure", "spend"]]
    predicted = mlflow.pyfunc.load_model("models:/plan-xgb/1").predict(rows)
    assert set(predicted) <= {"basic", "pro"} and len(predicted) == 30


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
    c.tables.write("shop.stamped", pa.table({
        "at": pa.array([datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 11)]),
        "y": [0, 1] * 5}))
    stamped = c.train(table="shop.stamped", target="y", name="bad").wait(300)
    assert stamped["state"] == "failed" and "column 'at' is datetime64" in stamped["log_tail"]
    assert "leave it out with --features" in stamped["log_tail"]
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
