"""The model built-in training registers: the learner together with what its rows need first.

A table's rows are not what every learner takes: text columns must become categories (trees)
or one column per value (linear models, MLPs), integers become floats, and XGBoost wants class
labels numbered from zero. ``TabularModel`` does that with what it saw when it was fitted, so
the registered model takes rows as the table holds them (text and all) and answers with the
table's own labels. Values it never saw are treated as missing (trees) or as no column set
(one-hot). It is pickled with its code (cloudpickle by value), so it loads without Cumulo.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

__all__ = ["TabularModel", "column_kinds", "mlflow_options"]


def column_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Each column's kind: ``number`` or ``text``. Raises ValueError naming a column that is
    neither (a timestamp, say) and what to do about it."""
    kinds = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            kinds[name] = "number"
        elif isinstance(column.dtype, pd.CategoricalDtype) or (pd.api.types.is_string_dtype(
                column.dtype) and not pd.api.types.is_object_dtype(column.dtype)):
            kinds[name] = "text"
        elif pd.api.types.is_object_dtype(column):
            sample = column.dropna()
            first = sample.iloc[0] if len(sample) else ""
            if isinstance(first, str):
                kinds[name] = "text"
            elif isinstance(first, (Decimal, int, float, np.number)):
                kinds[name] = "number"
            else:
                raise ValueError(f"column {name!r} holds {type(first).__name__} values; "
                                 "built-in training takes numbers and text: leave it out "
                                 "with --features, or derive a number from it with SQL")
        else:
            raise ValueError(f"column {name!r} is {column.dtype}; built-in training takes "
                             "numbers and text: leave it out with --features, or derive a "
                             "number from it with SQL")
    return kinds


class TabularModel(BaseEstimator):  # type: ignore[misc]
    """A learner with its input preparation and label coding; scikit-learn compatible."""

    def __init__(self, estimator: Any, one_hot: bool = False,
                 encode_labels: bool = False) -> None:
        self.estimator = estimator
        self.one_hot = one_hot
        self.encode_labels = encode_labels

    def fit(self, X: pd.DataFrame, y: Any, **fit_params: Any) -> TabularModel:
        kinds = column_kinds(X)
        self.columns_ = list(X.columns)
        self.categories_ = {
            c: sorted(str(v) for v in X[c].dropna().unique())
            for c, kind in kinds.items() if kind == "text"}
        y = pd.Series(y)
        if self.encode_labels:
            self.classes_ = np.array(sorted(y.unique()))
            y = y.map({label: i for i, label in enumerate(self.classes_)})
        self.estimator_ = self.estimator  # reachable from fit callbacks while it fits
        prepared = self.transform(X)
        self.feature_names_ = [str(c) for c in prepared.columns]
        self.estimator_.fit(prepared, y, **fit_params)
        if not self.encode_labels and hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        """Rows as the learner takes them."""
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=self.columns_)
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise ValueError(f"missing input column(s) {', '.join(map(repr, missing))}; the "
                             f"model takes {', '.join(map(repr, self.columns_))}")
        out = {}
        for name in self.columns_:
            column = X[name]
            if name in self.categories_:
                known = self.categories_[name]
                values = column.astype(object).map(lambda v: None if v is None or v != v
                                                   else str(v))
                values = values.where(values.isin(known), None)  # unseen: missing
                out[name] = pd.Categorical(values, categories=known)
            else:
                try:
                    out[name] = pd.to_numeric(column, errors="raise").astype("float64")
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"column {name!r} must be numbers: {exc}") from exc
        frame = pd.DataFrame(out, index=X.index)
        if self.one_hot and self.categories_:
            frame = pd.get_dummies(frame, columns=list(self.categories_), dtype="float64")
        return frame

    def predict(self, X: Any) -> Any:
        predicted = self.estimator_.predict(self.transform(X))
        if self.encode_labels:
            return self.classes_[np.asarray(predicted).astype(int)]
        return predicted

    def _has_proba(self) -> bool:
        return hasattr(self.estimator, "predict_proba")

    @available_if(_has_proba)  # type: ignore[untyped-decorator]
    def predict_proba(self, X: Any) -> Any:
        return self.estimator_.predict_proba(self.transform(X))

    @property
    def feature_importances_(self) -> Any:
        return self.estimator_.feature_importances_

    @property
    def coef_(self) -> Any:
        return self.estimator_.coef_


def mlflow_options() -> dict[str, Any]:
    """How ``mlflow.sklearn.log_model`` keeps a TabularModel: with this module's code inside
    the pickle, so it loads wherever scikit-learn and pandas are, Cumulo or not."""
    import cloudpickle  # type: ignore[import-untyped]

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return {"serialization_format": "cloudpickle"}
