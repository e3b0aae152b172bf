"""A load generator that cannot keep its send schedule says so: in the log, run.json and the report.

The overload is real, not simulated: one Locust user runs scenario code that computes without
yielding (as a heavy custom scenario would), so while it runs no frame of the talking users
leaves the process. Their frames go out late, and every output of the run must say the timings
are the load generator's, not the gateway's.
"""

from __future__ import annotations

import json
import textwrap

from analysis_fixtures import analysis_command
from conftest import run_locust

HOGGING_LOCUSTFILE = textwrap.dedent(
    """
    import time

    from locust import User, constant, task

    from voiceharness.locust.scenarios import CorpusUser


    class Talker(CorpusUser):
        weight = 4


    class CpuHog(User):
        fixed_count = 1
        wait_time = constant(0.02)

        @task
        def compute_without_yielding(self):
            until = time.perf_counter() + 0.08
            while time.perf_counter() < until:
                pass
    """
)


def test_an_overloaded_load_generator_says_so_in_the_log_run_status_and_report(shared_gateway, tmp_path):
    locustfile = tmp_path / "hogging.py"
    locustfile.write_text(HOGGING_LOCUSTFILE)
    prefix = tmp_path / "run"
    run = run_locust(prefix, shared_gateway.url, "--utterances", "kind:clean", users=5, spawn_rate=5,
                     run_time="12s", locustfile=locustfile)
    assert "load generator saturated" in run.output, run.output[-3000:]

    status = json.loads(run.file("_run.json").read_text())
    (lateness,) = status["send_lateness"].values()
    assert lateness["frames"] > 0 and lateness["p99_ms"] > 50, lateness

    out_dir = tmp_path / "report"
    analysis = analysis_command(str(prefix), "--out-dir", str(out_dir))
    assert "Send lateness (frame sent - frame due): BOTTLENECK" in analysis.stdout, analysis.stdout + analysis.stderr
    report = json.loads((out_dir / "report.json").read_text())
    (summary,) = report["runs"]
    assert summary["send_lateness"]["status"] == "bottleneck"
    assert "load generator was the bottleneck" in summary["verdict"]["text"]
    assert "load generator was the bottleneck" in (out_dir / "report.html").read_text()
