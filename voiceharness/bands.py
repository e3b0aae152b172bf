"""The usage guide's quality bands, as pure functions.

The guide gives ranges that meet at their edges ("100-500 ms good", "500 ms-1 s slow").
This module decides, once, who owns a shared edge:

* An edge the guide writes with ``<`` belongs to the band above it: roundtrip 100 ms is
  *good*, not excellent ("< 100 ms excellent"); latency 50 ms is *good*.
* An edge the guide writes with ``>`` belongs to the band below it: roundtrip 1000 ms is
  *slow*, not bad ("> 1 s bad"); latency 200 ms is *average*.
* An edge two closed ranges share (roundtrip 500 ms, latency 100 ms) belongs to the better
  band: a measurement exactly at the limit meets that limit.

So every band but the first is ``(lower, upper]`` and the first is ``[0, edge)``, with
the ``<``-edge moved into the second band:

========== ============ ================ ================ ============
metric      band 1       band 2           band 3           band 4
========== ============ ================ ================ ============
roundtrip   excellent    good             slow             bad
            [0, 100)     [100, 500]       (500, 1000]      (1000, inf)
latency     excellent    good             average          slow
            [0, 50)      [50, 100]        (100, 200]       (200, inf)
reconnect   stable 0     minor 1-3        network 4-10     critical > 10
chunks      few < 50     normal 50-200    many > 200
========== ============ ================ ================ ============

Bands are ordered best first; ``BANDS[metric]`` lists them in that order, so a gate such as
``band.roundtrip<=good`` compares positions.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from voiceharness import guide

ROUNDTRIP = "roundtrip"
LATENCY = "latency"
RECONNECTIONS = "reconnections"
CHUNKS = "chunks"

BANDS: dict[str, tuple[str, ...]] = {
    ROUNDTRIP: ("excellent", "good", "slow", "bad"),
    LATENCY: ("excellent", "good", "average", "slow"),
    RECONNECTIONS: ("stable", "minor problems", "network problems", "critical"),
    # Chunks are not better or worse, only shorter or longer than a short command.
    CHUNKS: ("few", "normal", "many"),
}

# What each band means, in the guide's words.
MEANINGS: dict[str, dict[str, str]] = {
    ROUNDTRIP: {
        "excellent": "fast answer",
        "good": "acceptable",
        "slow": "possible problems",
        "bad": "needs diagnosis",
    },
    LATENCY: {"excellent": "", "good": "", "average": "", "slow": ""},
    RECONNECTIONS: {
        "stable": "connection stable",
        "minor problems": "minor problems",
        "network problems": "network problems",
        "critical": "critical problems",
    },
    CHUNKS: {
        "few": "short command or fast network",
        "normal": "normal for a short command",
        "many": "long command or slow network",
    },
}


def _edge(value: float, *, lower_band_owns_it: bool) -> tuple[float, bool]:
    return float(value), lower_band_owns_it


# The edges between consecutive bands, best band first, and who owns each: the rules above,
# written once as data. A value is past an edge when it is above it, or at it and the edge
# belongs to the band above. Reconnections are integers: 0 | 1..3 | 4..10 | > 10.
EDGES: dict[str, tuple[tuple[float, bool], ...]] = {
    ROUNDTRIP: (
        _edge(guide.ROUNDTRIP_EDGES_MS[0], lower_band_owns_it=False),  # "< 100 ms excellent"
        _edge(guide.ROUNDTRIP_EDGES_MS[1], lower_band_owns_it=True),  # shared closed edge: the better band
        _edge(guide.ROUNDTRIP_EDGES_MS[2], lower_band_owns_it=True),  # "> 1 s bad"
    ),
    LATENCY: (
        _edge(guide.LATENCY_EDGES_MS[0], lower_band_owns_it=False),
        _edge(guide.LATENCY_EDGES_MS[1], lower_band_owns_it=True),
        _edge(guide.LATENCY_EDGES_MS[2], lower_band_owns_it=True),
    ),
    RECONNECTIONS: tuple(_edge(edge, lower_band_owns_it=True) for edge in guide.RECONNECTION_EDGES),
    CHUNKS: (
        _edge(guide.CHUNKS_NORMAL_RANGE[0], lower_band_owns_it=False),  # "few < 50"
        _edge(guide.CHUNKS_NORMAL_RANGE[1], lower_band_owns_it=True),  # "normal 50-200"
    ),
}


def _edges(metric: str) -> tuple[tuple[float, bool], ...]:
    try:
        return EDGES[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(BANDS)}") from None


def _index(metric: str, values: np.ndarray) -> np.ndarray:
    """Band positions (0 = best) for ``values``, vectorised."""
    values = np.asarray(values, dtype=float)
    position = np.zeros(values.shape, dtype=int)
    for edge, lower_owns in _edges(metric):
        position += values > edge if lower_owns else values >= edge
    return position


def band_of(metric: str, value: float) -> str:
    """The band name of one value, e.g. ``band_of("roundtrip", 500) == "good"``.

    Plain Python (no numpy): the live web UI tally calls it for every turn.
    """
    position = 0
    for edge, lower_owns in _edges(metric):
        position += value > edge if lower_owns else value >= edge
    return BANDS[metric][position]


def bands_of(metric: str, values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Band positions (0 = best) of many values; NaNs must be removed by the caller."""
    return _index(metric, np.asarray(values, dtype=float))


def band_counts(metric: str, values: Iterable[float] | np.ndarray) -> dict[str, int]:
    """How many values fall in each band, every band present (zero when empty), best first."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    counts = np.bincount(_index(metric, array).astype(int), minlength=len(BANDS[metric]))
    return {name: int(count) for name, count in zip(BANDS[metric], counts)}


def band_rank(metric: str, band: str) -> int:
    """Position of ``band`` in its metric's order (0 = best); raises ValueError naming the choices."""
    try:
        return BANDS[metric].index(band)
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown band {band!r} for {metric!r}; choose one of {', '.join(BANDS.get(metric, ()))}"
        ) from None
