"""Importing models made elsewhere: an MLflow model folder and a pickled scikit-learn model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from cumulo.errors import Invalid
from tests.services import Cumulo


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
