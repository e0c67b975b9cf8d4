"""The statistics of a drift report, vectorised (numpy, Arrow compute), pure: arrays in,
figures out.

- **PSI** (population stability index): ``sum((a - e) * ln(a / e))`` over bins, where ``e`` is
  the baseline's share of a bin and ``a`` the current one's, each raised to at least
  ``EPSILON`` (1e-4) so that an empty bin counts instead of dividing by zero. Numeric
  features are binned at the baseline's deciles (the 10th, 20th ... 90th percentiles, at
  most ten bins ``(-inf, d1], (d1, d2] ... (d9, inf)``; equal deciles merge); categorical
  ones by category, plus one bin for every category the baseline does not have.
- **KS**: the two-sample Kolmogorov-Smirnov statistic, the largest distance between the two
  empirical distribution functions, computed here with numpy (two sorts and a search; the
  same figure as ``scipy.stats.ks_2samp(...).statistic``, which the tests check).
- **missing rate**: the share of rows without a value (null, or NaN);
- **out-of-range rate**: the share of the rows with a value that lie outside the baseline's
  minimum and maximum;
- **unseen rate**: the share of the rows with a value whose category the baseline never had.

Rules of thumb for PSI: under 0.1 little change, 0.1-0.25 some, above 0.25 a shift.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["EPSILON", "MAX_CATEGORIES", "MAX_PROFILE_CATEGORIES", "categorical_profile",
           "compare_categorical", "compare_numeric", "is_numeric", "ks_statistic",
           "numeric_profile", "proportions", "psi", "split_missing"]

EPSILON = 1e-4
MAX_CATEGORIES = 20  # categories drawn in a histogram (PSI counts them all)
# Categories a profile keeps, the most common: a column of ids (or of predictions that are
# lists of scores) would otherwise keep one per row. Past them, a category counts as unseen.
MAX_PROFILE_CATEGORIES = 1000
_UNSEEN = "(unseen)"


def psi(expected: Any, actual: Any, *, epsilon: float = EPSILON) -> float:
    """The population stability index of two distributions over the same bins (shares)."""
    import numpy as np

    e = np.maximum(np.asarray(expected, dtype=float), epsilon)
    a = np.maximum(np.asarray(actual, dtype=float), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(baseline: np.ndarray, current: np.ndarray, *,
                 presorted: bool = False) -> float | None:
    """The two-sample Kolmogorov-Smirnov statistic; None if either sample is empty.
    ``presorted``: ``baseline`` is sorted already.

    The distance is looked at each distinct value of either sample, where it can be largest:
    there, one sample's distribution function is its rank (the last of equal values) and the
    other's a search of the value in it. A feature of few distinct values (a count, a rating)
    costs little more than the sorts."""
    import numpy as np

    if not len(baseline) or not len(current):
        return None
    a, b = baseline if presorted else np.sort(baseline), np.sort(current)
    largest = 0.0
    for mine, other in ((a, b), (b, a)):
        last = np.flatnonzero(np.append(mine[1:] != mine[:-1], True))  # each value's last
        gap = np.abs((last + 1) / len(mine)
                     - np.searchsorted(other, mine[last], side="right") / len(other))
        largest = max(largest, float(gap.max()))
    return largest


def is_numeric(kind: pa.DataType) -> bool:
    """Whether a column of this type is compared as numbers (else as categories)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_decimal(kind))


