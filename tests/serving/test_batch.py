"""Batch predictions: a whole table scored by a registered model, as a real job."""

from __future__ import annotations

import pandas as pd
import pytest

from cumulo.errors import Invalid, NotFound
from tests.services import Cumulo


@pytest.fixture(scope="module")
def orders(serving: Cumulo) -> str:
    c = serving.client()
    c.tables.create_database("sales")
    c.tables.write("sales.orders", pd.DataFrame({
        "id": [1, 2, 3, 4], "tenure": [2, 50, 3, 60], "spend": [30.0, 80.0, 25.0, 90.0]}))
    c.tables.write("sales.orders", pd.DataFrame({"id": [5], "tenure": [1], "spend": [20.0]}))
    c.tables.write("sales.partial", pd.DataFrame({"id": [1], "tenure": [2]}))
    return "sales.orders"


def test_scores_a_pinned_table_into_a_new_one(serving: Cumulo, churn: str, orders: str) -> None:
    c = serving.client()
    job = c.endpoints.batch(model="churn:1", table="sales.orders@v0", output="sales.scored")
    info = job.wait(timeout=180)
    assert info["state"] == "succeeded", "\n".join(job.logs())
    assert info["inputs"]["data"]["table"] == "sales.orders"
    assert info["inputs"]["data"]["version"] == 0
    scored = c.tables.read("sales.scored", to="pandas").sort_values("id")
    assert list(scored.columns) == ["id", "tenure", "spend", "prediction"]
    assert scored["prediction"].tolist() == [1, 0, 1, 0]  # v0: four rows, not five
    # The latest version, appended, with the alias-free name: its latest version.
    job = c.endpoints.batch(model="churn", table="sales.orders", output="sales.scored",
                            mode="append", prediction_column="prediction")
    assert job.wait(timeout=180)["state"] == "succeeded", "\n".join(job.logs())
    assert len(c.tables.read("sales.scored")) == 9
    assert any("scored 5 rows" in line for line in job.logs())


def test_a_table_without_the_models_columns_fails_and_writes_nothing(
        serving: Cumulo, churn: str, orders: str) -> None:
    c = serving.client()
    job = c.endpoints.batch(model="churn:1", table="sales.partial", output="sales.nothing")
    info = job.wait(timeout=180)
    assert info["state"] == "failed"
    assert any("lacks the model's input column(s) spend" in line for line in job.logs())
    with pytest.raises(NotFound):
        c.tables.show("sales.nothing")


def test_bad_batch_requests_are_refused_before_a_job_starts(
        serving: Cumulo, churn: str, orders: str) -> None:
    c = serving.client()
    before = len(c.jobs.list())
    with pytest.raises(NotFound, match="no version"):
        c.endpoints.batch(model="churn:9", table="sales.orders", output="sales.x")
    with pytest.raises(NotFound, match="database 'nowhere' does not exist"):
        c.endpoints.batch(model="churn:1", table="sales.orders", output="nowhere.x")
    with pytest.raises(NotFound, match=r"sales\.ghost"):
        c.endpoints.batch(model="churn:1", table="sales.ghost", output="sales.x")
    with pytest.raises(Invalid, match="not a version of one"):
        c.endpoints.batch(model="churn:1", table="sales.orders", output="sales.x@v1")
    with pytest.raises(Invalid, match="overwrite or append"):
        c.endpoints.batch(model="churn:1", table="sales.orders", output="sales.x", mode="merge")
    assert len(c.jobs.list()) == before


def test_batch_cli(serving: Cumulo, churn: str, orders: str) -> None:
    out = serving.cli("endpoints", "batch", "--model", "churn:1", "--table", "sales.orders",
                      "--output", "sales.cli_scored", "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wrote sales.cli_scored" in out.stdout and "scored 5 rows" in out.stdout
    assert len(serving.client().tables.read("sales.cli_scored")) == 5
