"""A run's pure parts: its window, the thresholds, the model's quality from joined labels, and
the first window's predictions as the reference."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from cumulo.serving.monitors.captured import KEY, PREDICTION
from cumulo.serving.monitors.models import Monitor
from cumulo.serving.monitors.runs import SETTLE, breaches, compare, quality, window

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _monitor(**kwargs: object) -> Monitor:
    fields: dict[str, object] = {
        "name": "m", "endpoint": "e", "baseline": "db.t@v0", "prediction_column": None,
        "features": [{"name": "x", "kind": "numeric"}], "thresholds": {"psi": 0.2},
        "reference": None, "window_s": None, "watermark": None}
    return Monitor(**{**fields, **kwargs})


def test_the_window_follows_the_last_run_and_leaves_the_last_seconds() -> None:
    settled = NOW - timedelta(seconds=SETTLE)
    assert window(_monitor(), NOW) == (None, settled)  # the first run: all captured so far
    last = NOW - timedelta(hours=1)
    assert window(_monitor(watermark=last), NOW) == (last, settled)
    # A run whose clock is behind the last one's (another control plane): an empty window,
    # never reaching back before the last one's end.
    ahead = settled + timedelta(seconds=2)
    assert window(_monitor(watermark=ahead), NOW) == (ahead, ahead)
    assert window(_monitor(window_s=3600.0, watermark=last), NOW) == (
        settled - timedelta(hours=1), settled)


def test_breaches_name_each_figure_past_its_threshold() -> None:
    figures = [{"feature": "x", "psi": 0.31, "ks": 0.05, "missing_rate": 0.0},
               {"feature": "(labels)", "accuracy": 0.7, "psi": None}]
    found = breaches(figures, {"psi": 0.2, "ks": 0.1, "accuracy": 0.8})
    assert found == ["x: psi 0.31 > 0.2", "(labels): accuracy 0.7 < 0.8"]
    assert figures[0]["breached"] == ["psi"] and figures[1]["breached"] == ["accuracy"]
    assert breaches([{"feature": "x", "psi": 0.2}], {"psi": 0.2}) == []  # at the line: not past


def test_accuracy_of_joined_labels_by_hand() -> None:
    scored = pa.table({KEY: ["a", "b", "c", "d", None], PREDICTION: ["1", "0", "1", "1", "0"]})
    labels = pa.table({KEY: [1, 2], "label": [0, 0]}).set_column(
        0, KEY, pa.array(["a", "b"]))  # c and d have no label yet
    figures = quality(scored, labels)
    assert figures["rows"] == 2 and figures["accuracy"] == pytest.approx(0.5)
    text = quality(pa.table({KEY: ["a", "b"], PREDICTION: ["yes", "no"]}),
                   pa.table({KEY: ["a", "b"], "label": ["yes", "yes"]}))
    assert text["accuracy"] == pytest.approx(0.5)


def test_mae_and_rmse_of_float_labels_by_hand() -> None:
    scored = pa.table({KEY: ["a", "b", "c"], PREDICTION: ["1.5", "2.0", "4.0"]})
    labels = pa.table({KEY: ["a", "b", "c"], "label": [1.0, 2.0, 2.0]})
    figures = quality(scored, labels)
    assert figures["mae"] == pytest.approx((0.5 + 0 + 2) / 3)
    assert figures["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 4) / 3))
    assert figures["accuracy"] is None


def test_the_first_window_s_predictions_are_the_reference() -> None:
    monitor = _monitor()
    baseline = pa.table({"x": [1.0, 2.0, 3.0, 4.0]})
    current = pa.table({"x": [1.0, 2.0], PREDICTION: ["a", "b"]})
    figures, reference = compare(monitor, baseline, current)
    assert reference == {"kind": "categorical", "shares": {"a": 0.5, "b": 0.5}}
    prediction = {f["feature"]: f for f in figures}["(prediction)"]
    assert prediction["psi"] == pytest.approx(0.0)
    monitor.reference = reference
    later = pa.table({"x": [1.0, 2.0], PREDICTION: ["a", "a"]})
    figures, again = compare(monitor, baseline, later)
    assert again is None  # kept from the first window
    by_hand = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert {f["feature"]: f for f in figures}["(prediction)"]["psi"] == pytest.approx(by_hand)
