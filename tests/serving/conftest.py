"""Fixtures of the serving tests: a real server per module, with a model in its registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.services import Cumulo, register_churn, start_cumulo

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
    return register_churn(serving, "churn", "serving-tests")


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
