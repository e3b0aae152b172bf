"""voiceharness.lateness: per-second 0.1 ms histograms give the same percentiles as the raw values."""

from __future__ import annotations

import math
import random

from voiceharness.lateness import BIN_MS, LatenessStats, histogram_percentile, window_summary


def test_percentiles_match_the_raw_values_within_one_bin():
    rng = random.Random(7)
    stats = LatenessStats()
    values = [rng.expovariate(1 / 1.5) for _ in range(20_000)]  # ms
    for i, late_ms in enumerate(values):
        stats.add(1000.0 + i / 10_000, late_ms / 1000)
    ordered = sorted(values)
    summary = stats.summary()
    assert summary["frames"] == len(values)
    for q, key in ((50, "p50_ms"), (99, "p99_ms")):
        exact = ordered[math.ceil(q / 100 * len(ordered)) - 1]
        assert exact <= summary[key] <= exact + BIN_MS + 1e-9
    assert abs(summary["max_ms"] - max(values)) < 0.001


def test_windows_select_whole_seconds_and_json_round_trips():
    stats = LatenessStats()
    stats.add(10.2, 0.010)  # warm-up: 10 ms late
    for i in range(100):
        stats.add(11.0 + i / 100, 0.0005)
    document = stats.to_json()
    warm = window_summary(document, 10, 10)
    steady = window_summary(document, 11, 11)
    assert warm["frames"] == 1 and abs(warm["max_ms"] - 10.0) < 0.01
    assert steady["frames"] == 100 and steady["p99_ms"] <= 0.6
    assert stats.summary(11, 11) == steady


def test_early_frames_count_as_on_time_and_very_late_ones_in_the_last_bin():
    stats = LatenessStats()
    stats.add(5.0, -0.002)
    stats.add(5.1, 0.5)
    assert histogram_percentile([1, 0, 0], 50) == BIN_MS
    summary = stats.summary()
    assert summary["p50_ms"] == BIN_MS and summary["max_ms"] == 500.0
    assert math.isnan(LatenessStats().summary()["p50_ms"])


def test_a_short_window_looked_up_by_second_equals_a_pass_over_the_run():
    """summary() looks the seconds of a short window up (the resource monitor asks every 2 s)."""
    rng = random.Random(3)
    stats = LatenessStats()
    for i in range(5_000):
        stats.add(100.0 + i / 50, rng.expovariate(1 / 0.002))  # 100 seconds of frames
    document = stats.to_json()
    for first, last in ((120, 121), (150, 150), (195, 260), (90, 110)):
        assert stats.summary(first, last) == window_summary(document, first, last), (first, last)
    assert stats.summary(0, 10**6) == stats.summary()


def test_a_long_run_keeps_its_recent_seconds_and_folds_the_rest_without_losing_a_frame():
    """Memory that does not grow with run time: a day of seconds holds ``retain_s`` rows; the
    whole run's figures are the same as if every second had been kept."""
    folded = LatenessStats(retain_s=10)
    kept = LatenessStats(retain_s=10_000)
    for second in range(1_000, 1_200):
        for k in range(20):
            late_s = ((second * 7 + k * 13) % 400) / 100_000  # 0 .. 4 ms, every second different
            folded.add(second + k / 20, late_s)
            kept.add(second + k / 20, late_s)
    assert len(folded.seconds) == 10 and min(folded.seconds) == 1_190
    assert folded.folded_through == 1_189
    assert folded.summary() == kept.summary()
    assert folded.summary(1_195, 1_199) == kept.summary(1_195, 1_199)
    document = folded.to_json()
    assert len(document["seconds"]) == 10
    assert document["folded"]["frames"] + sum(row["frames"] for row in document["seconds"].values()) == 200 * 20
