"""Fixtures of the pipelines tests: a table of customers on the module's server."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.services import Cumulo


def customer_rows(n: int = 200) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(0)
    tenure = rng.integers(1, 60, n)
    spend = rng.uniform(10, 100, n).round(2)
    churned = ((spend > 60) & (tenure < 20)).astype(int)
    frame = pd.DataFrame({"id": range(n), "tenure": tenure, "spend": spend,
                          "plan": rng.choice(["basic", "pro"], n), "churned": churned})
    frame.loc[::17, "spend"] = None  # some missing values to clean
    return frame


@pytest.fixture(scope="module")
def data(local_server: Cumulo) -> str:
    c = local_server.client()
    c.tables.create_database("sales")
    c.tables.write("sales.customers", customer_rows())
    return "sales.customers"


