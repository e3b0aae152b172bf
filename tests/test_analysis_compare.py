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
    row = next(r for r in result.rows if r.metric == "roundtrip" and r.stat == "p95")
    assert row.baseline == 400.0 and row.candidate == 600.0
    assert row.delta == 200.0 and row.delta_pct == pytest.approx(50.0)
    assert (row.baseline_band, row.candidate_band) == ("good", "slow")
    assert row.direction == "worse" and row.moved
    assert "roundtrip.p95" in result.worse and "intent.accuracy" in result.worse
    band = next(b for b in result.bands if b.metric == "roundtrip")
    assert band.to_json() == {"metric": "roundtrip", "baseline": "good", "candidate": "slow", "change": "worse"}


def test_small_change_within_a_band_has_not_moved():
    row = compare.compare_values("latency", "p95", 40.0, 41.0)
    assert row.direction == "worse" and not row.moved


def test_small_change_across_a_band_edge_has_moved():
    row = compare.compare_values("roundtrip", "p50", 99.0, 100.0)
    assert row.moved and row.candidate_band == "good"


def test_chunks_get_longer_or_shorter_not_worse():
    assert compare.compare_values("chunks", "p50", 100.0, 150.0).direction == "longer"


def test_missing_value_is_not_compared():
    row = compare.compare_values("chunks", "p50", None, 150.0)
    assert row.delta is None and not row.moved


def test_the_audible_time_is_compared_and_fast_turns_left_out_are_said(tmp_path):
    def summary(name, lead_ms, fast_share):
        prefix = str(tmp_path / name)
        write_turns(prefix, make_records(300, roundtrip_ms=300.0, audible_lead_ms=lead_ms, fast_share=fast_share,
                                         fail_share=0.0))
        return metrics.summarize(readers.read_run(prefix))

    result = compare.compare(summary("base", 50.0, 0.0), summary("cand", 250.0, 0.2))
    row = next(r for r in result.rows if r.metric == "audible" and r.stat == "p95")
    assert (row.baseline, row.candidate) == (350.0, 550.0)
    assert row.direction == "worse" and row.moved and row.baseline_band is None
    assert result.fast_left_out.baseline == 0 and result.fast_left_out.candidate > 0
    roundtrip = next(r for r in result.rows if r.metric == "roundtrip" and r.stat == "p50")
    assert roundtrip.candidate == 300.0  # the fast turns' shorter roundtrips are not pooled in
