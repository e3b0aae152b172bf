"""analysis.metrics: exact percentiles, bands, accuracy, diagnoses, lateness, Locust-only estimates."""

import math
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import metrics, readers
from analysis.readers import Categorical, StatsRow


def categorical(values):
    labels, codes = np.unique(np.asarray(values, dtype=object), return_inverse=True)
    return Categorical(codes.astype(np.int32), labels.astype(object))


@pytest.fixture
def turns_run(tmp_path):
    prefix = str(tmp_path / "run")
    write_turns(prefix, make_records(400))
    return readers.read_run(prefix)


def test_percentiles_are_exact_not_rounded_to_locust_buckets():
    values = np.array([101.0, 102.0, 103.0, 104.0, 1234.5, np.nan])
    p = metrics.percentiles(values)
    assert p["p50"] == 103.0 and p["max"] == 1234.5 and p["min"] == 101.0
    assert p["p99"] == pytest.approx(np.percentile(values[:-1], 99))


def test_percentiles_of_counts_are_whole_numbers():
    p = metrics.percentiles(np.array([0, 0, 0, 1, 2, 2, 9]), counts=True)
    assert all(float(v).is_integer() for v in (p["p50"], p["p90"], p["p95"], p["p99"]))


def test_percentiles_of_nothing_are_none():
    assert metrics.percentiles(np.array([np.nan]))["p95"] is None


def test_band_table_counts_and_shares_with_edges_owned_as_bands_says():
    table = metrics.band_table("roundtrip", np.array([99.9, 100, 500, 500.1, 1000, 1000.1]))
    assert [(row["band"], row["count"]) for row in table] == [
        ("excellent", 1),
        ("good", 2),
        ("slow", 2),
        ("bad", 1),
    ]
    assert sum(row["share"] for row in table) == pytest.approx(1.0)


def test_overall_band_is_the_p95s_and_the_median_for_chunks():
    assert metrics.overall_band("roundtrip", {"p50": 50, "p95": 600}) == "slow"
    assert metrics.overall_band("chunks", {"p50": 120, "p95": 600}) == "normal"


def test_intent_accuracy_confusion_and_per_utterance():
    utterance = categorical(["hello", "hello", "hello", "echo", "echo", "time"])
    expected = categorical(["GREETING", "GREETING", "GREETING", "ECHO", "ECHO", "TIME_NOW"])
    got = categorical(["GREETING", "UNKNOWN", "", "ECHO", "ECHO", "TIME_NOW"])
    result = metrics.intent_accuracy(utterance, expected, got)
    assert result["turns"] == 6 and result["correct"] == 4 and result["accuracy"] == pytest.approx(4 / 6)
    confusion = result["confusion"]
    row = confusion["counts"][confusion["expected"].index("GREETING")]
    assert dict(zip(confusion["recognised"], row)) == {
        "(none)": 1,
        "ECHO": 0,
        "GREETING": 1,
        "TIME_NOW": 0,
        "UNKNOWN": 1,
    }
    worst = result["per_utterance"][0]
    assert (
        worst["utterance"] == "hello"
        and worst["accuracy"] == pytest.approx(1 / 3)
        and worst["expected"] == "GREETING"
    )
    greeting = next(r for r in result["per_intent"] if r["intent"] == "GREETING")
    assert greeting["accuracy"] == pytest.approx(1 / 3) and greeting["precision"] == 1.0


def test_turns_without_expected_intent_do_not_count():
    result = metrics.intent_accuracy(
        categorical(["a", "b"]), categorical(["", "ECHO"]), categorical(["X", "ECHO"])
    )
    assert result["turns"] == 1 and result["accuracy"] == 1.0


def test_diagnoses_carry_the_guides_causes_and_fixes():
    failure = categorical(["", "no_intent", "no_intent", "connection_refused", "weird_thing"])
    entries = metrics.diagnosis_counts(failure, np.array([1, 0, 0, 0, 0]))
    assert [(e["code"], e["count"]) for e in entries] == [
        ("no_intent", 2),
        ("connection_refused", 1),
        ("weird_thing", 1),
    ]
    refused = entries[1]
    assert (
        refused["headline"] == "WebSocket connection failed"
        and "voice-gateway not running" in refused["causes"]
    )
    assert entries[2]["known"] is False


def test_diagnosis_code_is_found_in_a_locust_error_message():
    assert metrics.diagnose_error_text("Exception('wrong_intent: expected GREETING')") == "wrong_intent"
    assert (
        metrics.diagnose_error_text("ConnectionFailed('x', diagnosis='connection_refused')")
        == "connection_refused"
    )
    assert metrics.diagnose_error_text("something else") is None


