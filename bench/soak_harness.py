"""``python -m bench.soak_harness --minutes 20``: does the load generator's memory level off?

Not run in CI (it takes as long as it is told). It starts the reference gateway (at nice 10,
as the demo does), then one headless Locust process with the demo's load (``--users 5``,
real-time pace, the clean corpus) for ``--minutes``, and samples that process's RSS every
``--sample-s`` seconds (psutil, from outside). The summary: RSS at minute ``--settle-min``
and at the end, the growth in between, and its slope (least squares, MB per minute).

``--tracemalloc`` also loads ``bench/locustfile_memory.py`` into the Locust process: Python's
own allocation tracer snapshots at the settle minute and at the end, and the 25 source lines
whose live memory grew most in between are printed — where a leak is, not only that it is.
(Tracing slows the process by about a third; its RSS figures then include the tracer's own.)

The result goes to ``bench/results/soak-harness.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench import common

MEMORY_LOCUSTFILE = common.REPO / "bench" / "locustfile_memory.py"


def run(minutes: float, users: int, sample_s: float, settle_min: float, tracemalloc: bool,
        stats_by: str = "utterance") -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="soak-harness-"))
    port = common.free_port()
    gateway = common.gateway_service(port, work)
    gateway.command = ["nice", "-n", "10", *gateway.command]
    gateway.start(timeout_s=120)
    locustfiles = "locustfiles/voice.py" + (f",{MEMORY_LOCUSTFILE}" if tracemalloc else "")
    env = common.python_env()
    top_path = work / "tracemalloc-top.json"
    if tracemalloc:
        env.update({"PYTHONTRACEMALLOC": "1", "VOICE_SOAK_TOP": str(top_path),
                    "VOICE_SOAK_SETTLE_S": str(settle_min * 60)})
    command = [common.LOCUST, "-f", locustfiles, "--host", f"ws://127.0.0.1:{port}", "--headless",
               "-u", str(users), "-r", str(users), "-t", f"{int(minutes * 60)}s", "--stop-timeout", "15",
               "--csv", str(work / "run"), "--only-summary", "--loglevel", "WARNING",
               "--exit-code-on-error", "0", "--stats-by", stats_by, "CorpusUser"]
    samples: list[tuple[float, float]] = []
    try:
        with open(work / "locust.log", "wb") as log:
            locust = common.start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        process = psutil.Process(locust.pid)
        started = time.monotonic()
        while locust.poll() is None:
            try:
                samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
            except psutil.Error:
                break
            time.sleep(sample_s)
        locust.wait()
    finally:
        gateway.stop()
    turns = 0
    if (work / "run_turns.csv").exists():
        with open(work / "run_turns.csv", encoding="utf-8") as file:
            turns = sum(1 for _ in file) - 1
    settled = [(t, rss) for t, rss in samples if t >= settle_min * 60]
    # The last samples fall in Locust's shutdown: leave out the stop-timeout's worth.
    running = [(t, rss) for t, rss in settled if t <= minutes * 60]
    summary: dict[str, object] = {"turns": turns, "samples": len(samples), "files": str(work)}
    if len(running) >= 2:
        times_min = np.array([t for t, _ in running]) / 60.0
        rss = np.array([r for _, r in running])
        slope = float(np.polyfit(times_min, rss, 1)[0])
        summary.update({
            "rss_at_settle_mb": round(float(rss[0]), 2),
            "rss_at_end_mb": round(float(rss[-1]), 2),
            "growth_after_settle_mb": round(float(rss[-1] - rss[0]), 2),
            "slope_mb_per_min": round(slope, 3),
            "max_mb": round(float(rss.max()), 2),
        })
    top = json.loads(top_path.read_text()) if top_path.exists() else []
    return {"machine": common.machine(), "minutes": minutes, "users": users, "settle_min": settle_min,
            "tracemalloc": tracemalloc, "stats_by": stats_by, "summary": summary, "rss_mb": samples, "tracemalloc_top": top}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=5, help="the demo's load by default")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--settle-min", type=float, default=5.0, help="growth is measured from this minute on")
    parser.add_argument("--tracemalloc", action="store_true", help="also print where the memory grew")
    parser.add_argument("--stats-by", choices=["utterance", "intent"], default="utterance",
                        help="how the Locust rows are named (the harness's --stats-by): Locust keeps per-second "
                             "counts and response-time copies per row")
    args = parser.parse_args(argv)
    if args.settle_min >= args.minutes:
        raise SystemExit("bench.soak_harness: --settle-min must be shorter than --minutes")
    result = run(args.minutes, args.users, args.sample_s, args.settle_min, args.tracemalloc, args.stats_by)
    name = "soak-harness" + ("-by-intent" if args.stats_by == "intent" else "") + ("-tracemalloc" if args.tracemalloc else "")
    path = common.write_result(name, result)
    summary = result["summary"]
    print(json.dumps(summary, indent=2))
    for entry in result["tracemalloc_top"]:
        print(f"{entry['size_diff_kb']:+9.1f} KB {entry['count_diff']:+7d} blocks  {entry['where']}")
    print(f"written: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0 if "slope_mb_per_min" in summary else 1


if __name__ == "__main__":
    sys.exit(main())
