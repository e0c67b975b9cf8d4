"""Bringing models made elsewhere into the registry: MLflow model folders and pickled
scikit-learn models.

Runs on the client, through the stock MLflow client against the server's /mlflow: the model is
logged to a run of the experiment ``imports`` (tagged with where it came from) and registered
from there, so it has a run, an artifact location and a version like any other.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from cumulo.errors import Invalid

__all__ = ["import_model"]

PICKLES = (".pkl", ".pickle", ".joblib")


def _load_pickle(path: Path) -> Any:
    try:
        if path.suffix == ".joblib":
            import joblib

            model = joblib.load(path)
        else:
            with open(path, "rb") as f:
                model = pickle.load(f)
    except Exception as exc:
        raise Invalid(f"{path} could not be unpickled: {exc}") from exc
    if not (hasattr(model, "predict") and hasattr(model, "get_params")):
        raise Invalid(f"{path} holds a {type(model).__name__}, not a scikit-learn model "
                      "(nothing with predict and get_params)")
    return model


def import_model(url: str, token: str, path: str | os.PathLike[str], *,
                 name: str) -> dict[str, Any]:
    """Register the model at ``path`` as a new version of ``name``; return that version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    source = Path(path).expanduser()
    if not source.exists():
        raise Invalid(f"{source} does not exist")
    is_folder = source.is_dir()
    if is_folder and not (source / "MLmodel").is_file():
        raise Invalid(f"{source} is a folder without an MLmodel file: not an MLflow model "
                      "folder (mlflow.<flavor>.save_model makes one)")
    if not is_folder and source.suffix not in PICKLES:
        raise Invalid(f"{source} is neither an MLflow model folder nor a pickled model "
                      f"({', '.join(PICKLES)})")
    model = None if is_folder else _load_pickle(source)
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(f"{url}/mlflow")
    mlflow.set_experiment("imports")
    with mlflow.start_run(run_name=f"import {source.name}",
                          tags={"cumulo.imported_from": str(source.resolve())}) as run:
        if is_folder:
            mlflow.log_artifacts(str(source), artifact_path="model")
        else:
            # Kept as the pickle it came as: the trust placed in the file is the user's, and
            # MLflow's safer skops format refuses many models (trees among them) on load.
            mlflow.sklearn.log_model(model, name="model", serialization_format="pickle")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    MlflowClient().set_model_version_tag(name, version.version, "cumulo.imported_from",
                                         str(source.resolve()))
    return {"name": name, "version": version.version, "run_id": run.info.run_id}
