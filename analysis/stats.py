"""The few numeric helpers every section of the analysis shares (no knowledge of runs or files).

Percentiles are numpy's linear interpolation over the non-NaN values (NaN = not observed);
counts use the observed value at or above the rank, so a percentile of whole numbers is whole.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STAT_NAMES = ("p50", "p90", "p95", "p99", "max")


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def percentiles(values: np.ndarray, *, counts: bool = False) -> dict[str, float | None]:
    """p50/p90/p95/p99, min, max, mean of the non-NaN ``values`` (all None when there are none)."""
    data = finite(values)
    if not len(data):
        return {"p50": None, "p90": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    points = np.percentile(data, PERCENTILES, method="higher" if counts else "linear")
    result: dict[str, float | None] = {f"p{q}": float(v) for q, v in zip(PERCENTILES, points)}
    result.update(max=float(data.max()), min=float(data.min()), mean=float(data.mean()))
    return result


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def label_counts(labels: np.ndarray, codes: np.ndarray) -> list[tuple[str, int]]:
    """(label, count) of each label that occurs among ``codes``, most frequent first, then by label."""
    counts = np.bincount(codes, minlength=len(labels))
    pairs = [(str(labels[i]), int(counts[i])) for i in np.flatnonzero(counts)]
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))
