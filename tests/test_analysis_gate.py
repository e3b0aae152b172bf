"""analysis.gate: parsing thresholds, refusing malformed ones, checking them against a summary."""

from dataclasses import replace

import pytest
from analysis_fixtures import make_records, write_turns

from analysis import gate, metrics, readers
from analysis.stats import Percentiles
from voiceharness.errors import UsageError


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("gate") / "run")
    write_turns(prefix, make_records(400, roundtrip_ms=300.0, wrong_share=0.0, fail_share=0.0))
    return metrics.summarize(readers.read_run(prefix))


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ("roundtrip.p95<500", "roundtrip.p95", "<", 500.0),
        (" latency.p99 <= 100ms ", "latency.p99", "<=", 100.0),
        ("roundtrip.max<1.5s", "roundtrip.max", "<", 1500.0),
        ("intent.accuracy>=98%", "intent.accuracy", ">=", 0.98),
        ("reconnections.max<=3", "reconnections.max", "<=", 3.0),
        ("ping.median<50", "latency.p50", "<", 50.0),
        ("band.roundtrip<=good", "band.roundtrip", "<=", "good"),
        ("band.reconnections<=minor_problems", "band.reconnections", "<=", "minor problems"),
        ("band.reconnections<=minor", "band.reconnections", "<=", "minor problems"),
        ("roundtrip.share.bad<=1%", "roundtrip.share.bad", "<=", 0.01),
    ],
)
def test_parse_accepts_the_documented_forms(text, name, op, value):
    threshold = gate.parse(text)
    assert (threshold.name, threshold.op, threshold.value) == (name, op, value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("roundtrip.p95", "not a threshold"),
        ("roundtrip.p95 =< 500", "not a threshold"),
        ("roundtrip.p42<500", "unknown name"),
        ("jitter.p95<5", "unknown name"),
        ("roundtrip.p95<fast", "not a number"),
        ("band.roundtrip<=great", "unknown band"),
        ("band.jitter<=good", "unknown metric"),
        ("roundtrip.share.great<1", "unknown band"),
    ],
)
def test_malformed_threshold_is_a_usage_error_that_says_why(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        gate.parse(text)


def test_split_expressions_allows_commas_semicolons_and_comments():
    assert gate.split_expressions(["a<1, b<2; c<3  # note", "# only a comment", ""]) == ["a<1", "b<2", "c<3"]


def test_gate_file(tmp_path):
    path = tmp_path / "gate.txt"
    path.write_text("# CI gate\nroundtrip.p95<500\nintent.accuracy>=0.98, reconnections.max<=3\n")
    assert gate.read_gate_file(str(path)) == [
        "roundtrip.p95<500",
        "intent.accuracy>=0.98",
        "reconnections.max<=3",
    ]
    with pytest.raises(UsageError, match="not found"):
        gate.read_gate_file(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UsageError, match="no threshold"):
        gate.read_gate_file(str(tmp_path / "empty.txt"))


def test_passing_and_failing_checks_report_the_measured_value(summary):
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<500", "roundtrip.p95<250"]), summary)
    assert [c.passed for c in checks] == [True, False]
    assert checks[1].measured == pytest.approx(300.0)
    assert (
        "roundtrip.p95<250" in checks[1].message
        and "300 ms" in checks[1].message
        and "FAILED" in checks[1].message
    )


def test_band_threshold_compares_positions_best_first(summary):
    checks = gate.evaluate(
        gate.parse_all(["band.roundtrip<=good", "band.roundtrip<=excellent", "band.roundtrip==good"]), summary
    )
    assert [c.passed for c in checks] == [True, False, True]
    assert checks[1].measured == "good"


def test_every_known_name_has_a_measurement(summary):
    values = gate.measurements(summary)
    assert set(gate.known_names()) <= set(values)
    assert values["intent.accuracy"] == 1.0 and values["failures.count"] == 0


def test_a_value_the_run_did_not_measure_fails_and_says_so(summary):
    chunks = replace(summary.metrics["chunks"], percentiles=Percentiles())  # nothing observed
    missing = replace(summary, metrics={**summary.metrics, "chunks": chunks})
    (check,) = gate.evaluate([gate.parse("chunks.p95<300")], missing)
    assert not check.passed and "not measured" in check.message


def test_the_uplink_backlog_can_gate_a_run(tmp_path):
    records = make_records(100, wrong_share=0.0, fail_share=0.0)
    records = [replace(r, uplink_backlog_ms=0.0 if i < 90 else 300.0) for i, r in enumerate(records)]
    prefix = str(tmp_path / "run")
    write_turns(prefix, records)
    summary = metrics.summarize(readers.read_run(prefix))
    checks = gate.evaluate(gate.parse_all(["uplink_backlog.p50<64", "uplink_backlog.p95<100ms"]), summary)
    assert [c.passed for c in checks] == [True, False]
    assert "300 ms" in gate.format_value("uplink_backlog.p95", summary.uplink_backlog.p95_ms)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("harness_errors.count<=0", "harness_errors.count"),
        ("audible.p95<800ms", "audible.p95"),
        ("judge.agreement>=98%", "judge.agreement"),
        ("fast.failures.rate<0.01", "fast.failures.rate"),
        ("fast.roundtrip.p95<300", "fast.roundtrip.p95"),
        ("intent.not_judged<=10", "intent.not_judged"),
    ],
)
def test_the_newer_figures_can_be_named_in_a_gate(text, name):
    assert gate.parse(text).name == name


def test_harness_errors_audible_and_the_judge_gate_a_run(tmp_path):
    records = make_records(300, roundtrip_ms=300.0, audible_lead_ms=400.0, cross_checked_share=1.0,
                           judge_wrong_share=0.1, harness_error_share=0.02, fail_share=0.0, wrong_share=0.0)
    broken = sum(r.failure == "harness_error" for r in records)
    prefix = str(tmp_path / "run")
    write_turns(prefix, records)
    summary = metrics.summarize(readers.read_run(prefix))
    checks = gate.evaluate(
        gate.parse_all(["harness_errors.count<=0", "audible.p95<800", "audible.p95<600", "judge.agreement>=0.98",
                        "failures.count==0"]),
        summary,
    )
    assert [c.passed for c in checks] == [False, True, False, False, True]
    assert f"harness_errors.count = {broken}" in checks[0].message and broken > 0
    assert "700 ms" in checks[1].message
    assert "judge.agreement = 0.9" in checks[3].message


def test_failure_gates_count_real_time_turns_and_fast_ones_have_their_own(tmp_path):
    records = make_records(200, fast_share=0.3, fail_share=0.0, wrong_share=0.0)
    failing = {id(r) for r in [r for r in records if r.pace == "fast"][:4]}
    records = [replace(r, success=False, failure="no_intent") if id(r) in failing else r for r in records]
    prefix = str(tmp_path / "run")
    write_turns(prefix, records)
    summary = metrics.summarize(readers.read_run(prefix))
    checks = gate.evaluate(gate.parse_all(["failures.count==0", "fast.failures.count==4", "turns.count==200"]), summary)
    assert [c.passed for c in checks] == [True, True, True]
