"""The drift statistics on small samples whose figures are worked out by hand here."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import ks_2samp

from cumulo.serving.monitors import stats

BASELINE = np.arange(1.0, 11.0)  # 1..10: its deciles 1.9, 2.8 ... 9.1 put one value per bin
SHIFTED = np.array([1.0] * 5 + [10.0] * 5)  # half in the first bin, half in the last


def test_psi_of_a_shifted_sample_by_hand() -> None:
    profile = stats.numeric_profile(BASELINE)
    assert profile["edges"] == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert profile["shares"] == pytest.approx([0.1] * 10)
    figures = stats.compare_numeric(profile, SHIFTED, 0, baseline=BASELINE)
    # Two bins go from 0.1 to 0.5; eight from 0.1 to 0 (counted as the epsilon, 1e-4).
    by_hand = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert figures["psi"] == pytest.approx(by_hand)  # 6.808...
    assert figures["psi"] == pytest.approx(6.8082, abs=1e-4)
    # KS: at 1 the baseline's ECDF is 0.1, the sample's 0.5; at 9 they are 0.9 and 0.5.
    assert figures["ks"] == pytest.approx(0.4)
    assert figures["missing_rate"] == 0 and figures["out_of_range_rate"] == 0
    assert figures["histogram"]["current"] == pytest.approx([0.5] + [0.0] * 8 + [0.5])


def test_the_same_sample_does_not_drift() -> None:
    figures = stats.compare_numeric(stats.numeric_profile(BASELINE), BASELINE.copy(), 0,
                                    baseline=BASELINE)
    assert figures["psi"] == pytest.approx(0.0) and figures["ks"] == 0.0


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 5000), rng.normal(0.3, 1.2, 3000)
    assert stats.ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    # Few distinct values, many ties (a count): the same figure too.
    x, y = rng.poisson(3, 4000).astype(float), rng.poisson(3.4, 2500).astype(float)
    assert stats.ks_statistic(x, y) == pytest.approx(ks_2samp(x, y).statistic)
    assert stats.ks_statistic(np.sort(x), y, presorted=True) == stats.ks_statistic(x, y)
    assert stats.ks_statistic(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 1.0
    assert stats.ks_statistic(np.array([]), a) is None


def test_missing_and_out_of_range_rates() -> None:
    present, missing = stats.split_missing(pa.array([None, float("nan"), 0.0, 11.0, 5.0]))
    assert missing == 2 and sorted(present) == [0.0, 5.0, 11.0]
    figures = stats.compare_numeric(stats.numeric_profile(BASELINE), present, missing)
    assert figures["missing_rate"] == pytest.approx(2 / 5)  # of every row
    assert figures["out_of_range_rate"] == pytest.approx(2 / 3)  # of the rows with a value
    assert figures["ks"] is None  # no baseline sample given: PSI from the profile only


def test_categorical_psi_and_unseen_rate_by_hand() -> None:
    baseline = pa.array(["a"] * 6 + ["b"] * 4)
    current, missing = stats.split_missing(pa.array(["a"] * 2 + ["b"] * 4 + ["c"] * 3 + ["d"]
                                                    + [None] * 2))
    figures = stats.compare_categorical(stats.categorical_profile(baseline), current, missing)
    # a: 0.6 -> 0.2; b: 0.4 -> 0.4; unseen (c, d): 0 (the epsilon) -> 0.4
    by_hand = (0.2 - 0.6) * math.log(0.2 / 0.6) + (0.4 - 1e-4) * math.log(0.4 / 1e-4)
    assert figures["psi"] == pytest.approx(by_hand)
    assert figures["unseen_rate"] == pytest.approx(0.4)
    assert figures["missing_rate"] == pytest.approx(2 / 12)
    assert figures["histogram"]["bins"] == ["a", "b", "(unseen)"]


def test_psi_of_equal_deciles_merges_bins() -> None:
    # A baseline of one value: every decile is that value, one edge, two bins.
    profile = stats.numeric_profile(np.array([3.0] * 10))
    assert profile["edges"] == [3.0] and profile["shares"] == [1.0, 0.0]
    figures = stats.compare_numeric(profile, np.array([3.0, 4.0]), 0)
    by_hand = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert figures["psi"] == pytest.approx(by_hand)
    assert figures["out_of_range_rate"] == pytest.approx(0.5)


def test_deciles_read_off_a_sorted_sample_are_numpys() -> None:
    values = np.random.default_rng(3).normal(size=1001)
    values[:50] = 0.25  # ties
    fast = stats.numeric_profile(np.sort(values), presorted=True)
    plain = stats.numeric_profile(values)
    assert fast["edges"] == pytest.approx(plain["edges"], rel=1e-12)
    assert fast["shares"] == plain["shares"]
    assert (fast["min"], fast["max"]) == (plain["min"], plain["max"])


def test_a_profile_keeps_the_most_common_categories() -> None:
    # One common plan, nine frequent ids, then 1,491 ids seen once: a profile keeps 10.
    values = pa.array(["basic"] * 100 + [f"id{i}" for i in range(9) for _ in range(50 - i)]
                      + [f"id{i}" for i in range(9, 1500)])
    profile = stats.categorical_profile(values, keep=10)
    assert set(profile["shares"]) == {"basic", *(f"id{i}" for i in range(9))}
    assert profile["shares"]["basic"] == pytest.approx(100 / len(values))
    # Past the kept ones, a category counts as unseen.
    figures = stats.compare_categorical(profile, pa.array(["basic", "id1400"]), 0)
    assert figures["unseen_rate"] == pytest.approx(0.5)
