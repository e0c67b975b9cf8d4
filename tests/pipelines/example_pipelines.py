"""Pipelines defined in Python, for the tests (a module, so that step sources can be read)."""

from __future__ import annotations

from cumulo.pipelines import pipeline, step
from cumulo.pipelines.library import (
    condition,
    evaluate_model,
    import_data,
    register_model,
    split_data,
    train_model,
)


@step
def add_ratio(table, factor: float = 1.0):  # type: ignore[no-untyped-def]
    """A feature: spend per month of tenure."""
    table["ratio"] = factor * table["spend"] / (table["tenure"] + 1)
    return table


@step(outputs={"counts": "metrics"})
def count(table):  # type: ignore[no-untyped-def]
    return {"rows": len(table)}


@pipeline
def churn(threshold: float = 0.8, algorithm: str = "lightgbm") -> None:
    """Raw CSV to a registered model, if it is good enough."""
    raw = import_data(source="files", path="data/raw/churn.csv")
    parts = split_data(add_ratio(raw, factor=2.0), fraction=0.8)
    trained = train_model(parts.train, target="churned", algorithm=algorithm)
    scores = evaluate_model(trained.model, parts.test, target="churned")
    gate = condition(scores, metric="accuracy", value=threshold)
    register_model(trained.model, name="churn", after=gate.then)
    count(parts.test, id="test_rows", after=gate["else"])
