"""analysis.cli: ``python -m analysis`` end to end, its outputs and its exit codes (0 ok, 1 gate, 2 input)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from analysis_fixtures import analysis_command, copy_run, make_records, shared_locust_run, write_turns

from analysis import cli


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Real Locust CSVs plus a turns file (roundtrip 300 ms, no wrong intents)."""
    directory = tmp_path_factory.mktemp("cli")
    prefix = copy_run(shared_locust_run(tmp_path_factory), directory)
    write_turns(prefix, make_records(400, roundtrip_ms=300.0, wrong_share=0.0, fail_share=0.0))
    return prefix


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("analysis: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_analysis_prints_tables_and_writes_html_json_junit(full_run, tmp_path):
    result = analysis_command(full_run, "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Roundtrip: GOOD" in result.stdout and "verdict: " in result.stdout
    assert (tmp_path / "report.html").stat().st_size > 10_000
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["runs"][0]["metrics"]["roundtrip"]["percentiles"]["p95"] == 300.0
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("failures") == "0"


def test_gate_that_holds_exits_0(full_run, tmp_path):
    result = analysis_command(
        full_run,
        "--out-dir",
        str(tmp_path),
        "--gate",
        "roundtrip.p95<500",
        "--gate",
        "intent.accuracy>=0.98,reconnections.max<=3",
        "--gate",
        "band.roundtrip<=good",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Gate: 4/4 passed" in result.stdout


def test_gate_that_fails_exits_1_naming_the_threshold_and_measured_value(full_run, tmp_path):
    result = analysis_command(
        full_run, "--out-dir", str(tmp_path), "--gate", "roundtrip.p95<250", "--gate", "latency.p99<1000"
    )
    assert result.returncode == 1
    assert (
        "analysis: gate failed: roundtrip.p95<250: FAILED, measured roundtrip.p95 = 300 ms" in result.stderr
    )
    assert "latency.p99<1000" not in result.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"


def test_gate_file(full_run, tmp_path):
    gate_file = tmp_path / "gate.txt"
    gate_file.write_text("# CI\nroundtrip.p95<500\nband.roundtrip<=excellent\n")
    result = analysis_command(full_run, "--no-files", "--gate-file", str(gate_file))
    assert (
        result.returncode == 1
        and "band.roundtrip<=excellent: FAILED, measured band.roundtrip = good" in result.stderr
    )


def test_malformed_gate_exits_2_before_reading_the_run(tmp_path):
    result = analysis_command(str(tmp_path / "does_not_exist"), "--gate", "roundtrip.p95 <> 500")
    assert_one_line_error(result, "gate 'roundtrip.p95 <> 500'", "not a number")
    result = analysis_command(str(tmp_path / "does_not_exist"), "--gate", "p95 of roundtrip under 500")
    assert_one_line_error(result, "not a threshold", "NAME OP VALUE")


def test_locust_csvs_alone_work_and_say_percentiles_are_rounded(tmp_path_factory, tmp_path):
    prefix = copy_run(shared_locust_run(tmp_path_factory), tmp_path)
    result = analysis_command(prefix, "--gate", "roundtrip.p95<100000")
    assert result.returncode == 0, result.stderr
    assert "Locust's rounded percentiles" in result.stdout
    assert (tmp_path / "report.html").exists()


def test_locust_only_gate_on_chunks_fails_as_not_measured(tmp_path_factory, tmp_path):
    prefix = copy_run(shared_locust_run(tmp_path_factory), tmp_path)
    result = analysis_command(prefix, "--no-files", "--gate", "chunks.p95<300")
    assert result.returncode == 1 and "not measured in this run (needs the turns file)" in result.stderr


def test_comparison_of_two_runs(tmp_path):
    for name, rt in (("base", 300.0), ("cand", 650.0)):
        write_turns(str(tmp_path / name), make_records(300, roundtrip_ms=rt, wrong_share=0.0, fail_share=0.0))
    result = analysis_command(
        str(tmp_path / "base"), str(tmp_path / "cand"), "--quiet", "--out-dir", str(tmp_path / "o")
    )
    assert result.returncode == 0, result.stderr
    assert "Comparison" not in result.stdout  # --quiet
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    row = next(r for r in data["comparisons"][0]["rows"] if r["metric"] == "roundtrip" and r["stat"] == "p95")
    assert (row["baseline"], row["candidate"], row["candidate_band"], row["direction"]) == (
        300.0,
        650.0,
        "slow",
        "worse",
    )
    verbose = analysis_command(str(tmp_path / "cand"), "--compare", str(tmp_path / "base"), "--no-files")
    assert (
        "roundtrip.p95" in verbose.stdout and "good -> slow" in verbose.stdout and "worse *" in verbose.stdout
    )


def test_forced_progress_goes_to_stderr(full_run):
    result = analysis_command(full_run, "--no-files", "--quiet", "--progress", "always")
    assert result.returncode == 0 and "analysis: reading run_turns.csv" in result.stderr
    assert "reading" not in result.stdout


def test_no_progress_by_default_when_not_a_terminal(full_run):
    result = analysis_command(full_run, "--no-files", "--quiet")
    assert result.stderr == ""


# --- bad input: exit 2, one line naming the file and the problem, no traceback ----------------


def test_prefix_with_no_files(tmp_path):
    assert_one_line_error(analysis_command(str(tmp_path / "run")), "run_turns.csv", "no run files")


def test_empty_file(tmp_path):
    (tmp_path / "run_stats.csv").write_text("")
    assert_one_line_error(analysis_command(str(tmp_path / "run")), "run_stats.csv", "is empty")


def test_truncated_file(full_run, tmp_path):
    prefix = copy_run(full_run, tmp_path)
    path = prefix + "_turns.csv"
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-25])
    assert_one_line_error(analysis_command(prefix), "run_turns.csv", "truncated")


def test_foreign_csv(tmp_path):
    (tmp_path / "run_stats.csv").write_text("id,price\n1,2.5\n")
    assert_one_line_error(analysis_command(str(tmp_path / "run")), "run_stats.csv", "not a Locust stats CSV")


def test_wrong_columns(full_run, tmp_path):
    prefix = copy_run(full_run, tmp_path)
    path = prefix + "_turns.csv"
    text = Path(path).read_text().replace("roundtrip_ms", "rtt", 1)
    Path(path).write_text(text)
    assert_one_line_error(analysis_command(prefix), "run_turns.csv", "lacks column", "roundtrip_ms")


def test_unwritable_output(full_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(analysis_command(full_run, "--out-dir", str(blocker / "sub")), "cannot be written")


def test_bad_option_is_exit_2():
    with pytest.raises(SystemExit) as caught:
        cli.main(["--progress", "sometimes", "x"])
    assert caught.value.code == 2