def split_missing(values: pa.Array | pa.ChunkedArray) -> tuple[Any, int]:
    """The values present (numeric: a float64 numpy array; else an Arrow array) and how many
    were missing (null or NaN)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if is_numeric(values.type):
        floats = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        present = floats[~np.isnan(floats)]  # nulls come out as NaN
        return present, len(floats) - len(present)
    kept = pc.drop_null(values.cast(pa.string()))
    return kept, len(values) - len(kept)


def proportions(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Each bin's share of ``values``: bins ``(-inf, edges[0]], (edges[0], edges[1]] ...
    (edges[-1], inf)``."""
    import numpy as np

    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="left"),
                         minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def numeric_profile(values: np.ndarray, *, presorted: bool = False) -> dict[str, Any]:
    """What a numeric sample is compared by: its deciles (the bins' edges), each bin's share,
    its minimum and maximum. ``presorted``: ``values`` is sorted already (the deciles are then
    read off it, as ``np.quantile``'s linear interpolation would give them)."""
    import numpy as np

    if not len(values):
        return {"kind": "numeric", "edges": [], "shares": [1.0], "min": None, "max": None}
    if presorted:
        at = np.linspace(0.1, 0.9, 9) * (len(values) - 1)
        low = np.floor(at).astype(int)
        high = np.minimum(low + 1, len(values) - 1)
        deciles = values[low] + (values[high] - values[low]) * (at - low)
        low_value, high_value = values[0], values[-1]
    else:
        deciles = np.quantile(values, np.linspace(0.1, 0.9, 9))
        low_value, high_value = values.min(), values.max()
    edges = [float(e) for e in np.unique(deciles)]
    return {"kind": "numeric", "edges": edges,
            "shares": [float(s) for s in proportions(values, edges)],
            "min": float(low_value), "max": float(high_value)}


def categorical_profile(values: pa.Array, *,
                        keep: int | None = MAX_PROFILE_CATEGORIES) -> dict[str, Any]:
    """Each category's share of a (non-null) sample: the ``keep`` most common ones (all with
    None)."""
    import pyarrow.compute as pc

    counts = pc.value_counts(values)
    if keep is not None and len(counts) > keep:
        top = pc.select_k_unstable(counts.field("counts"), keep, [("dummy", "descending")])
        counts = counts.take(top)
    total = max(len(values), 1)
    return {"kind": "categorical",
            "shares": {str(v): c / total for v, c in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                strict=True)}}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compare_numeric(profile: dict[str, Any], current: np.ndarray, missing: int, *,
                    baseline: np.ndarray | None = None, presorted: bool = False) -> dict[str, Any]:
    """A numeric feature's figures: PSI at the profile's bins, KS (with the baseline sample;
    ``presorted``: sorted already), the missing and out-of-range rates; and its histogram."""
    edges = profile["edges"]
    shares = proportions(current, edges) if len(current) else None
    low, high = profile["min"], profile["max"]
    outside = int(((current < low) | (current > high)).sum()) if low is not None else 0
    return {
        "rows": len(current) + missing,
        "psi": psi(profile["shares"], shares) if shares is not None else None,
        "ks": ks_statistic(baseline, current, presorted=presorted)
        if baseline is not None else None,
        "missing_rate": _rate(missing, len(current) + missing),
        "out_of_range_rate": _rate(outside, len(current)),
        "unseen_rate": None,
        "histogram": {"bins": _bin_labels(edges), "baseline": profile["shares"],
                      "current": [float(s) for s in shares] if shares is not None else None},
    }


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    bounds = ["-inf", *(f"{e:.4g}" for e in edges), "inf"]
    return [f"({a}, {b}]" for a, b in itertools.pairwise(bounds)]


def compare_categorical(profile: dict[str, Any], current: pa.Array,
                        missing: int) -> dict[str, Any]:
    """A categorical feature's figures: PSI over the baseline's categories plus one bin of
    unseen ones, the missing and unseen rates; and its histogram (the most common
    categories)."""
    expected: dict[str, float] = profile["shares"]
    seen = categorical_profile(current, keep=None)["shares"] if len(current) else {}
    unseen = sum(share for category, share in seen.items() if category not in expected)
    categories = list(expected)
    drawn = sorted(categories, key=lambda c: -expected[c])[:MAX_CATEGORIES]
    return {
        "rows": len(current) + missing,
        "psi": psi([*(expected[c] for c in categories), 0.0],
                   [*(seen.get(c, 0.0) for c in categories), unseen]) if seen else None,
        "ks": None,
        "missing_rate": _rate(missing, len(current) + missing),
        "out_of_range_rate": None,
        "unseen_rate": unseen if seen else None,
        "histogram": {"bins": [*drawn, _UNSEEN], "baseline": [*(expected[c] for c in drawn), 0.0],
                      "current": [*(seen.get(c, 0.0) for c in drawn), unseen] if seen else None},
    }
