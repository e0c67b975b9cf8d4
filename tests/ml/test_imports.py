"""Importing models made elsewhere: MLflow model folders, pickled scikit-learn models and
Hugging Face transformers models."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from cumulo.errors import Invalid, Unavailable
from tests.hf import tiny_bert
from tests.services import Cumulo, free_port


def _model():  # type: ignore[no-untyped-def]
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def test_import_folder_and_pickle(tracked: Cumulo, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path / "exported"
    mlflow.sklearn.save_model(
        LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]), str(folder))
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(_model()))
    c = tracked.client()
    first = c.models.import_model(str(folder), name="imported")
    second = c.models.import_model(str(pickled), name="imported")
    assert (first["version"], second["version"]) == ("1", "2")
    versions = c.models.versions("imported")
    assert versions[1]["tags"]["cumulo.imported_from"] == str(pickled.resolve())
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    for version in ("1", "2"):
        loaded = mlflow.pyfunc.load_model(f"models:/imported/{version}")
        assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]
    cli = tracked.cli("models", "import", str(pickled), "--name", "imported")
    assert cli.returncode == 0 and "imported v3" in cli.stdout


def test_bad_imports(tracked: Cumulo, tmp_path: Path) -> None:
    c = tracked.client()
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    for path, message in [("missing", "does not exist"), ("empty", "without an MLmodel"),
                          ("notes.txt", "neither an MLflow model folder"),
                          ("list.pkl", "not a scikit-learn model"),
                          ("junk.pkl", "could not be unpickled")]:
        with pytest.raises(Invalid, match=message):
            c.models.import_model(str(tmp_path / path), name="bad")
    assert "bad" not in [m["name"] for m in c.models.list()]


# --- Hugging Face transformers models ----------------------------------------------------------

@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT sentiment classifier, as save_pretrained writes it (no network)."""
    return tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


def _hub_cache(home: Path, repo: str, folder: Path, commit: str) -> None:
    """Put ``folder`` in a Hugging Face cache as the Hub's ``main`` of ``repo``: what a download
    leaves there (the Hub itself cannot be reached from the tests)."""
    import shutil

    cached = home / "hub" / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, cached / "snapshots" / commit)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(commit)


def test_import_a_transformers_model(tracked: Cumulo, bert: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    c = tracked.client()
    first = c.models.import_model(str(bert), name="sentiment")  # task read from config.json
    assert first["version"] == "1"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _hub_cache(tmp_path / "hf", "acme/tiny-bert", bert, commit)
    monkeypatch.setitem(tracked.env, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setitem(tracked.env, "HF_HUB_OFFLINE", "1")
    cli = tracked.cli("models", "import", "hf://acme/tiny-bert", "--name", "sentiment",
                      "--task", "text-classification")
    assert cli.returncode == 0, cli.stderr
    assert "sentiment v2" in cli.stdout
    versions = c.models.versions("sentiment")
    assert [v["tags"]["cumulo.imported_from"] for v in versions] == [
        str(bert.resolve()), f"hf://acme/tiny-bert@{commit}"]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tracked.token)
    mlflow.set_tracking_uri(f"{tracked.url}/mlflow")
    for version in ("1", "2"):
        loaded = mlflow.pyfunc.load_model(f"models:/sentiment/{version}")
        assert loaded.metadata.flavors["transformers"]["task"] == "text-classification"
        predictions = loaded.predict(["a good movie", "the movie was bad"])
        assert len(predictions) == 2
        assert set(predictions["label"]) <= {"negative", "positive"}
        assert all(0 <= score <= 1 for score in predictions["score"])


def test_bad_transformers_imports(tracked: Cumulo, bert: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil

    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=2).save_pretrained(tmp_path / "no-weights")
    untasked = tmp_path / "untasked"
    shutil.copytree(bert, untasked)
    config = json.loads((untasked / "config.json").read_text())
    del config["architectures"]
    (untasked / "config.json").write_text(json.dumps(config))
    (tmp_path / "not-hf").mkdir()
    (tmp_path / "not-hf" / "config.json").write_text('{"learning_rate": 0.1}')
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(_model()))
    c = tracked.client()
    for path, task, message in [
        ("no-weights", None, "has a config.json but no PyTorch weights"),
        ("untasked", None, "cannot tell which pipeline task .* --task"),
        ("not-hf", None, "has no model_type"),
        (str(bert), "text-classifcation", "'text-classifcation' is not a transformers pipeline"),
        (str(bert), "text2text-generation", "could not be loaded as a transformers "
                                            "text2text-generation pipeline"),
        ("model.pkl", "text-classification", "applies only to transformers models"),
        ("hf://", None, "is not of the form hf://ORG/NAME"),
        ("hf://org/name@", None, "is not of the form hf://ORG/NAME"),
    ]:
        with pytest.raises(Invalid, match=message):
            target = path if path.startswith("hf://") else str(tmp_path / path)
            c.models.import_model(target, name="bad-hf", task=task)

    # Without transformers installed (None in sys.modules makes its import fail).
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "transformers", None)
        with pytest.raises(Unavailable, match=r"pip install 'cumulo\[hf\]'"):
            c.models.import_model(str(bert), name="bad-hf")

    # The Hub cannot be reached from here: offline, or an endpoint that refuses connections.
    # (The CLI, in a process of its own: huggingface_hub reads these variables on import.)
    monkeypatch.setitem(tracked.env, "HF_HOME", str(tmp_path / "hf-cache"))
    for variable, value, message in [
        ("HF_HUB_OFFLINE", "1", "HF_HUB_OFFLINE is set and acme/tiny-bert is not in the local"),
        ("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}",
         "the Hugging Face Hub could not be reached and acme/tiny-bert is not in the local"),
    ]:
        monkeypatch.setitem(tracked.env, variable, value)
        cli = tracked.cli("models", "import", "hf://acme/tiny-bert@main", "--name", "bad-hf")
        monkeypatch.delitem(tracked.env, variable)
        assert cli.returncode == 1
        assert message in " ".join(cli.stderr.split()) and "Traceback" not in cli.stderr
    assert "bad-hf" not in [m["name"] for m in c.models.list()]
