"""Benchmark of the analysis: one million per-turn records, load + analyse, then the HTML report.

Generates synthetic turn records with numpy (the shape the harness writes: voiceharness.turns
COLUMNS), writes them as PREFIX_turns.csv, then times, each in a fresh measurement:

* load       readers.read_run (pandas' C parser, columnar)
* analyse    metrics.summarize (percentiles, bands, accuracy, confusion, diagnoses, lateness)
* html       report_html.render (six matplotlib plots + the page)
* cli        the whole ``python -m analysis PREFIX`` in a subprocess (all outputs)

The file is generated once; the four timings are taken ``--repeat`` times (default 1 here, 5
from ``python -m bench analysis``) and the result gives each one's median (the top-level
figures, which decide the goals) and its min-max (``spread``).

Goals: load + analyse < 10 s, HTML report < 30 s. Prints the numbers and writes them to
bench/results/analysis.json (--smoke: 10,000 records, written to bench/results/analysis-smoke.json,
so the CI test that runs it does not overwrite the real numbers).

    .venv/bin/python bench/bench_analysis.py --repeat 5  # 1,000,000 records
    .venv/bin/python bench/bench_analysis.py --smoke     # 10,000 records, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis import metrics, readers, report_html
from bench.common import machine, spread
from voiceharness.turns import COLUMNS, TURNS_SUFFIX, TurnRecord

GOAL_LOAD_ANALYSE_S = 10.0
GOAL_HTML_S = 30.0
UTTERANCES = [
    (f"{intent.lower()}_{words}_{accent}_160", intent)
    for intent, words in (
        ("GREETING", "hello_jarvis"),
        ("ECHO", "echo_hello_world"),
        ("TIME_NOW", "what_time_is_it"),
        ("WEATHER_SIMPLE", "how_is_the_weather"),
    )
    for accent in ("en-us", "en-gb", "en-in", "de-de", "ru-ru")
]
FAILURES = np.array(
    ["no_intent", "no_audio_tts", "recording_stopped", "connection_refused", "incomplete_reply"]
)


def synthetic_turns(n: int, seed: int = 1, users: int = 1000, workers: int = 8) -> pd.DataFrame:
    """``n`` turn records with realistic distributions, built column by column with numpy."""
    rng = np.random.default_rng(seed)
    utterance = rng.integers(0, len(UTTERANCES), n)
    utterance_ids = np.array([u for u, _ in UTTERANCES], dtype=object)
    expected = np.array([i for _, i in UTTERANCES], dtype=object)[utterance]
    wrong = rng.random(n) < 0.02
    intents = np.array(["GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN"], dtype=object)
    recognised = np.where(wrong, intents[rng.integers(0, 5, n)], expected)
    failed = rng.random(n) < 0.01
    failure = np.where(
        failed,
        FAILURES[rng.integers(0, len(FAILURES), n)],
        np.where(recognised != expected, "wrong_intent", ""),
    )
    recognised = np.where(failure == "no_intent", "", recognised)
    roundtrip = rng.lognormal(np.log(220), 0.55, n)
    roundtrip[failed] = np.nan
    user = rng.integers(0, users, n)
    lateness = rng.gamma(2.0, 0.6, n)
    columns = {
        "timestamp": 1_700_000_000 + np.sort(rng.random(n)) * 600.0,
        "worker": np.array([f"loadgen-{w}:{4000 + w}" for w in range(workers)], dtype=object)[user % workers],
        "user": user,
        "connection_id": np.char.add("c", (user * 7 + 3).astype(str)),
        "turn_index": rng.integers(0, 50, n),
        "scenario": "basic",
        "utterance_id": utterance_ids[utterance],
        "expected_intent": expected,
        "intent": recognised,
        "confidence": np.round(rng.uniform(0.5, 1.0, n), 3),
        "transcript": "hello, jarvis",
        "success": (failure == "").astype(int),
        "failure": failure,
        "failure_detail": "",
        "close_code": np.nan,
        "connect_ms": np.round(rng.uniform(1, 30, n), 3),
        "roundtrip_ms": np.round(roundtrip, 3),
        "intent_ms": np.round(roundtrip * 0.6, 3),
        "reply_ms": np.round(roundtrip + 1200, 3),
        "ping_ms": np.round(rng.lognormal(np.log(35), 0.6, n), 3),
        "speech_ms": 1600.0,
        "chunks_sent": rng.integers(30, 260, n),
        "chunks_received": rng.integers(10, 60, n),
        "reply_audio_bytes": 64000,
        "reply_complete": (~failed).astype(int),
        "reconnections": np.minimum(rng.poisson(0.2, n), 12),
        "send_lateness_max_ms": np.round(lateness * 2.5, 3),
        "uplink_backlog_ms": np.where(rng.random(n) < 0.02, 64.031, 0.0),  # a link that keeps up
        "pace": np.where(rng.random(n) < 0.05, "fast", "realtime"),  # the performance scenario mixed in
        "turn_ms": np.round(roundtrip + 1250, 3),
        "dialect": "reference",
        "reply_format": np.where(failed, "", "metadata+pcm"),
        "intent_source": np.where(recognised == "", "", "metadata"),
        "audio_intent": "",
        "reply_transcript": "",
        "reply_text": "",
        "audible_ms": np.round(roundtrip + rng.uniform(20, 80, n), 3),
        "reply_audio_ms": np.where(failed, np.nan, np.round(rng.uniform(900, 2500, n), 3)),
        "reply_sample_rate_hz": np.where(failed, 0, 16000),
        "playback_stalls": np.where(failed, np.nan, (rng.random(n) < 0.01).astype(float)),
    }
    # A column added to the record later than this list gets the record's own default.
    defaults = TurnRecord()
    return pd.DataFrame({name: columns[name] if name in columns else getattr(defaults, name) for name in COLUMNS})


def write_turns(prefix: str, n: int, seed: int = 1) -> tuple[str, float]:
    started = time.perf_counter()
    path = prefix + TURNS_SUFFIX
    synthetic_turns(n, seed).to_csv(path, index=False, na_rep="", float_format="%.3f")
    return path, time.perf_counter() - started


def _timed(prefix: str, workdir: str) -> dict:
    """One measurement of the four steps on an existing turns file."""
    started = time.perf_counter()
    run = readers.read_run(prefix, progress="never")
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = metrics.summarize(run)
    analyse_s = time.perf_counter() - started
    started = time.perf_counter()
    page = report_html.render([(run, summary)])
    html_s = time.perf_counter() - started
    started = time.perf_counter()
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            prefix,
            "--quiet",
            "--progress",
            "never",
            "--out-dir",
            os.path.join(workdir, "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    cli_s = time.perf_counter() - started
    if cli.returncode != 0:
        raise SystemExit(f"bench: the command line failed ({cli.returncode}): {cli.stderr.strip()}")
    return {
        "load_s": load_s,
        "analyse_s": analyse_s,
        "load_analyse_s": load_s + analyse_s,
        "html_s": html_s,
        "cli_total_s": cli_s,
        "html_kb": round(len(page) / 1e3, 1),
        "roundtrip_p95_ms": summary.metrics["roundtrip"].percentiles.p95,
        "intent_accuracy": summary.intent.accuracy,
    }


TIMINGS = ("load_s", "analyse_s", "load_analyse_s", "html_s", "cli_total_s")


def bench(records: int, workdir: str, repeat: int = 1) -> dict:
    machine_at_start = machine()
    prefix = os.path.join(workdir, "bench")
    path, generate_s = write_turns(prefix, records)
    size = os.path.getsize(path)
    measurements = [_timed(prefix, workdir) for _ in range(repeat)]
    spreads = {key: spread(m[key] for m in measurements) for key in TIMINGS}
    median = {key: round(spreads[key]["median"], 3) for key in TIMINGS}
    return {
        "records": records,
        "turns_file_mb": round(size / 1e6, 1),
        "generate_s": round(generate_s, 3),
        **median,
        "repeat": repeat,
        "spread": spreads,
        "html_kb": measurements[0]["html_kb"],
        "goal_load_analyse_s": GOAL_LOAD_ANALYSE_S,
        "goal_html_s": GOAL_HTML_S,
        # the goals are judged on the medians; the every-repeat flags say whether each repeat held too
        "load_analyse_ok": median["load_analyse_s"] < GOAL_LOAD_ANALYSE_S,
        "html_ok": median["html_s"] < GOAL_HTML_S,
        "load_analyse_ok_every_repeat": spreads["load_analyse_s"]["max"] < GOAL_LOAD_ANALYSE_S,
        "html_ok_every_repeat": spreads["html_s"]["max"] < GOAL_HTML_S,
        "roundtrip_p95_ms": measurements[0]["roundtrip_p95_ms"],
        "intent_accuracy": measurements[0]["intent_accuracy"],
        "machine": machine_at_start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="10,000 records, for CI")
    parser.add_argument("--output", help="where the JSON goes (default bench/results/analysis[-smoke].json)")
    parser.add_argument("--repeat", type=int, default=1, help="timings taken this many times (median and min-max)")
    parser.add_argument("--note", default="", help="a line shown above the table in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    records = 10_000 if args.smoke else args.records
    output = args.output or str(
        REPO / "bench" / "results" / ("analysis-smoke.json" if args.smoke else "analysis.json")
    )
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as workdir:
        result = bench(records, workdir, args.repeat)
    result["command"] = "python -m bench analysis" + (f" --repeat {args.repeat}" if args.repeat != 1 else "")
    if args.note:
        result["note"] = args.note
    for key in (
        "records",
        "turns_file_mb",
        "generate_s",
        "load_s",
        "analyse_s",
        "load_analyse_s",
        "html_s",
        "cli_total_s",
    ):
        print(f"{key:>16}: {result[key]}")
    print(
        f"load+analyse {'under' if result['load_analyse_ok'] else 'OVER'} the {GOAL_LOAD_ANALYSE_S:g} s goal; "
        f"HTML {'under' if result['html_ok'] else 'OVER'} the {GOAL_HTML_S:g} s goal"
    )
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as file:
        json.dump(result, file, indent=2)
        file.write("\n")
    print(f"wrote {output}")
    return 0 if result["load_analyse_ok"] and result["html_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
