"""analysis.metrics: exact percentiles, bands, accuracy, diagnoses, lateness, Locust-only estimates."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import metrics, readers
from analysis.readers import Categorical, StatsRow
from analysis.stats import Percentiles
from analysis.summary import Diagnosis, MetricSummary, PaceCounts


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
    assert p.p50 == 103.0 and p.max == 1234.5 and p.min == 101.0
    assert p.p99 == pytest.approx(np.percentile(values[:-1], 99))


def test_percentiles_of_counts_are_whole_numbers():
    p = metrics.percentiles(np.array([0, 0, 0, 1, 2, 2, 9]), counts=True)
    assert all(float(v).is_integer() for v in (p.p50, p.p90, p.p95, p.p99))


def test_percentiles_of_nothing_are_none():
    assert metrics.percentiles(np.array([np.nan])).p95 is None


def test_band_table_counts_and_shares_with_edges_owned_as_bands_says():
    table = metrics.band_table("roundtrip", np.array([99.9, 100, 500, 500.1, 1000, 1000.1]))
    assert [(row.band, row.count) for row in table] == [
        ("excellent", 1),
        ("good", 2),
        ("slow", 2),
        ("bad", 1),
    ]
    assert sum(row.share for row in table) == pytest.approx(1.0)


def test_overall_band_is_the_p95s_and_the_median_for_chunks():
    assert metrics.overall_band("roundtrip", Percentiles(p50=50, p95=600)) == "slow"
    assert metrics.overall_band("chunks", Percentiles(p50=120, p95=600)) == "normal"


def test_intent_accuracy_confusion_and_per_utterance():
    utterance = categorical(["hello", "hello", "hello", "echo", "echo", "time"])
    expected = categorical(["GREETING", "GREETING", "GREETING", "ECHO", "ECHO", "TIME_NOW"])
    got = categorical(["GREETING", "UNKNOWN", "", "ECHO", "ECHO", "TIME_NOW"])
    result = metrics.intent_accuracy(utterance, expected, got)
    assert result.turns == 6 and result.correct == 4 and result.accuracy == pytest.approx(4 / 6)
    confusion = result.confusion
    row = confusion.counts[confusion.expected.index("GREETING")]
    assert dict(zip(confusion.recognised, row)) == {
        "(none)": 1,
        "ECHO": 0,
        "GREETING": 1,
        "TIME_NOW": 0,
        "UNKNOWN": 1,
    }
    worst = result.per_utterance[0]
    assert (
        worst.utterance == "hello"
        and worst.accuracy == pytest.approx(1 / 3)
        and worst.expected == "GREETING"
    )
    greeting = next(r for r in result.per_intent if r.intent == "GREETING")
    assert greeting.accuracy == pytest.approx(1 / 3) and greeting.precision == 1.0


def test_turns_without_expected_intent_do_not_count():
    result = metrics.intent_accuracy(
        categorical(["a", "b"]), categorical(["", "ECHO"]), categorical(["X", "ECHO"])
    )
    assert result.turns == 1 and result.accuracy == 1.0


def test_diagnoses_carry_the_guides_causes_and_fixes():
    failure = categorical(["", "no_intent", "no_intent", "connection_refused", "weird_thing"])
    entries = metrics.diagnosis_counts(failure, np.array([1, 0, 0, 0, 0]))
    assert [(e.code, e.count) for e in entries] == [
        ("no_intent", 2),
        ("connection_refused", 1),
        ("weird_thing", 1),
    ]
    refused = entries[1]
    assert (
        refused.headline == "WebSocket connection failed"
        and "voice-gateway not running" in refused.causes
    )
    assert entries[2].known is False


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
    latest = np.linspace(late_ms / 2, late_ms, n)
    result = metrics.send_lateness(latest, categorical(["w1", "w2"] * (n // 2)))
    assert result.status == status and len(result.per_worker) == 2
    assert result.max_ms == late_ms
    assert result.turn_max_p99_ms == pytest.approx(np.percentile(latest, 99))
    assert "over turns of each turn's latest frame" in result.judged_by


def test_reconnections_are_counted_per_user_by_their_largest_value(turns_run):
    entry = metrics.summarize(turns_run).metrics["reconnections"]
    assert entry.per == "users" and entry.count == 10
    assert entry.percentiles.max == 2 and entry.band in ("stable", "minor problems")


def test_chunks_leave_out_turns_that_never_streamed(turns_run):
    entry = metrics.summarize(turns_run).metrics["chunks"]
    sent = turns_run.turns.numbers["chunks_sent"]
    assert entry.count == int((sent > 0).sum()) < len(sent)


def test_percentiles_over_time_use_windows_of_turns_so_p50_p95_p99_differ():
    """377 turns in 120 time buckets put ~3 turns in each: p50, p95 and p99 were one line."""
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 30, 377))
    values = rng.lognormal(np.log(300), 0.4, 377)
    series = metrics.percentiles_by_turn_count(times[::-1].copy(), values[::-1].copy())  # any order in
    assert series["window"] == 37
    assert len(series["time"]) >= 40 and np.all(np.diff(series["time"]) >= 0)
    assert (series["p95"] > series["p50"]).all() and (series["p99"] > series["p95"]).all()
    first = np.sort(values[:37])
    assert series["p50"][0] == pytest.approx(np.percentile(first, 50))


def test_a_window_never_exceeds_the_run():
    series = metrics.percentiles_by_turn_count(np.arange(10.0), np.arange(10.0))
    assert series["window"] == 10 and list(series["p50"]) == [4.5]


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
    shares = [b.share for b in metrics.mixture_band_counts("latency", rows)]
    assert sum(shares) == pytest.approx(1.0) and all(s >= 0 for s in shares)


def test_locust_only_summary_says_percentiles_are_rounded(tmp_path_factory):
    run = readers.read_run(shared_locust_run(tmp_path_factory))
    summary = metrics.summarize(run)
    assert summary.run.mode == "locust-only" and "rounded" in summary.run.percentile_source
    roundtrip = summary.metrics["roundtrip"]
    assert (
        roundtrip.source == "locust"
        and roundtrip.exact is False
        and roundtrip.percentiles.p95 > 0
    )
    assert (
        summary.metrics["chunks"].source is None
        and "turns file" in summary.metrics["chunks"].note
    )
    assert 0.7 < summary.intent.accuracy < 1.0
    assert summary.diagnoses[0].code == "wrong_intent"


def test_verdict_levels():
    def summary(p95, failed=0, accuracy=1.0, lateness="kept up"):
        """The verdict's arguments for a run with this roundtrip p95, failures, accuracy and lateness."""
        metric = lambda band, basis="p95", unit="ms": MetricSummary(
            title="", unit=unit, column="", locust_kind="", per="turns", definition="", source="turns", exact=True,
            count=100, percentiles=Percentiles(p50=1, p95=p95), bands=(), band=band, band_basis=basis, note="",
        )
        from voiceharness import bands

        return {
            "metrics": {
                "roundtrip": metric(bands.band_of("roundtrip", p95)),
                "latency": metric("excellent"),
                "reconnections": metric("stable", unit=""),
                "chunks": metric("normal", "p50"),
            },
            "paced": PaceCounts(None, None, failed, failed / 100),
            "diagnoses": [Diagnosis("no_intent", failed, 1.0, True, "", "", (), ())] if failed else [],
            "accuracy": accuracy,
            "lateness": lateness,
        }

    assert metrics.verdict(**summary(200)).level == "ok"
    assert metrics.verdict(**summary(700)).level == "warning"
    assert metrics.verdict(**summary(1500)).level == "problem"
    assert metrics.verdict(**summary(200, failed=10)).level == "problem"
    assert "no_intent" in metrics.verdict(**summary(200, failed=10)).text
    assert metrics.verdict(**summary(200, accuracy=0.95)).level == "warning"
    assert "bottleneck" in metrics.verdict(**summary(200, lateness="bottleneck")).text


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

    walk(summary.to_json())


