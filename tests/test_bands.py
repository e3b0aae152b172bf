"""voiceharness.bands against the usage guide's words, edge by edge.

Guide: roundtrip < 100 ms excellent; 100-500 good; 500 ms-1 s slow; > 1 s bad. Latency < 50
excellent; 50-100 good; 100-200 average; > 200 slow. Reconnections 0 stable; 1-3 minor; 4-10
network problems; > 10 critical. Chunks 50-200 normal; fewer is few, more is many.
"""

import math

import numpy as np
import pytest

from voiceharness import bands


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (0, "excellent"),
        (99.999, "excellent"),
        (100, "good"),
        (100.001, "good"),
        (499.999, "good"),
        (500, "good"),
        (500.001, "slow"),
        (999.999, "slow"),
        (1000, "slow"),
        (1000.001, "bad"),
        (60_000, "bad"),
    ],
)
def test_roundtrip_edges_100_500_1000(value, band):
    """< 100 is excellent, 100 and 500 are good, 1000 is still slow, above 1 s is bad."""
    assert bands.band_of(bands.ROUNDTRIP, value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (0, "excellent"),
        (49.999, "excellent"),
        (50, "good"),
        (100, "good"),
        (100.001, "average"),
        (200, "average"),
        (200.001, "slow"),
        (5000, "slow"),
    ],
)
def test_latency_edges_50_100_200(value, band):
    """< 50 excellent, 50 and 100 good, 200 still average, above 200 slow."""
    assert bands.band_of(bands.LATENCY, value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (0, "stable"),
        (1, "minor problems"),
        (3, "minor problems"),
        (4, "network problems"),
        (10, "network problems"),
        (11, "critical"),
        (100, "critical"),
    ],
)
def test_reconnection_edges_0_1_3_4_10_11(value, band):
    assert bands.band_of(bands.RECONNECTIONS, value) == band


@pytest.mark.parametrize(
    ("value", "band"),
    [(0, "few"), (49, "few"), (50, "normal"), (200, "normal"), (201, "many"), (1000, "many")],
)
def test_chunk_edges_49_50_200_201(value, band):
    assert bands.band_of(bands.CHUNKS, value) == band


@pytest.mark.parametrize("metric", sorted(bands.BANDS))
def test_vectorised_bands_match_scalar_bands(metric):
    edges = [edge for edge, _ in bands.EDGES[metric]]
    # every edge, just below and just above it, and a spread of values
    values = np.array(sorted({0.0, *edges, *(e - 0.001 for e in edges), *(e + 0.001 for e in edges),
                              *np.linspace(0, 2 * max(edges), 97)}))
    positions = bands.bands_of(metric, values)
    assert [bands.BANDS[metric][i] for i in positions] == [bands.band_of(metric, v) for v in values]


def test_band_counts_lists_every_band_best_first_and_ignores_nan():
    counts = bands.band_counts(bands.LATENCY, [10, 50, 150, math.nan, 300, 300])
    assert list(counts) == ["excellent", "good", "average", "slow"]
    assert counts == {"excellent": 1, "good": 1, "average": 1, "slow": 2}


def test_band_counts_of_nothing_is_all_zero():
    assert bands.band_counts(bands.CHUNKS, []) == {"few": 0, "normal": 0, "many": 0}


def test_band_rank_orders_best_first_and_names_choices_when_unknown():
    assert bands.band_rank(bands.ROUNDTRIP, "excellent") < bands.band_rank(bands.ROUNDTRIP, "bad")
    with pytest.raises(ValueError, match="excellent, good, slow, bad"):
        bands.band_rank(bands.ROUNDTRIP, "great")


def test_unknown_metric_is_refused():
    with pytest.raises((ValueError, KeyError)):
        bands.band_of("jitter", 1.0)
