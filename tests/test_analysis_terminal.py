"""analysis.terminal: the text a person reads after a run."""

import pytest
from analysis_fixtures import make_records, shared_locust_run, write_turns

from analysis import compare, gate, metrics, readers, terminal


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("terminal") / "run")
    write_turns(prefix, make_records(400))
    return metrics.summarize(readers.read_run(prefix))


def test_every_documented_metric_has_a_band_table(summary):
    text = terminal.render(summary)
    for title in ("Roundtrip: ", "Latency (ping): ", "Audio chunks: ", "Reconnections: "):
        assert title in text
    assert "excellent  < 100 ms" in text and "good       100 - 500 ms" in text
    assert "stable            0" in text and "normal  50 - 200" in text


def test_exact_percentiles_are_printed(summary):
    text = terminal.render(summary)
    p95 = summary["metrics"]["roundtrip"]["percentiles"]["p95"]
    assert f"p95 {terminal.number(p95)}" in text and "per-turn records (exact)" in text


def test_intent_diagnoses_lateness_and_verdict_sections(summary):
    text = terminal.render(summary)
    assert (
        "Intent accuracy: " in text and "confusion matrix" in text and "per utterance (worst first)" in text
    )
    assert "Diagnoses" in text and "likely causes:" in text and "fix:" in text
    assert "Send lateness" in text and "KEPT UP" in text
    assert text.rstrip().splitlines()[-1].startswith("verdict: ")


def test_locust_only_output_says_what_it_lacks(tmp_path_factory):
    text = terminal.render(metrics.summarize(readers.read_run(shared_locust_run(tmp_path_factory))))
    assert "Locust's rounded percentiles" in text and "needs the turns file" in text
    assert "Exceptions in user code" in text


def test_table_right_aligns_numbers():
    text = terminal.table(["name", "n"], [["a", 5], ["bbb", 100]])
    assert text.splitlines()[2] == "  a       5"
    assert text.splitlines()[3] == "  bbb   100"


def test_checks_and_comparison(summary):
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<1", "roundtrip.p95<100000"]), summary)
    text = terminal.render_checks(checks)
    assert text.startswith("Gate: 1/2 passed") and "FAIL roundtrip.p95<1" in text
    comparison = terminal.render_comparison(compare.compare(summary, summary))
    assert "roundtrip.p95" in comparison and "moved (>= 5% or across a band edge): nothing" in comparison


def test_the_uplink_section_appears_when_the_turns_carry_the_backlog(tmp_path, summary):
    assert "Uplink" not in terminal.render(summary)  # no figure recorded: nothing to say
    records = make_records(50)
    for record in records:
        record.uplink_backlog_ms = 640.0
    write_turns(tmp_path / "slow", records)
    text = terminal.render(metrics.summarize(readers.read_run(str(tmp_path / "slow"))))
    assert "Uplink (audio unsent at end of speech): BACKLOGGED" in text
    assert "p50 640 ms" in text and "256 kbit/s per user" in text
    assert "uplink slower than real time (median 640 ms" in text.splitlines()[-1]