def test_turns_cut_short_by_the_end_of_the_run_are_counted_apart(tmp_path):
    records = make_records(20)
    records[:4] = [replace(r, success=False, failure="run_stopped", roundtrip_ms=math.nan) for r in records[:4]]
    prefix = tmp_path / "run"
    write_turns(prefix, records)
    summary = metrics.summarize(readers.read_run(str(prefix)))
    assert summary.run.turns == 16
    assert summary.run.cut_short == 4
    assert all(d.code != "run_stopped" for d in summary.diagnoses)


def test_frame_level_lateness_from_the_run_status_decides_whether_the_generator_kept_up(tmp_path):
    records = make_records(200, lateness_ms=1.5)
    # one short hiccup: a few turns with a very late frame
    records[:6] = [replace(r, send_lateness_max_ms=70.0) for r in records[:6]]
    prefix = tmp_path / "run"
    write_turns(prefix, records)
    per_turn_only = metrics.summarize(readers.read_run(str(prefix))).send_lateness
    assert per_turn_only.status == "bottleneck"
    (tmp_path / "run_run.json").write_text(
        '{"turns_started": 200, "send_lateness": {"host:1": {"frames": 5000, "p50_ms": 0.7, "p99_ms": 3.9, "max_ms": 70.0}}}'
    )
    with_frames = metrics.summarize(readers.read_run(str(prefix))).send_lateness
    assert with_frames.status == "kept up"
    assert with_frames.frame_level["host:1"].p99_ms == 3.9
    (tmp_path / "run_run.json").write_text(
        '{"turns_started": 200, "send_lateness": {"host:1": {"frames": 5000, "p50_ms": 9.0, "p99_ms": 60.0, "max_ms": 90.0}}}'
    )
    assert metrics.summarize(readers.read_run(str(prefix))).send_lateness.status == "bottleneck"


