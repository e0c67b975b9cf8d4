"""The churn pipeline: a raw CSV in Cumulo's files to a model served by an endpoint.

    cumulo files mb data
    cumulo files cp examples/churn/customers.csv data/examples/churn/customers.csv
    cumulo pipelines create examples/churn/pipeline.py
    cumulo pipelines run churn                      # each step a job
    cumulo pipelines run churn                      # again: every step from the cache
    cumulo pipelines run churn --param threshold=0.99   # the gate holds it back

It cleans the missing values, adds a feature, splits the rows, trains a random forest,
evaluates it on the rows it did not see, and, if its accuracy reaches ``threshold``,
registers it (alias ``champion``) and deploys it to an endpoint.
"""

from cumulo.pipelines import pipeline, step
from cumulo.pipelines.library import (
    clean_missing_data,
    condition,
    deploy_to_endpoint,
    evaluate_model,
    import_data,
    register_model,
    select_columns,
    split_data,
    train_model,
)


@step
def add_features(table):
    """Spend per month of tenure: recent, expensive customers leave more often."""
    table["spend_per_month"] = table["spend"] / (table["tenure"] + 1)
    return table


@pipeline
def churn(threshold: float = 0.75, model: str = "churn-auto", endpoint: str = "churn-auto"):
    """Raw CSV to a deployed churn model, if it is accurate enough."""
    raw = import_data(source="files", path="data/examples/churn/customers.csv")
    clean = clean_missing_data(raw, strategy="median")
    features = add_features(select_columns(clean, columns=["customer"], drop=True))
    parts = split_data(features, fraction=0.8, seed=7, stratify_by="churned")
    trained = train_model(parts.train, target="churned", algorithm="random_forest")
    scores = evaluate_model(trained.model, parts.test, target="churned")
    gate = condition(scores, metric="accuracy", value=threshold)
    registered = register_model(trained.model, name=model, alias="champion", after=gate.then)
    deploy_to_endpoint(registered, endpoint=endpoint, min_replicas=0, max_replicas=1)
