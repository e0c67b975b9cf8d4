"""MLflow inside: the tracking server behind Cumulo's tokens, used by jobs and by the stock
MLflow client."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.services import Cumulo

TRAIN = """
import mlflow
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment("churn")
with mlflow.start_run(run_name="first") as run:
    mlflow.log_param("C", 1.0)
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        mlflow.log_metric("loss", loss, step=step)
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    mlflow.sklearn.log_model(model, name="model")
    print("run", run.info.run_id)
"""


def test_a_job_logs_to_mlflow_and_the_stock_client_reads_it(
        tracked: Cumulo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    code = tmp_path / "src"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    import pyarrow as pa

    c = tracked.client()
    c.tables.create_database("ml")
    c.tables.write("ml.points", pa.table({"x": [0.0, 1.0]}))
    job = c.jobs.run("train.py", code=code, inputs={"points": "ml.points"})
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    run_id = next(line for line in job.logs() if line.startswith("run ")).split()[1]

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == {"C": "1.0"} and run.data.metrics["loss"] == 0.3
    # Lineage, tagged by Cumulo's run context provider: the job, its code, its data.
    assert run.data.tags["cumulo.job_id"] == job.id
    assert run.data.tags["cumulo.code"] == info["code"]
    assert run.data.tags["cumulo.input.points"] == "ml.points@v0"
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.9, 0.5, 0.3]
    assert client.get_experiment(run.info.experiment_id).name == "churn"
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")  # artifacts through the proxy
    assert list(model.predict([[0.0], [3.0]])) == [0, 1]
    # MLflow's artifacts are kept under the storage root.
    assert any((tracked.home / "storage" / "mlflow").rglob("MLmodel"))


def test_mlflow_needs_a_token(tracked: Cumulo) -> None:
    url = f"{tracked.url}/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(url).status_code == 401
    bad = httpx.get(url, headers={"authorization": "Bearer cml_wrong-token-000000000000000"})
    assert bad.status_code == 401
    good = httpx.get(url, headers={"authorization": f"Bearer {tracked.token}"}, timeout=120)
    assert good.status_code == 200 and "experiments" in good.json()
