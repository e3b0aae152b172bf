"""report.json and JUnit XML.

report.json holds the whole summary (every figure the terminal and the page show, in the shape
:meth:`analysis.summary.RunSummary.to_json` keeps), the gate's checks and, for several runs, the
comparisons. The JUnit file shows the gate's checks as test
cases (suite ``voice-gateway analysis``), so CI systems list each threshold as passed or failed;
without a gate it holds one passing case per run so the file is never empty. Either way the
suite's properties and output say what the verdict was computed on: the real-time turns, the
fast-paced turns left out (with their own figures) and the harness errors counted apart.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from analysis.compare import Comparison
from analysis.gate import Check
from analysis.summary import RunSummary

SCHEMA_VERSION = 2  # 2: fast-paced turns and harness errors apart, send lateness per turn = latest frame


def _clean(value):  # type: ignore[no-untyped-def]
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_dict(check: Check) -> dict:
    return {
        "threshold": check.threshold.text,
        "name": check.threshold.name,
        "op": check.threshold.op,
        "limit": check.threshold.value,
        "measured": check.measured,
        "passed": check.passed,
        "message": check.message,
    }


def report_dict(
    summaries: Sequence[RunSummary], checks: Sequence[Check] | None = None,
    comparisons: Sequence[Comparison] | None = None,
) -> dict:
    """report.json as data: the summaries in their JSON form, the gate, the comparisons."""
    checks = checks or []
    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "runs": [summary.to_json() for summary in summaries],
            "gate": {
                "applied_to": summaries[-1].run.prefix if checks else None,
                "passed": all(c.passed for c in checks),
                "checks": [check_dict(c) for c in checks],
            },
            "comparisons": [comparison.to_json() for comparison in comparisons or []],
        }
    )  # fmt: skip


def to_json(
    summaries: Sequence[RunSummary], checks: Sequence[Check] | None = None,
    comparisons: Sequence[Comparison] | None = None,
) -> str:
    return json.dumps(report_dict(summaries, checks, comparisons), indent=2, allow_nan=False) + "\n"


def summary_lines(summary: RunSummary) -> list[str]:
    """The verdict and what it was computed on, as lines for a CI log."""
    run = summary.run
    lines = [f"{run.label}: verdict: {summary.verdict.text}"]
    realtime, fast = run.realtime, summary.fast
    if realtime:
        lines.append(f"real-time turns: {realtime.turns} ({realtime.failed} failed); bands and verdict on these")
    if fast.turns:
        roundtrip = fast.roundtrip
        lines.append(
            f"fast-paced turns, apart: {fast.turns} ({fast.failed} failed); roundtrip p50 "
            f"{_ms(roundtrip.p50)}, p95 {_ms(roundtrip.p95)}, max {_ms(roundtrip.max)} (not banded)"
        )
    errors = summary.harness_errors
    if errors.count:
        lines.append(f"harness errors, apart: {errors.count}: {errors.advice}")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def to_junit(summaries: Sequence[RunSummary], checks: Sequence[Check] | None = None) -> str:
    """JUnit XML: one test case per gate check (or one per run when there is no gate)."""
    checks = checks or []
    suite = ET.Element("testsuite", name="voice-gateway analysis")
    properties = ET.SubElement(suite, "properties")
    for summary in summaries:
        run = summary.run
        label = run.label
        for name, value in (
            ("realtime_turns", run.realtime.turns if run.realtime else None),
            ("fast_turns", summary.fast.turns),
            ("harness_errors", summary.harness_errors.count),
            ("verdict", summary.verdict.level),
        ):
            if value is not None:
                ET.SubElement(properties, "property", name=f"{label}.{name}", value=str(value))
    failures = 0
    if checks:
        classname = f"gate.{summaries[-1].run.label}"
        for check in checks:
            case = ET.SubElement(suite, "testcase", classname=classname, name=check.threshold.text, time="0")
            if not check.passed:
                failures += 1
                failure = ET.SubElement(case, "failure", message=check.message, type="threshold")
                failure.text = check.message
            else:
                ET.SubElement(case, "system-out").text = check.message
    else:
        for summary in summaries:
            case = ET.SubElement(
                suite, "testcase", classname="analysis", name=f"analysed {summary.run.label}", time="0"
            )
            ET.SubElement(case, "system-out").text = "\n".join(summary_lines(summary))
    ET.SubElement(suite, "system-out").text = "\n".join(line for s in summaries for line in summary_lines(s))
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_text(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
