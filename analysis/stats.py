"""The few numeric helpers every section of the analysis shares (no knowledge of runs or files).

Percentiles are numpy's linear interpolation over the non-NaN values (NaN = not observed);
counts use the observed value at or above the rank, so a percentile of whole numbers is whole.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STAT_NAMES = ("p50", "p90", "p95", "p99", "max")


@dataclass(frozen=True)
class Percentiles:
    """p50/p90/p95/p99, max, min and mean of some values; None where nothing was observed."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    min: float | None = None
    mean: float | None = None

    def stat(self, name: str) -> float | None:
        """The statistic called ``name`` (``p95``, ``max``...)."""
        return getattr(self, name)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def percentiles(values: np.ndarray, *, counts: bool = False) -> Percentiles:
    """p50/p90/p95/p99, max, min, mean of the non-NaN ``values`` (all None when there are none)."""
    data = finite(values)
    if not len(data):
        return Percentiles()
    p50, p90, p95, p99 = (float(v) for v in np.percentile(data, PERCENTILES, method="higher" if counts else "linear"))
    return Percentiles(p50, p90, p95, p99, max=float(data.max()), min=float(data.min()), mean=float(data.mean()))


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def label_counts(labels: np.ndarray, codes: np.ndarray) -> list[tuple[str, int]]:
    """(label, count) of each label that occurs among ``codes``, most frequent first, then by label."""
    counts = np.bincount(codes, minlength=len(labels))
    pairs = [(str(labels[i]), int(counts[i])) for i in np.flatnonzero(counts)]
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))
