"""bench/bench_analysis.py --smoke runs, so the benchmark cannot rot."""

import json
import subprocess

from analysis_fixtures import PYTHON, REPO


def test_benchmark_smoke_run_writes_its_numbers(tmp_path):
    output = tmp_path / "analysis-smoke.json"
    result = subprocess.run(
        [PYTHON, "bench/bench_analysis.py", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "load_analyse_s" in result.stdout
    data = json.loads(output.read_text())
    assert data["records"] == 10_000 and data["load_analyse_ok"] and data["html_ok"]
    assert 0 < data["intent_accuracy"] < 1 and data["roundtrip_p95_ms"] > 0
