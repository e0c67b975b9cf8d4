"""Script mode (client.estimator(...).fit) and reproducing a version's training."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cumulo.errors import CumuloError, Invalid, NotFound
from tests.services import Cumulo

TRAIN = """
import argparse

import mlflow
from sklearn.linear_model import LogisticRegression

import cumulo.job

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0)
parser.add_argument("--how", default="save")
args = parser.parse_args()
assert cumulo.job.hyperparameters.get("C", 1.0) == args.C
frame = cumulo.job.inputs["train"].to_pandas()
x, y = frame[["tenure", "spend"]], frame["churned"]
model = LogisticRegression(C=args.C, max_iter=500).fit(x, y)
with mlflow.start_run():  # the run Cumulo made for this job, resumed
    mlflow.log_metric("accuracy", model.score(x, y))
if args.how == "save":
    mlflow.sklearn.save_model(model, str(cumulo.job.model_dir))
elif args.how == "log":  # in a second run, started after the first ended
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="clf")
elif args.how == "pickle":
    import pickle

    (cumulo.job.model_dir / "model.pkl").write_bytes(pickle.dumps(model))
elif args.how == "fail":
    print("the data looks wrong; giving up")
    raise SystemExit(3)
"""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(TRAIN))
    return folder


@pytest.mark.parametrize("how", ["save", "log", "pickle"])
def test_fit_registers_what_the_script_made(tracked: Cumulo, customers: str, src: Path,
                                            how: str) -> None:
    c = tracked.client()
    name = f"script-{how}"
    est = c.estimator(entry_point="train.py", code=str(src), name=name,
                      hyperparameters={"C": 0.5, "how": how})
    est.fit(inputs={"train": f"{customers}@v0"}, logs=False)
    registered = est.model_version
    assert registered is not None and registered["version"] == "1", registered
    version = c.models.version(name, 1)
    lineage = version["lineage"]
    assert lineage["job"] == est.job.id
    assert lineage["hyperparameters"] == {"C": "0.5", "how": how}
    assert lineage["inputs"] == {"train": "shop.customers@v0"}
    if how != "log":  # "log" logged its model in a run of its own, without the metric
        assert lineage["metrics"]["accuracy"] > 0.6
    assert lineage["code"] == est.job.info["code"]


def test_failing_script_registers_nothing(tracked: Cumulo, customers: str, src: Path) -> None:
    c = tracked.client()
    est = c.estimator(entry_point="train.py", code=str(src), name="script-fail",
                      hyperparameters={"how": "fail"})
    with pytest.raises(CumuloError, match="exited with code 3") as caught:
        est.fit(inputs={"train": customers}, logs=False)
    assert "the data looks wrong" in str(caught.value)
    with pytest.raises(NotFound):
        c.models.show("script-fail")
    with pytest.raises(Invalid, match=r"entry point 'nope\.py' is not in"):
        c.estimator(entry_point="nope.py", code=str(src))
    with pytest.raises(Invalid, match="model name"):
        c.estimator(entry_point="train.py", code=str(src), name="bad name")
    with pytest.raises(Invalid, match="hyperparameter name"):
        c.estimator(entry_point="train.py", code=str(src), hyperparameters={"a b": 1})


def test_reproduce_built_in_training(tracked: Cumulo, customers: str) -> None:
    c = tracked.client()
    info = c.train(table=customers, target="churned", name="repro", seed=3,
                   features=["tenure", "spend", "plan"]).wait(300)
    assert info["state"] == "succeeded", info["log_tail"]
    result = c.models.reproduce("repro", 1)
    assert result["matches"], result
    assert {r["metric"] for r in result["metrics"]} >= {"accuracy", "f1", "roc_auc"}
    assert result["job"] != result["original_job"]
    rerun = c.jobs.get(result["job"]).info
    assert rerun["inputs"]["train"]["version"] == 0 and "--no-register" in rerun["command"]
    assert [v["version"] for v in c.models.versions("repro")] == ["1"]  # nothing registered
    cli = tracked.cli("models", "reproduce", "repro", "1")
    assert cli.returncode == 0 and "repro v1 reproduced" in cli.stdout, cli.stdout + cli.stderr


def test_reproduce_reports_a_mismatch(tracked: Cumulo, customers: str, tmp_path: Path) -> None:
    folder = tmp_path / "noisy"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent("""
        import pickle, random
        import mlflow
        from sklearn.dummy import DummyClassifier
        import cumulo.job
        mlflow.log_metric("score", random.random())  # not seeded: differs on every run
        model = DummyClassifier().fit([[0], [1]], [0, 1])
        (cumulo.job.model_dir / "model.pkl").write_bytes(pickle.dumps(model))
    """))
    c = tracked.client()
    c.estimator(entry_point="train.py", code=str(folder), name="noisy").fit(logs=False)
    result = c.models.reproduce("noisy", 1)
    assert not result["matches"] and result["metrics"][0]["metric"] == "score"
    cli = tracked.cli("models", "reproduce", "noisy", "1")
    assert cli.returncode == 1 and "did NOT reproduce" in cli.stdout


def test_reproduce_bad_input(tracked: Cumulo, tmp_path: Path) -> None:
    import pickle

    from sklearn.dummy import DummyClassifier

    c = tracked.client()
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(DummyClassifier().fit([[0], [1]], [0, 1])))
    c.models.import_model(str(path), name="outside")
    with pytest.raises(Invalid, match="not trained by a Cumulo job"):
        c.models.reproduce("outside", 1)
    with pytest.raises(NotFound, match="no version"):
        c.models.reproduce("outside", 7)
