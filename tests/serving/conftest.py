"""Fixtures of the serving tests: a real server per module, with a model in its registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.services import Cumulo, start_cumulo

ROWS = pd.DataFrame({"tenure": [2, 50], "spend": [30.0, 80.0]})


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    # Replicas fork from the serving fork server, as with 'cumulo up's defaults.
    server = start_cumulo(tmp_path_factory.mktemp("serving") / ".cumulo",
                          {"CUMULO_SERVING_PRELOAD": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def churn(serving: Cumulo) -> str:
    """Model 'churn', version 1: a logistic regression with a signature, registered with
    MLflow's own client through Cumulo's /mlflow."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_TOKEN"] = serving.token
    mlflow.set_tracking_uri(f"{serving.url}/mlflow")
    mlflow.set_registry_uri(f"{serving.url}/mlflow")
    # This server's experiment: MLflow's client remembers the last one set in this process,
    # which may be another test server's.
    mlflow.set_experiment("serving-tests")
    frame = pd.DataFrame({"tenure": [1, 3, 5, 40, 50, 60], "spend": [20.0, 25, 30, 70, 80, 90]})
    labels = [1, 1, 1, 0, 0, 0]
    model = LogisticRegression().fit(frame, labels)
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name="churn",
                                 signature=infer_signature(frame, labels),
                                 serialization_format="pickle")
    return "churn"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn model with a signature, saved as MLflow saves it."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0.5, 0.1, 0.3, 0.9, 0.2,
                                                                   0.7]})
    labels = [0, 0, 0, 1, 1, 1]
    model = LogisticRegression().fit(frame, labels)
    path = tmp_path_factory.mktemp("models") / "m"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, labels),
                              serialization_format="pickle")
    return path
