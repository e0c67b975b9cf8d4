"""Replica statistics: histograms that merge, percentiles read from them."""

from __future__ import annotations

import pytest

from cumulo.serving.metrics import summarize
from cumulo.serving.stats import Window, percentile


def test_windows_merge_into_rates_and_percentiles() -> None:
    first, second = Window(), Window()
    for _ in range(90):
        first.add({"variant": "a", "status": 200, "latency_s": 0.010, "model_s": 0.008})
    for i in range(10):
        second.add({"variant": "a", "status": 500 if i == 0 else 200, "latency_s": 0.100,
                    "model_s": 0.090})
    second.add({"variant": "a", "status": 400, "latency_s": 0.001, "model_s": 0.0})
    out = summarize([first.take(), second.take()], window=10.0)["variants"]["a"]
    assert out["requests"] == 101 and out["requests_per_s"] == 10.1
    assert (out["errors_4xx"], out["errors_5xx"]) == (1, 1)
    assert out["latency_p50_ms"] == pytest.approx(10, rel=0.1)
    assert out["latency_p99_ms"] == pytest.approx(100, rel=0.1)
    assert out["overhead_latency_p50_ms"] == pytest.approx(2, rel=0.1)
    assert first.take() == {}  # taken: the next report starts afresh
    assert percentile({}, 0.5) is None
