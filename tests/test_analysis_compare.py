"""analysis.compare: which metric moved between a baseline and a candidate, by how much, into which band."""

import pytest
from analysis_fixtures import make_records, write_turns

from analysis import compare, metrics, readers


def summary_for(tmp_path, name, roundtrip_ms, wrong_share=0.0):
    prefix = str(tmp_path / name)
    write_turns(prefix, make_records(300, roundtrip_ms=roundtrip_ms, wrong_share=wrong_share, fail_share=0.0))
    return metrics.summarize(readers.read_run(prefix))


def test_a_slower_candidate_is_worse_and_changes_band(tmp_path):
    result = compare.compare(
        summary_for(tmp_path, "base", 400.0), summary_for(tmp_path, "cand", 600.0, wrong_share=0.1)
    )
    row = next(r for r in result["rows"] if r["metric"] == "roundtrip" and r["stat"] == "p95")
    assert row["baseline"] == 400.0 and row["candidate"] == 600.0
    assert row["delta"] == 200.0 and row["delta_pct"] == pytest.approx(50.0)
    assert (row["baseline_band"], row["candidate_band"]) == ("good", "slow")
    assert row["direction"] == "worse" and row["moved"]
    assert "roundtrip.p95" in result["worse"] and "intent.accuracy" in result["worse"]
    band = next(b for b in result["bands"] if b["metric"] == "roundtrip")
    assert band == {"metric": "roundtrip", "baseline": "good", "candidate": "slow", "change": "worse"}


def test_small_change_within_a_band_has_not_moved():
    row = compare.compare_values("latency", "p95", 40.0, 41.0)
    assert row["direction"] == "worse" and not row["moved"]


def test_small_change_across_a_band_edge_has_moved():
    row = compare.compare_values("roundtrip", "p50", 99.0, 100.0)
    assert row["moved"] and row["candidate_band"] == "good"


def test_chunks_get_longer_or_shorter_not_worse():
    assert compare.compare_values("chunks", "p50", 100.0, 150.0)["direction"] == "longer"


def test_missing_value_is_not_compared():
    row = compare.compare_values("chunks", "p50", None, 150.0)
    assert row["delta"] is None and not row["moved"]