def test_a_foreign_run_status_file_is_refused_naming_it(tmp_path):
    prefix = tmp_path / "run"
    write_turns(prefix, make_records(20))
    (tmp_path / "run_run.json").write_text('{"something": 1}')
    with pytest.raises(readers.AnalysisError, match="run_run.json: not a run status"):
        readers.read_run(str(prefix))


def test_audio_queued_at_end_of_speech_marks_the_uplink_backlogged_and_warns(tmp_path):
    records = make_records(100, fail_share=0, wrong_share=0)
    records = [replace(r, uplink_backlog_ms=0.0) for r in records]
    write_turns(tmp_path / "fast", records)
    fast = metrics.summarize(readers.read_run(str(tmp_path / "fast")))
    assert fast.uplink_backlog.status == "real time"
    assert not any("uplink" in text for text in fast.verdict.warnings), fast.verdict
    records = [replace(r, uplink_backlog_ms=400.0 + i) for i, r in enumerate(records)]
    write_turns(tmp_path / "slow", records)
    slow = metrics.summarize(readers.read_run(str(tmp_path / "slow")))
    backlog = slow.uplink_backlog
    assert backlog.status == "backlogged" and backlog.backlogged_turns == 100
    assert backlog.p50_ms == pytest.approx(449.5) and backlog.max_ms == pytest.approx(499.0)
    assert any(text.startswith("uplink slower than real time") for text in slow.verdict.warnings)


def test_a_turns_file_without_the_uplink_column_leaves_the_uplink_unknown(tmp_path):
    path = write_turns(tmp_path / "old", make_records(20))
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("uplink_backlog_ms")
    old = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != column) for line in lines)
    (tmp_path / "old_turns.csv").write_text(old + "\n", encoding="utf-8")
    summary = metrics.summarize(readers.read_run(str(tmp_path / "old")))
    assert summary.uplink_backlog.status == "unknown"


def summary_of(tmp_path, records, name="run"):
    write_turns(tmp_path / name, records)
    return metrics.summarize(readers.read_run(str(tmp_path / name)))


# --- issue 14 item 2: a turn's send lateness is its latest frame, and aggregates say so -----------


def test_send_lateness_aggregates_each_turns_latest_frame_and_says_so(tmp_path):
    records = make_records(100, fail_share=0, wrong_share=0)
    records = [replace(r, send_lateness_max_ms=float(i % 10)) for i, r in enumerate(records)]  # 0..9 ms
    lateness = summary_of(tmp_path, records).send_lateness
    assert lateness.per_turn == "each turn's latest frame"
    assert lateness.turn_max_p50_ms == pytest.approx(4.5) and lateness.max_ms == 9.0
    assert lateness.judged_by.startswith("p99 over turns of each turn's latest frame")


# --- issue 14 item 3: fast-paced turns are not pooled with real-time turns --------------------------


@pytest.fixture
def mixed_paces(tmp_path):
    records = make_records(400, roundtrip_ms=300.0, fast_share=0.25, fast_roundtrip_ms=60.0, fail_share=0.0,
                           wrong_share=0.0, reconnections_max=0)
    first_fast = next(i for i, r in enumerate(records) if r.pace == "fast")
    records[first_fast] = replace(records[first_fast], success=False, failure="no_audio_tts", roundtrip_ms=math.nan)
    return records, summary_of(tmp_path, records)


