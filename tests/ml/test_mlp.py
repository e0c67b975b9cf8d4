"""The built-in PyTorch MLP: a scikit-learn estimator, trained by ``cumulo train``, registered
so that MLflow loads it, checkpointed each epoch in a job and resumed when the job is retried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.base import clone

from cumulo.errors import NotFound
from cumulo.ml.mlp import MLPClassifier, MLPRegressor
from tests.services import Cumulo


def _blobs(rows: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    return x, np.where(x[:, 0] - x[:, 2] > 0, "up", "down")


# --- the estimator, outside a job ----------------------------------------------------------------


def test_classifier_and_regressor() -> None:
    x, y = _blobs()
    model = MLPClassifier(hidden_layers=[16], epochs=30, lr=0.01, random_state=0)
    assert model.fit(pd.DataFrame(x, columns=list("abcd")), y) is model
    assert list(model.classes_) == ["down", "up"] and model.n_features_in_ == 4
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    assert (model.predict(x) == y).mean() > 0.9
    proba = model.predict_proba(x[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)
    assert model.resumed_at_ == 0
    # The same seed, the same model; a missing value is read as the training mean.
    again = clone(model).fit(pd.DataFrame(x, columns=list("abcd")), y)
    assert np.array_equal(again.predict_proba(x), model.predict_proba(x))
    gaps = x[:3].copy()
    gaps[0, 1] = np.nan
    assert np.isfinite(model.predict_proba(gaps)).all()
    target = 2 * x[:, 0] - x[:, 1] + 5
    reg = MLPRegressor(hidden_layers=[32], epochs=60, lr=0.01, random_state=0).fit(x, target)
    assert reg.score(x, target) > 0.9 and reg.predict(x).shape == (len(x),)


def test_params_are_scikit_learns() -> None:
    model = MLPClassifier(hidden_layers=[8, 4], epochs=3, weight_decay=0.01)
    params = clone(model).get_params()
    assert params["hidden_layers"] == [8, 4] and params["epochs"] == 3
    assert set(params) == {"hidden_layers", "epochs", "lr", "batch_size", "weight_decay",
                           "validation_fraction", "random_state", "checkpoint"}
    assert model.set_params(lr=0.5).lr == 0.5


@pytest.mark.parametrize(("params", "message"), [
    ({"hidden_layers": [0]}, "hidden_layers must be a list of layer widths"),
    ({"hidden_layers": "64"}, "hidden_layers must be a list of layer widths"),
    ({"epochs": 0}, "epochs must be a whole number, 1 or more"),
    ({"batch_size": 2.5}, "batch_size must be a whole number"),
    ({"lr": -1}, "lr (the learning rate) must be more than 0"),
    ({"weight_decay": -0.1}, "weight_decay must be 0 or more"),
    ({"validation_fraction": 1}, "validation_fraction must be at least 0 and less than 1"),
])
def test_bad_hyperparameters(params: dict[str, object], message: str) -> None:
    x, y = _blobs(20)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MLPClassifier(**params).fit(x, y)  # type: ignore[arg-type]


def test_bad_data() -> None:
    x, y = _blobs(20)
    model = MLPClassifier(epochs=1)
    with pytest.raises(ValueError, match="at least two classes"):
        model.fit(x, ["same"] * 20)
    with pytest.raises(ValueError, match="one-hot encode text columns"):
        model.fit(pd.DataFrame({"plan": ["a", "b"] * 10}), y)
    with pytest.raises(ValueError, match="X has 20 rows but y has 3"):
        model.fit(x, y[:3])
    model.fit(x, y)
    with pytest.raises(ValueError, match="fitted on 4 features, not 2"):
        model.predict(x[:, :2])


# --- in a job ------------------------------------------------------------------------------------

# Attempt 1 dies outright once the third epoch's checkpoint is saved; the retry resumes there.
# Then the same fit without interruption (and without metrics), to compare.
RESUME = """
import os
import numpy as np
import cumulo.job as job
from cumulo.ml import checkpoint
from cumulo.ml.mlp import MLPClassifier

rng = np.random.default_rng(3)
x = rng.normal(size=(300, 4))
y = np.where(x[:, 0] - x[:, 2] > 0, "up", "down")
if job.attempt == 1:
    save = checkpoint.save_checkpoint

    def save_then_die(state, step, **options):
        path = save(state, step, **options)
        if step == 2:
            os._exit(1)
        return path

    checkpoint.save_checkpoint = save_then_die
