"""analysis.exports: report.json holds every figure; JUnit XML shows the gate's checks as test cases."""

import json
import math
import xml.etree.ElementTree as ET

import pytest
from analysis_fixtures import make_records, write_turns

from analysis import exports, gate, metrics, readers


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("exports") / "run")
    write_turns(prefix, make_records(300))
    return metrics.summarize(readers.read_run(prefix))


def test_json_holds_summary_checks_and_is_strict_json(summary):
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<500", "intent.accuracy>=0.999"]), summary)
    data = json.loads(exports.to_json([summary], checks))
    run = data["runs"][0]
    assert run["metrics"]["roundtrip"]["percentiles"]["p95"] == pytest.approx(
        summary.metrics["roundtrip"].percentiles.p95
    )
    assert run["intent"]["confusion"]["counts"] and run["diagnoses"] and run["send_lateness"]["status"]
    assert data["gate"]["passed"] is False
    assert [c["passed"] for c in data["gate"]["checks"]] == [True, False]


def test_json_turns_nan_into_null():
    assert exports._clean({"a": [math.nan, 1.0, math.inf]}) == {"a": [None, 1.0, None]}


def test_junit_has_one_case_per_check_with_failures_marked(summary):
    checks = gate.evaluate(gate.parse_all(["roundtrip.p95<500", "intent.accuracy>=0.999"]), summary)
    root = ET.fromstring(exports.to_junit([summary], checks))
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["roundtrip.p95<500", "intent.accuracy>=0.999"]
    failure = cases[1].find("failure")
    assert failure is not None and "measured intent.accuracy" in failure.get("message")


def test_junit_without_a_gate_is_one_passing_case(summary):
    suite = ET.fromstring(exports.to_junit([summary])).find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "0"


def test_json_and_junit_show_fast_turns_and_harness_errors_apart(tmp_path):
    prefix = str(tmp_path / "run")
    write_turns(prefix, make_records(300, fast_share=0.2, harness_error_share=0.02))
    summary = metrics.summarize(readers.read_run(prefix))
    data = json.loads(exports.to_json([summary]))
    run = data["runs"][0]
    assert data["schema_version"] == 2
    assert run["fast"]["turns"] == summary.fast.turns > 0 and run["fast"]["roundtrip"]["p95"] is not None
    assert run["harness_errors"]["count"] == summary.harness_errors.count > 0
    assert run["send_lateness"]["per_turn"] == "each turn's latest frame"
    for checks in ([], gate.evaluate(gate.parse_all(["harness_errors.count<=0"]), summary)):
        suite = ET.fromstring(exports.to_junit([summary], checks)).find("testsuite")
        properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
        assert properties["run.fast_turns"] == str(summary.fast.turns)
        assert properties["run.realtime_turns"] == str(summary.run.realtime.turns)
        assert properties["run.harness_errors"] == str(summary.harness_errors.count)
        out = suite.find("system-out").text
        assert "fast-paced turns, apart: " in out and "(not banded)" in out
        assert "harness errors, apart: " in out and "read the traceback" in out
        assert suite.get("tests") == "1"
