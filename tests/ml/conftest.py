"""A server whose MLflow the ML tests share (MLflow takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from tests.services import Cumulo, start_cumulo


@pytest.fixture(scope="package")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    # Jobs fork from a process with the ML stack imported, as with 'cumulo up's defaults.
    server = start_cumulo(tmp_path_factory.mktemp("ml") / ".cumulo", {"CUMULO_PRELOAD": "auto"})
    yield server
    server.stop()


@pytest.fixture(scope="package")
def customers(tracked: Cumulo) -> str:
    """shop.customers: 400 customers, who churned and what they spent."""
    rng = np.random.default_rng(7)
    n = 400
    tenure = rng.integers(1, 60, n)
    spend = rng.normal(50, 15, n).round(2)
    plan = rng.choice(["basic", "pro"], n)
    churned = (tenure < 12) & (spend < 55)
    c = tracked.client()
    c.tables.create_database("shop")
    c.tables.write("shop.customers", pa.table({
        "tenure": tenure, "spend": spend, "plan": plan, "churned": churned,
        "revenue": (tenure * spend / 10 + rng.normal(0, 5, n)).round(2), "same": ["x"] * n}))
    c.tables.write("shop.empty", pa.table({"a": pa.array([], pa.int64()),
                                           "b": pa.array([], pa.int64())}))
    return "shop.customers"