options = dict(hidden_layers=[8], epochs=6, lr=0.01, batch_size=32, random_state=5)
model = MLPClassifier(**options).fit(x, y)
job.log_metrics = lambda *args, **kwargs: None
plain = MLPClassifier(checkpoint=False, **options).fit(x, y)
print("resumed at", model.resumed_at_, "after", plain.resumed_at_)
print("same model", np.array_equal(model.predict_proba(x), plain.predict_proba(x)))
"""


def test_a_retried_job_resumes_the_fit(tracked: Cumulo, tmp_path: Path) -> None:
    (tmp_path / "fit.py").write_text(RESUME.lstrip())
    c = tracked.client()
    job = c.jobs.run("fit.py", code=tmp_path, retries=1)
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    assert [a["state"] for a in info["attempts"]] == ["failed", "succeeded"]
    first = list(job.logs(attempt=1))
    assert first[-1].startswith("mlp: epoch 3/6 train_loss")
    log = list(job.logs())
    assert log[0] == "mlp: resuming at epoch 4 of 6, from the checkpoint of an earlier attempt"
    assert "resumed at 3 after 0" in log and "same model True" in log
    assert [p["step"] for p in job.metrics()["val_loss"]] == [1, 2, 3, 4, 5, 6]
    assert [k["path"] for k in job.checkpoints()] == ["mlp/ckpt-4.pt", "mlp/ckpt-5.pt"]


@pytest.fixture(scope="module")
def accounts(tracked: Cumulo) -> str:
    rng = np.random.default_rng(11)
    n = 400
    tenure = rng.integers(1, 60, n)
    spend = rng.normal(50, 15, n).round(2)
    c = tracked.client()
    c.tables.create_database("bank")
    c.tables.write("bank.accounts", pa.table({
        "tenure": tenure, "spend": spend, "plan": rng.choice(["basic", "pro"], n),
        "left": (tenure < 20) & (spend < 55)}))
    return "bank.accounts"


def test_train_mlp_registers_a_model_mlflow_loads(tracked: Cumulo, accounts: str,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    c = tracked.client()
    job = c.train(table=accounts, target="left", name="leavers-mlp", algorithm="mlp",
                  hyperparameters={"hidden_layers": [16, 8], "epochs": 12, "lr": 0.01})
    info = job.wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    assert [p["step"] for p in job.metrics()["val_loss"]] == list(range(1, 13))
    version = c.models.version("leavers-mlp", 1)
    assert version["lineage"]["metrics"]["accuracy"] > 0.8
    assert version["lineage"]["hyperparameters"]["hp.hidden_layers"] == "[16, 8]"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    # Rows as the table holds them: tenure an integer, plan text (the model one-hot encodes it)
    frame = pd.DataFrame({"tenure": [2, 50], "spend": [30.0, 80.0], "plan": ["basic", "pro"]})
    model = mlflow.pyfunc.load_model("models:/leavers-mlp/1")
    assert list(model.predict(frame)) == [True, False]
    # Its code went along in the pickle: it loads where Cumulo is not installed.
    local = mlflow.artifacts.download_artifacts("models:/leavers-mlp/1",
                                                dst_path=str(tmp_path / "model"))
    check = ("import sys; sys.modules['cumulo'] = None\n"
             "import mlflow.pyfunc, pandas as pd\n"
             f"model = mlflow.pyfunc.load_model({local!r})\n"
             f"print(model.predict(pd.DataFrame({frame.to_dict('list')!r})).tolist())\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True, False]"


def test_hyperparameters_the_mlp_refuses(tracked: Cumulo, accounts: str) -> None:
    c = tracked.client()
    for params, message in (({"hidden_layers": [0]}, "hidden_layers must be a list"),
                            ({"dropout": 0.5}, "unexpected keyword argument 'dropout'")):
        info = c.train(table=accounts, target="left", name="bad-mlp", algorithm="mlp",
                       hyperparameters=params).wait(300)
        assert info["state"] == "failed"
        assert "mlp refused:" in info["log_tail"] and message in info["log_tail"]
    with pytest.raises(NotFound):  # no version was registered by either
        c.models.show("bad-mlp")