@pytest.mark.parametrize(("late_ms", "status"), [(1.0, "kept up"), (20.0, "strained"), (80.0, "bottleneck")])
def test_send_lateness_says_whether_the_load_generator_kept_up(late_ms, status):
    n = 200
    result = metrics.send_lateness(
        np.full(n, late_ms), np.full(n, late_ms * 2), categorical(["w1", "w2"] * (n // 2))
    )
    assert result["status"] == status and len(result["per_worker"]) == 2
    assert result["max_ms"] == late_ms * 2


def test_reconnections_are_counted_per_user_by_their_largest_value(turns_run):
    entry = metrics.summarize(turns_run)["metrics"]["reconnections"]
    assert entry["per"] == "users" and entry["count"] == 10
    assert entry["percentiles"]["max"] == 2 and entry["band"] in ("stable", "minor problems")


def test_chunks_leave_out_turns_that_never_streamed(turns_run):
    entry = metrics.summarize(turns_run)["metrics"]["chunks"]
    sent = turns_run.turns.numbers["chunks_sent"]
    assert entry["count"] == int((sent > 0).sum()) < len(sent)


def test_bucketed_percentiles_per_time_bucket():
    times = np.repeat([0.0, 10.0], 101)
    values = np.concatenate([np.arange(101.0), np.arange(101.0) + 1000])
    series = metrics.bucketed_percentiles(times, values, buckets=2, quantiles=(0.5, 0.99))
    assert list(series["count"]) == [101, 101]
    assert list(series["q0.5"]) == [50.0, 1050.0] and list(series["q0.99"]) == [99.0, 1099.0]


def test_mixture_of_one_locust_row_gives_locusts_own_values():
    row = StatsRow(
        "roundtrip",
        "x",
        100,
        0,
        130,
        140,
        20,
        560,
        1,
        0,
        {50.0: 130, 90.0: 240, 95.0: 310, 99.0: 370, 100.0: 560},
    )
    assert metrics.mixture_quantiles([row], [0.5, 0.95, 1.0]) == [130, 310, 560]


def test_mixture_band_shares_sum_to_one():
    rows = [StatsRow("ping", n, 50, 0, 40, 40, 1, 300, 1, 0, {50.0: 40, 90.0: 120, 100.0: 300}) for n in "ab"]
    shares = [b["share"] for b in metrics.mixture_band_counts("latency", rows)]
    assert sum(shares) == pytest.approx(1.0) and all(s >= 0 for s in shares)


def test_locust_only_summary_says_percentiles_are_rounded(tmp_path_factory):
    run = readers.read_run(shared_locust_run(tmp_path_factory))
    summary = metrics.summarize(run)
    assert summary["run"]["mode"] == "locust-only" and "rounded" in summary["run"]["percentile_source"]
    roundtrip = summary["metrics"]["roundtrip"]
    assert (
        roundtrip["source"] == "locust"
        and roundtrip["exact"] is False
        and roundtrip["percentiles"]["p95"] > 0
    )
    assert (
        summary["metrics"]["chunks"]["source"] is None
        and "turns file" in summary["metrics"]["chunks"]["note"]
    )
    assert 0.7 < summary["intent"]["accuracy"] < 1.0
    assert summary["diagnoses"][0]["code"] == "wrong_intent"


def test_verdict_levels():
    def summary(p95, failed=0, accuracy=1.0, lateness="kept up"):
        metric = lambda band, basis="p95": {
            "band": band,
            "band_basis": basis,
            "unit": "ms",
            "percentiles": {"p95": p95, "p50": 1},
        }
        from voiceharness import bands

        return {
            "metrics": {
                "roundtrip": metric(bands.band_of("roundtrip", p95)),
                "latency": metric("excellent"),
                "reconnections": {**metric("stable"), "unit": ""},
                "chunks": metric("normal", "p50"),
            },
            "run": {"failed": failed, "failure_rate": failed / 100},
            "diagnoses": [{"code": "no_intent"}] if failed else [],
            "intent": {"accuracy": accuracy},
            "send_lateness": {"status": lateness},
            "locust": {"exceptions": []},
        }

    assert metrics.verdict(summary(200))["level"] == "ok"
    assert metrics.verdict(summary(700))["level"] == "warning"
    assert metrics.verdict(summary(1500))["level"] == "problem"
    assert metrics.verdict(summary(200, failed=10))["level"] == "problem"
    assert "no_intent" in metrics.verdict(summary(200, failed=10))["text"]
    assert metrics.verdict(summary(200, accuracy=0.95))["level"] == "warning"
    assert "bottleneck" in metrics.verdict(summary(200, lateness="bottleneck"))["text"]


def test_summary_numbers_are_plain_python(turns_run):
    summary = metrics.summarize(turns_run)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or isinstance(value, (str, int, float, bool)), type(value)
            assert not (isinstance(value, float) and math.isnan(value))

    walk(summary)


def test_turns_cut_short_by_the_end_of_the_run_are_counted_apart(tmp_path):
    records = make_records(20)
    for record in records[:4]:
        record.success, record.failure = False, "run_stopped"
        record.roundtrip_ms = math.nan
    prefix = tmp_path / "run"
    write_turns(prefix, records)
    summary = metrics.summarize(readers.read_run(str(prefix)))
    assert summary["run"]["turns"] == 16
    assert summary["run"]["cut_short"] == 4
    assert all(d["code"] != "run_stopped" for d in summary["diagnoses"])


def test_frame_level_lateness_from_the_run_status_decides_whether_the_generator_kept_up(tmp_path):
    records = make_records(200, lateness_ms=1.5)
    for record in records[:6]:  # one short hiccup: a few turns with a very late frame
        record.send_lateness_p99_ms = record.send_lateness_max_ms = 70.0
    prefix = tmp_path / "run"
    write_turns(prefix, records)
    per_turn_only = metrics.summarize(readers.read_run(str(prefix)))["send_lateness"]
    assert per_turn_only["status"] == "bottleneck"
    (tmp_path / "run_run.json").write_text(
        '{"turns_started": 200, "send_lateness": {"host:1": {"frames": 5000, "p50_ms": 0.7, "p99_ms": 3.9, "max_ms": 70.0}}}'
    )
    with_frames = metrics.summarize(readers.read_run(str(prefix)))["send_lateness"]
    assert with_frames["status"] == "kept up"
    assert with_frames["frame_level"]["host:1"]["p99_ms"] == 3.9
    (tmp_path / "run_run.json").write_text(
        '{"turns_started": 200, "send_lateness": {"host:1": {"frames": 5000, "p50_ms": 9.0, "p99_ms": 60.0, "max_ms": 90.0}}}'
    )
    assert metrics.summarize(readers.read_run(str(prefix)))["send_lateness"]["status"] == "bottleneck"


def test_a_foreign_run_status_file_is_refused_naming_it(tmp_path):
    prefix = tmp_path / "run"
    write_turns(prefix, make_records(20))
    (tmp_path / "run_run.json").write_text('{"something": 1}')
    with pytest.raises(readers.AnalysisError, match="run_run.json: not a run status"):
        readers.read_run(str(prefix))


def test_audio_queued_at_end_of_speech_marks_the_uplink_backlogged_and_warns(tmp_path):
    records = make_records(100, fail_share=0, wrong_share=0)
    for record in records:
        record.uplink_backlog_ms = 0.0
    write_turns(tmp_path / "fast", records)
    fast = metrics.summarize(readers.read_run(str(tmp_path / "fast")))
    assert fast["uplink_backlog"]["status"] == "real time"
    assert not any("uplink" in text for text in fast["verdict"]["warnings"]), fast["verdict"]
    for i, record in enumerate(records):
        record.uplink_backlog_ms = 400.0 + i
    write_turns(tmp_path / "slow", records)
    slow = metrics.summarize(readers.read_run(str(tmp_path / "slow")))
    backlog = slow["uplink_backlog"]
    assert backlog["status"] == "backlogged" and backlog["backlogged_turns"] == 100
    assert backlog["p50_ms"] == pytest.approx(449.5) and backlog["max_ms"] == pytest.approx(499.0)
    assert any(text.startswith("uplink slower than real time") for text in slow["verdict"]["warnings"])


def test_a_turns_file_without_the_uplink_column_leaves_the_uplink_unknown(tmp_path):
    path = write_turns(tmp_path / "old", make_records(20))
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("uplink_backlog_ms")
    old = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != column) for line in lines)
    (tmp_path / "old_turns.csv").write_text(old + "\n", encoding="utf-8")
    summary = metrics.summarize(readers.read_run(str(tmp_path / "old")))
    assert summary["uplink_backlog"]["status"] == "unknown"
