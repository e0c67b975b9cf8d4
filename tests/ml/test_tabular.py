"""The model built-in training registers: its own preparation of a table's rows."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from cumulo.ml.tabular import TabularModel, column_kinds, mlflow_options

ROWS = pd.DataFrame({"n": [1, 2, 3, 4, 5, 6], "plan": ["a", "b", "a", "b", "a", None],
                     "flag": [True, False, True, False, True, False]})
LABELS = pd.Series(["no", "yes", "no", "yes", "no", "yes"])


def test_text_is_one_hot_with_the_categories_it_saw() -> None:
    model = TabularModel(LogisticRegression(), one_hot=True).fit(ROWS, LABELS)
    assert model.feature_names_ == ["n", "flag", "plan_a", "plan_b"]
    new = pd.DataFrame({"n": [2], "plan": ["never-seen"], "flag": [False]})
    assert model.transform(new).iloc[0].tolist() == [2.0, 0.0, 0.0, 0.0]
    assert set(model.predict(ROWS)) <= {"no", "yes"} and list(model.classes_) == ["no", "yes"]
    assert model.predict_proba(ROWS).shape == (6, 2)


def test_labels_are_coded_and_decoded() -> None:
    class Numbered(LogisticRegression):  # like XGBoost: classes must be 0..k-1
        def fit(self, x, y):  # type: ignore[no-untyped-def, override]
            assert set(y) == {0, 1}
            return super().fit(x, y)

    model = TabularModel(Numbered(), one_hot=True, encode_labels=True).fit(ROWS, LABELS)
    assert set(model.predict(ROWS)) <= {"no", "yes"}


def test_bad_rows_are_named() -> None:
    model = TabularModel(LinearRegression(), one_hot=True).fit(ROWS, np.arange(6.0))
    with pytest.raises(ValueError, match="missing input column\\(s\\) 'flag'"):
        model.predict(ROWS[["n", "plan"]])
    with pytest.raises(ValueError, match="column 'n' must be numbers"):
        model.predict(ROWS.assign(n=["x"] * 6))
    with pytest.raises(ValueError, match="column 'when' is datetime64"):
        column_kinds(pd.DataFrame({"when": pd.to_datetime(["2026-01-01"])}))
    assert column_kinds(ROWS) == {"n": "number", "plan": "text", "flag": "number"}


def test_it_pickles_with_its_code() -> None:
    import cloudpickle  # type: ignore[import-untyped]

    assert mlflow_options() == {"serialization_format": "cloudpickle"}
    model = TabularModel(LinearRegression(), one_hot=True).fit(ROWS, np.arange(6.0))
    blob = cloudpickle.dumps(model)
    assert np.allclose(pickle.loads(blob).predict(ROWS), model.predict(ROWS))
    # By value: it loads in a process where Cumulo cannot be imported.
    check = ("import sys, pickle; sys.modules['cumulo'] = None\n"
             "model = pickle.loads(sys.stdin.buffer.read())\n"
             "print(type(model).__name__, model.feature_names_)")
    out = subprocess.run([sys.executable, "-c", check], input=blob, capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "TabularModel ['n', 'flag', 'plan_a', 'plan_b']"