def test_bands_percentiles_and_timings_are_of_real_time_turns_only(mixed_paces):
    records, summary = mixed_paces
    realtime = sum(r.pace == "realtime" for r in records)
    roundtrip = summary.metrics["roundtrip"]
    assert roundtrip.count == realtime
    assert {row.band: row.count for row in roundtrip.bands}["excellent"] == 0  # the fast 60 ms are not in
    assert roundtrip.percentiles.p50 == roundtrip.percentiles.min == 300.0
    assert summary.timings["intent_ms"].percentiles.max == pytest.approx(180.0)
    assert summary.run.realtime.turns == realtime and summary.run.turns == len(records)


def test_fast_turns_are_summarised_apart_and_the_verdict_says_how_many_it_left_out(mixed_paces):
    records, summary = mixed_paces
    fast = sum(r.pace == "fast" for r in records)
    section = summary.fast
    assert section.turns == fast and section.failed == 1
    assert section.roundtrip.p50 == 60.0 and "not banded" in section.note
    assert [d.code for d in section.diagnoses] == ["no_audio_tts"]
    assert summary.diagnoses == ()  # the real-time turns did not fail
    verdict = summary.verdict
    assert verdict.level == "ok" and verdict.fast_left_out == fast
    assert f"{fast} fast-paced turn(s) left out, 1 of them failed" in verdict.text


def test_uplink_outliers_that_are_fast_turns_are_named_and_do_not_condemn_the_link(tmp_path):
    records = make_records(200, fast_share=0.2)
    records = [replace(r, uplink_backlog_ms=900.0 if r.pace == "fast" else 0.0) for r in records]
    backlog = summary_of(tmp_path, records).uplink_backlog
    fast = sum(r.pace == "fast" for r in records)
    assert backlog.status == "real time" and backlog.turns == len(records) - fast
    assert backlog.fast_outliers == fast and "are fast-paced" in backlog.fast_note


def test_a_run_of_fast_turns_only_says_there_was_nothing_to_band(tmp_path):
    summary = summary_of(tmp_path, make_records(40, fast_share=1.0))
    assert summary.metrics["roundtrip"].band is None and summary.fast.turns == 40
    assert "no real-time turn to band" in summary.verdict.text


# --- harness errors are counted apart -------------------------------------------------------------


def test_harness_errors_are_neither_successes_nor_gateway_failures(tmp_path):
    records = make_records(200, fail_share=0.0, wrong_share=0.0, harness_error_share=0.1)
    broken = sum(r.failure == "harness_error" for r in records)
    assert broken > 5
    summary = summary_of(tmp_path, records)
    assert summary.run.turns == 200 - broken and summary.run.failed == 0
    assert summary.run.harness_errors == broken
    assert all(d.code != "harness_error" for d in summary.diagnoses)
    errors = summary.harness_errors
    assert errors.count == broken and "read the traceback" in errors.advice
    assert errors.examples == ("TypeError: unsupported operand type(s) for -: 'float' and 'NoneType'",)
    assert summary.verdict.level == "warning" and f"{broken} harness error(s)" in summary.verdict.text


def test_a_run_where_every_turn_is_a_harness_error_is_refused_naming_the_harness(tmp_path):
    records = make_records(10, fail_share=0.0, wrong_share=0.0, harness_error_share=1.0)
    write_turns(tmp_path / "run", records)
    with pytest.raises(readers.AnalysisError, match="every turn ended in harness_error .* Read the traceback"):
        metrics.summarize(readers.read_run(str(tmp_path / "run")))


# --- issue 13 item 8: intent source, the judge's accuracy, audible, replies, new diagnoses ------------


def test_intent_sources_are_counted_and_accuracy_counts_judged_turns_only(tmp_path):
    records = make_records(300, audio_judged_share=0.4, fail_share=0.0, wrong_share=0.0)
    # not sampled for judging: the reply came, nobody judged it
    records[:12] = [replace(r, intent="", intent_source="", audio_intent="") for r in records[:12]]
    # no reply before the deadline
    records[12:15] = [replace(r, intent="", intent_source="", audio_intent="", success=False, failure="no_intent")
                      for r in records[12:15]]
    summary = summary_of(tmp_path, records)
    sources = {row.source: row.turns for row in summary.intent_sources.rows}
    audio = sum(r.intent_source == "audio" for r in records)
    assert sources == {"metadata": 300 - 15 - audio, "audio": audio, "": 15}
    intent = summary.intent
    assert intent.turns == 285 and intent.accuracy == 1.0  # the 15 unjudged are not counted as wrong
    assert intent.not_judged.to_json() == {
        "turns": 15,
        "reasons": [{"reason": "not sampled for judging", "turns": 12}, {"reason": "no_intent", "turns": 3}],
    }
    assert {row.source for row in intent.by_source} == {"metadata", "audio"}


