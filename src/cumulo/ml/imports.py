"""Bringing models made elsewhere into the registry: MLflow model folders, pickled
scikit-learn models, and Hugging Face transformers models (a folder, or ``hf://ORG/NAME``).

Runs on the client, through the stock MLflow client against the server's /mlflow: the model is
logged to a run of the experiment ``imports`` (tagged with where it came from) and registered
from there, so it has a run, an artifact location and a version like any other. Every model is
checked (and loaded, where that is how to check it) before the run starts, so a bad one leaves
nothing behind.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.errors import Invalid
from cumulo.ml import huggingface

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


def _no_task(task: str | None, source: Path, kind: str) -> None:
    if task is not None:
        raise Invalid(f"{source} is {kind}: a task (--task) applies only to transformers models")


def _prepare(source: Path, task: str | None) -> Callable[[], None]:
    """Check the model at ``source``; return what logs it to the active run as ``model``."""
    import mlflow

    if not source.exists():
        raise Invalid(f"{source} does not exist")
    if source.is_dir() and (source / "MLmodel").is_file():
        _no_task(task, source, "an MLflow model folder")
        return lambda: mlflow.log_artifacts(str(source), artifact_path="model")
    if source.is_dir() and huggingface.is_transformers_folder(source):
        pipe, card = huggingface.load(source, task=task)
        return lambda: huggingface.log(pipe, card)
    if source.is_dir():
        raise Invalid(f"{source} is a folder without an MLmodel file or a config.json: neither "
                      "an MLflow model folder (mlflow.<flavor>.save_model makes one) nor a "
                      "transformers one (save_pretrained makes one)")
    if source.suffix not in PICKLES:
        raise Invalid(f"{source} is neither an MLflow model folder nor a pickled model "
                      f"({', '.join(PICKLES)})")
    _no_task(task, source, "a pickled model")
    model = _load_pickle(source)
    # Kept as the pickle it came as: the trust placed in the file is the user's, and MLflow's
    # safer skops format refuses many models (trees among them) on load.
    return lambda: mlflow.sklearn.log_model(model, name="model", serialization_format="pickle")


def import_model(url: str, token: str, path: str | os.PathLike[str], *, name: str,
                 task: str | None = None) -> dict[str, Any]:
    """Register the model at ``path`` (a file, a folder or ``hf://ORG/NAME[@revision]``) as a
    new version of ``name``; return that version. ``task`` is a transformers pipeline task,
    inferred from the model when None."""
    import mlflow
    from mlflow.tracking import MlflowClient

    text = os.fspath(path)
    if text.startswith(huggingface.HF_PREFIX):
        source, origin = huggingface.download(text)
        label = origin
    else:
        source = Path(text).expanduser()
        origin, label = str(source.resolve()), source.name
    log_model = _prepare(source, task)
    # What this says is the version it returns: not MLflow's emoji links to the run.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(f"{url}/mlflow")
    mlflow.set_registry_uri(f"{url}/mlflow")
    mlflow.set_experiment("imports")
    with mlflow.start_run(run_name=f"import {label}",
                          tags={"cumulo.imported_from": origin}) as run:
        log_model()
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    MlflowClient().set_model_version_tag(name, version.version, "cumulo.imported_from", origin)
    return {"name": name, "version": version.version, "run_id": run.info.run_id}
