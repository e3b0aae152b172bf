"""The benchmarks still run: tiny versions of each (``python -m bench X --smoke``), checked for
the fields and sane values of their result files — never for timing goals (CI machines are noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
RESULTS = ROOT / "bench" / "results"


def _run(benchmark: str, timeout_s: float) -> dict:
    completed = subprocess.run([sys.executable, "-m", "bench", benchmark, "--smoke"], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout_s, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    name = {"capacity": "capacity-smoke", "truth": "truth-smoke", "analysis": "analysis-smoke"}[benchmark]
    return json.loads(Path(RESULTS / f"{name}.json").read_text())


def _finite(value) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def test_capacity_smoke_measures_every_client_side_by_side():
    result = _run("capacity", 400)
    assert result["machine"]["cores"] >= 1 and result["frame_bytes"] == 2048
    runs = {r["client"]: r for r in result["runs"]}
    assert set(runs) == {"harness", "harness_gc_cpython", "harness_timer", "asyncio", "raw"}
    for client, r in runs.items():
        assert "frames_per_s" in r, (client, r.get("log_tail"))
        assert 0.5 < r["achieved_ratio"] < 1.5, (client, r["achieved_ratio"])
        assert 0 <= r["lateness_p50_ms"] <= r["lateness_p99_ms"] <= 100.1, client
        assert r["frames_per_cpu_s"] > 1000 and _finite(r["cpu_s_per_1000_frames"]), client
        assert r["rss_kb_per_user"] > 0 and r["verdict"]
    assert runs["harness"]["failed_turns"] == 0 and runs["harness"]["turns"] > 0
    # The harness times its own collector pauses (voice_collector) and writes them with the pacer's stats.
    assert set(runs["harness"]["collector"]) == {"count", "total_ms", "max_ms", "collected"}
    assert isinstance(result["summary"]["per_n"][0]["harness_on_time"], bool)
    assert _finite(result["summary"]["per_n"][0]["frames_per_cpu_s_ratio_vs_asyncio"])


def test_truth_smoke_compares_reported_times_with_ground_truth():
    result = _run("truth", 400)
    runs = result["runs"]
    assert {(r["gateway_delay_ms"], r["one_way_delay_ms"]) for r in runs} == {(0.0, 0.0), (50.0, 0.0), (50.0, 10.0)}
    for r in runs:
        assert r["steady_turns"] > 0 and r["failed_turns"] == 0, r
        # Sane, not a timing goal: the error of a 5-user run is far below one frame (64 ms).
        assert abs(r["roundtrip_error_p50_ms"]) < 30, r
        assert abs(r["ping_error_p50_ms"]) < 30, r
        assert r["locust_vs_exact"]["roundtrip"]["exact"]["count"] > 0
        assert r["verdict"]
    (proxied,) = [r for r in runs if r["one_way_delay_ms"]]
    # The proxy measured its own writes (a timer never fires early) and the error is also given against that.
    assert 0 <= proxied["proxy_late_up_ms"] < 30 and 0 <= proxied["proxy_late_down_ms"] < 30, proxied
    assert _finite(proxied["roundtrip_error_vs_measured_p50_ms"])


def test_analysis_smoke_writes_its_result():
    result = _run("analysis", 300)
    assert result["records"] == 10_000 and result["load_analyse_s"] > 0