def test_a_turn_with_an_intent_but_no_recorded_source_took_it_from_the_metadata(tmp_path):
    records = make_records(50, fail_share=0.0)
    records = [replace(r, intent_source="") for r in records]  # what a client that does not write the column leaves
    sources = {row.source: row.turns for row in summary_of(tmp_path, records).intent_sources.rows}
    assert sources == {"metadata": 50, "audio": 0, "": 0}


def test_the_judge_is_scored_against_the_metadata_with_a_confusion_matrix(tmp_path):
    records = make_records(400, cross_checked_share=1.0, judge_wrong_share=0.1, fail_share=0.0, wrong_share=0.0)
    disagree = sum(r.audio_intent != r.intent for r in records)
    judged = summary_of(tmp_path, records).judge
    assert judged.turns == 400 and judged.agreed == 400 - disagree > 0
    assert judged.agreement == pytest.approx((400 - disagree) / 400)
    confusion = judged.confusion
    greeting = dict(zip(confusion.audio, confusion.counts[confusion.metadata.index("GREETING")]))
    said_greeting = [r for r in records if r.intent == "GREETING"]
    assert greeting["GREETING"] == sum(r.audio_intent == "GREETING" for r in said_greeting)
    assert greeting.get("UNKNOWN", 0) == sum(r.audio_intent == "UNKNOWN" for r in said_greeting)


def test_audible_is_beside_the_roundtrip_with_its_lead_and_the_band_stays_on_the_roundtrip(tmp_path):
    summary = summary_of(tmp_path, make_records(200, roundtrip_ms=450.0, audible_lead_ms=120.0))
    audible = summary.audible
    assert audible.percentiles.p95 == pytest.approx(570.0) and audible.lead.p50 == pytest.approx(120.0)
    assert summary.metrics["roundtrip"].band == "good"  # 450 ms; the 570 ms audible is not banded
    assert next(iter(summary.timings)) == "audible_ms"
    assert summary.timings["reply_audio_ms"].count > 0


def test_replies_say_formats_rates_and_playback_stalls(tmp_path):
    records = make_records(300, audio_judged_share=0.3, stall_share=0.2, fail_share=0.0)
    replies = summary_of(tmp_path, records).replies
    formats = {row.format: row.turns for row in replies.formats}
    assert formats == {"wav": sum(r.reply_format == "wav" for r in records),
                       "metadata+pcm": sum(r.reply_format == "metadata+pcm" for r in records)}
    assert {row.sample_rate_hz for row in replies.sample_rates} == {16000, 22050}
    stalls = replies.playback_stalls
    streamed = [r for r in records if r.playback_stalls is not None]
    assert stalls.turns == len(streamed) and stalls.stalled_turns == sum(r.playback_stalls > 0 for r in streamed)


@pytest.mark.parametrize("code", ["silent_reply", "reply_mismatch", "unjudged"])
def test_the_new_diagnoses_come_with_the_guides_headline_causes_and_fixes(tmp_path, code):
    records = make_records(60, fail_share=0.0, wrong_share=0.0)
    records[:5] = [replace(r, success=False, failure=code) for r in records[:5]]
    (entry,) = summary_of(tmp_path, records).diagnoses
    assert entry.code == code and entry.count == 5 and entry.known
    assert entry.headline == "No audio response" and entry.causes and entry.fixes


@pytest.mark.parametrize(
    ("scope_cells", "counted"),
    [(("process tree", "process tree"), "whole process tree"), (("main process", "main process"), "main process only"),
     (None, "main process only")],
)
def test_the_resources_summary_says_what_the_gateway_figures_count(tmp_path, scope_cells, counted):
    header = "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb"
    rows = ["100,h:1,5,12,80,,120", "102,h:1,5,95,81,40,300"]
    if scope_cells:
        header += ",gateway_scope"
        rows = [row + "," + cell for row, cell in zip(rows, scope_cells)]
    write_turns(tmp_path / "run", make_records(20))
    (tmp_path / "run_resources.csv").write_text("\n".join([header, *rows]) + "\n")
    resources = metrics.summarize(readers.read_run(str(tmp_path / "run"))).resources
    (worker,) = resources.workers
    assert worker.cpu_max_percent == 95 and worker.saturated and worker.samples == 2
    assert resources.gateway.cpu_max_percent == 40 and resources.gateway.rss_max_mb == 300
    assert counted in resources.gateway.counted
