"""Truth of the measurement: the harness's roundtrip and ping against ground truth taken at the other end.

The system under test is ``bench/sink.py`` in its truth mode (``--speech-ends GREETING
--turns PATH``): for every turn it stamps when it read the frame that holds the last speech
sample and when it wrote its reply (``--delay-ms D`` after the end marker), on
``time.monotonic()`` — CLOCK_MONOTONIC, one clock for every process on the machine. The
harness measures roundtrip from handing that same frame to its socket to reading the first
reply audio frame, so

    harness error = reported roundtrip - (reply written - speech end read)      [sink]

is *measured*: what is left is the harness's own delay in stamping the frame it sent and the
reply it read, plus loopback transit (tens of µs). Turns are matched by the connection's
session id (the sink reads it from the header) and their order on the connection; the sink
also names the utterance it recognised, and a pair whose utterances differ is dropped and
counted. How the sink tells the speech-end frame: see ``bench/sink.py``.

The old ground truth is kept as a cross-check column: a model that assumes the client sent
on its schedule — the end marker when the last frame's audio is over, one frame period
after that frame — and the sink answered in exactly D,

    model roundtrip = (frames - speech_end_frame) x 64 ms + D (+ 2d through the proxy).

(Until the harness's rewrite the marker went right after the last frame and the model had
``frames - 1``; when that changed, the model was off by exactly one frame, 64 ms, while the
error against the sink's stamps did not move: the reason to measure rather than assume.)

Through ``bench/delay_proxy.py`` (one-way delay d each way) the truth is the sink's
turnaround plus the network: against the NOMINAL delay (+ 2d) and against the delay the
proxy MEASURED it added (+ 2d + how late its own writes were, each way). Ping, which the
sink answers at once, is judged against the same two.

Runs at 10, 100 and 500 concurrent users (the harness's own VoiceUser with its think time),
for D = 0, 50, 200 ms directly and D = 50 ms through the proxy with d = 25 ms, each
``--repeat`` times (default 5; repeats interleaved); the summary gives the median and
min-max over the repeats. Each run also says whether the load generator kept up (send
lateness, CPU). Last, the same turns' exact percentiles are set against Locust's bucketed
ones from ``_stats.csv``.
"""

from __future__ import annotations

import csv
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from audio_corpus import load_corpus
from bench import common
from voiceharness import guide
from voiceharness.lateness import window_summary

FULL_N = (10, 100, 500)
FULL_DELAYS_MS = (0.0, 50.0, 200.0)
PROXY_ONE_WAY_MS = 25.0
PROXY_GATEWAY_DELAY_MS = 50.0
WARMUP_S = 3.0
GOAL_P50_MS = 2.0
GOAL_P99_MS = 5.0
DEFINITION = (f"|harness error| <= {GOAL_P50_MS:g} ms at p50 and <= {GOAL_P99_MS:g} ms at p99, error = reported "
              "roundtrip - (sink's reply written - sink's speech end read) [- the network through the proxy], over the "
              "turns after ramp + 3 s; through the proxy judged twice: against its nominal delay 2d and against 2d plus "
              "the lateness it measured of its own writes. Met = every row at the largest N within both bounds, "
              "on the median of the repeats")


def gap_ms_by_utterance() -> dict[str, float]:
    """Time from the end-of-speech frame to the end marker of each utterance, if sent on schedule (the model)."""
    chunk = guide.CHUNK_SAMPLES
    return {u.id: (u.frame_count(chunk) - u.speech_end_frame(chunk)) * guide.CHUNK_MS
            for u in load_corpus(select="GREETING")}


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _locust_percentiles(stats_csv: Path, request_type: str) -> dict[str, float]:
    if not stats_csv.exists():
        return {}
    with open(stats_csv, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row["Type"] == request_type:
                return {key: float(row[col]) for key, col in
                        (("p50_ms", "50%"), ("p90_ms", "90%"), ("p99_ms", "99%"), ("max_ms", "Max Response Time"),
                         ("count", "Request Count"))}
    return {}


def _pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def proxy_late_ms(stats_path: Path | None, first_second: int, last_second: int) -> dict[str, float]:
    """Mean ms the proxy wrote each direction's chunks after their due time, over whole seconds [first, last]."""
    late = {"up": 0.0, "down": 0.0}
    if stats_path is None or not stats_path.exists():
        return late
    stats = common.read_json(stats_path)
    for direction in late:
        rows = [row for second, row in stats.get(direction, {}).items() if first_second <= int(second) <= last_second]
        chunks = sum(row[0] for row in rows)
        late[direction] = sum(row[1] for row in rows) / chunks if chunks else math.nan
    return late


def match_turns(harness_turns: list[dict[str, str]], sink_turns: list[dict[str, str]]) -> tuple[list[tuple[dict, dict]], int]:
    """Pairs (harness turn, sink turn): the k-th turn that streamed on a connection with the sink's
    k-th turn on the session of the same id. Give every turn of the run (the order counts from
    a connection's first turn). Returns the pairs and how many were dropped because the two
    sides named different utterances (a turn the sink never saw would shift the order)."""
    by_session: dict[str, dict[int, dict[str, str]]] = {}
    for row in sink_turns:
        by_session.setdefault(row["session_id"], {})[int(row["turn"])] = row
    pairs, mismatched = [], 0
    ordinal: dict[str, int] = {}
    for turn in sorted(harness_turns, key=lambda t: (t["connection_id"], int(t["turn_index"]))):
        if not turn["chunks_sent"] or int(turn["chunks_sent"]) == 0:
            continue
        connection = turn["connection_id"]
        k = ordinal.get(connection, 0)
        ordinal[connection] = k + 1
        sink = by_session.get(connection, {}).get(k)
        if sink is None or not turn["roundtrip_ms"]:
            continue
        if sink["utterance_id"] != turn["utterance_id"]:
            mismatched += 1
            continue
        pairs.append((turn, sink))
    return pairs, mismatched


def run_one(n: int, port: int, sink_pid: int, delay_ms: float, one_way_ms: float, duration_s: float,
            workdir: Path, gaps: dict[str, float], sink_turns_path: Path, think_time: tuple[str, ...] = (),
            proxy_stats: Path | None = None, attempt: int = 0) -> dict:
    prefix = workdir / f"truth-{n}-{delay_ms:g}-{one_way_ms:g}-{attempt}"
    pacer_stats = Path(f"{prefix}-pacer.json")
    ramp_s = max(1.0, n / 250)
    command = [
        common.LOCUST, "-f", str(common.REPO / "locustfiles" / "voice.py"), "--host", f"ws://127.0.0.1:{port}",
        "--headless", "-u", str(n), "-r", str(n / ramp_s), "-t", f"{int(ramp_s + duration_s)}s",
        "--csv", str(prefix), "--only-summary", "--tags", "corpus", "--utterances", "GREETING",
        "--stats-by", "intent", "--loglevel", "WARNING", *think_time,
    ]
    env = {**common.python_env(), "VOICE_PACER_STATS": str(pacer_stats)}
    with open(f"{prefix}.log", "wb") as log:
        process = common.start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = common.Sampler([process.pid, sink_pid]).start()
        try:
            returncode = process.wait(timeout=ramp_s + duration_s + 120)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
        sampler.stop()
    time.sleep(1.2)  # the sink (and the proxy) write their figures once a second
    turns = _read_csv(Path(f"{prefix}_turns.csv"))
    result: dict = {"n": n, "gateway_delay_ms": delay_ms, "one_way_delay_ms": one_way_ms, "attempt": attempt,
                    "returncode": returncode, "turns": len(turns)}
    if not turns:
        result["log_tail"] = Path(f"{prefix}.log").read_text(errors="replace")[-1500:]
        return result
    first = min(float(t["timestamp"]) for t in turns)
    steady = [t for t in turns if float(t["timestamp"]) >= first + ramp_s + WARMUP_S and t["success"] == "1"]
    sessions = {t["connection_id"] for t in turns}
    steady_ids = {id(t) for t in steady if t["roundtrip_ms"]}
    # The sink appends its rows once a second, on its own loop: wait (a little) until it has
    # written a row for every steady turn, so a busy machine does not leave the last ones unmatched.
    deadline = time.monotonic() + 10.0
    while True:
        sink_turns = [row for row in _read_csv(sink_turns_path) if row["session_id"] in sessions]
        pairs, mismatched = match_turns(turns, sink_turns)
        pairs = [(t, s) for t, s in pairs if id(t) in steady_ids]
        if len(pairs) + mismatched >= len(steady_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    # The sink's own view of each turn: reply written - speech end read, and what D really was.
    sink_ms = np.array([(float(s["reply_written_s"]) - float(s["speech_end_read_s"])) * 1000 for _t, s in pairs])
    sink_delay_ms = np.array([(float(s["reply_written_s"]) - float(s["marker_read_s"])) * 1000 for _t, s in pairs])
    reported = np.array([float(t["roundtrip_ms"]) for t, _s in pairs])
    model = np.array([float(t["roundtrip_ms"]) - (gaps[t["utterance_id"]] + delay_ms + 2 * one_way_ms)
                      for t in steady if t["roundtrip_ms"]])
    pings = np.array([float(t["ping_ms"]) - 2 * one_way_ms for t in steady if t["ping_ms"]])
    all_roundtrips = np.array([float(t["roundtrip_ms"]) for t in turns if t["roundtrip_ms"]])
    all_pings = np.array([float(t["ping_ms"]) for t in turns if t["ping_ms"]])
    failures = sum(1 for t in turns if t["failure"] and t["failure"] != "run_stopped")
    lateness = whole_run = {}
    proxy_late = {"up": 0.0, "down": 0.0}
    if pacer_stats.exists():
        stats = common.read_json(pacer_stats)
        seconds = sorted(int(s) for s in stats["seconds"])
        whole_run = window_summary(stats, seconds[0], seconds[-1])
        # The verdict covers the turns the errors come from: after the ramp and warm-up, as in capacity.
        steady_first = seconds[0] + math.ceil(ramp_s + WARMUP_S)
        lateness = window_summary(stats, steady_first, seconds[-1]) if steady_first < seconds[-1] else whole_run
        if proxy_stats is not None:
            proxy_late = proxy_late_ms(proxy_stats, min(steady_first, seconds[-1]), seconds[-1])
    proxy_extra_ms = proxy_late["up"] + proxy_late["down"]
    errors_nominal = reported - sink_ms - 2 * one_way_ms
    errors_measured = errors_nominal - proxy_extra_ms
    cpu = sampler.window(time.monotonic() - duration_s - 30, time.monotonic())
    client_cpu = cpu["tree_cpu_s"].get(process.pid, math.nan) / cpu["seconds"] * 100 if cpu["seconds"] else math.nan
    saturated = bool(lateness and lateness["p99_ms"] > common.SATURATED_P99_MS) or client_cpu > common.SATURATED_CPU_PERCENT
    result.update({
        "steady_turns": len(steady),
        "matched_turns": len(pairs),
        "mismatched_turns": mismatched,
        "failed_turns": failures,
        # against the sink's own timestamps (+ 2d nominal through the proxy)
        "roundtrip_error_p50_ms": _pct(errors_nominal, 50),
        "roundtrip_error_p99_ms": _pct(errors_nominal, 99),
        "roundtrip_error_min_ms": float(errors_nominal.min()) if len(errors_nominal) else math.nan,
        # the same, + the proxy's measured lateness (identical without the proxy)
        "roundtrip_error_vs_measured_p50_ms": _pct(errors_measured, 50),
        "roundtrip_error_vs_measured_p99_ms": _pct(errors_measured, 99),
        # the old model (client on time, sink answers in exactly D): a cross-check
        "roundtrip_error_model_p50_ms": _pct(model, 50),
        "roundtrip_error_model_p99_ms": _pct(model, 99),
        "sink_delay_p50_ms": _pct(sink_delay_ms, 50),
        "sink_delay_p99_ms": _pct(sink_delay_ms, 99),
        "ping_error_p50_ms": _pct(pings, 50),
        "ping_error_p99_ms": _pct(pings, 99),
        "proxy_late_up_ms": proxy_late["up"],
        "proxy_late_down_ms": proxy_late["down"],
        "ping_error_vs_measured_p50_ms": _pct(pings - proxy_extra_ms, 50),
        "ping_error_vs_measured_p99_ms": _pct(pings - proxy_extra_ms, 99),
        "send_lateness_p50_ms": lateness.get("p50_ms", math.nan),
        "send_lateness_p99_ms": lateness.get("p99_ms", math.nan),
        "send_lateness_max_ms": lateness.get("max_ms", math.nan),
        "send_lateness_whole_run_p99_ms": whole_run.get("p99_ms", math.nan),
        "client_cpu_percent": client_cpu,
        "gateway_cpu_percent": cpu["cpu_percent"].get(sink_pid, math.nan),
        "others_cpu_percent": cpu["others_cpu_percent"],
        "saturated": saturated,
        "verdict": common.SATURATED_WARNING if saturated else "kept up",
        "locust_vs_exact": {
            "roundtrip": {"locust": _locust_percentiles(Path(f"{prefix}_stats.csv"), "roundtrip"),
                          "exact": {"p50_ms": _pct(all_roundtrips, 50), "p90_ms": _pct(all_roundtrips, 90),
                                    "p99_ms": _pct(all_roundtrips, 99),
                                    "max_ms": float(all_roundtrips.max()) if len(all_roundtrips) else math.nan,
                                    "count": len(all_roundtrips)}},
            "ping": {"locust": _locust_percentiles(Path(f"{prefix}_stats.csv"), "ping"),
                     "exact_turn_samples": {"p50_ms": _pct(all_pings, 50), "p99_ms": _pct(all_pings, 99)}},
        },
    })
    result["goal_met_vs_nominal"] = _within(result["roundtrip_error_p50_ms"], result["roundtrip_error_p99_ms"])
    result["goal_met"] = _within(result["roundtrip_error_vs_measured_p50_ms"], result["roundtrip_error_vs_measured_p99_ms"])
    return result


def _within(p50: float, p99: float) -> bool:
    return bool(abs(p50) <= GOAL_P50_MS and abs(p99) <= GOAL_P99_MS)


FIGURES = ("roundtrip_error_p50_ms", "roundtrip_error_p99_ms", "roundtrip_error_vs_measured_p50_ms",
           "roundtrip_error_vs_measured_p99_ms", "roundtrip_error_model_p50_ms", "roundtrip_error_model_p99_ms",
           "sink_delay_p50_ms", "ping_error_p50_ms", "ping_error_p99_ms", "ping_error_vs_measured_p50_ms",
           "proxy_late_up_ms", "proxy_late_down_ms", "send_lateness_p50_ms", "send_lateness_p99_ms",
           "client_cpu_percent", "gateway_cpu_percent", "others_cpu_percent", "matched_turns", "steady_turns",
           "mismatched_turns")


def summarize(runs: list[dict]) -> dict:
    """Per (N, D, d): median and min-max of every figure over the repeats, and the goal."""
    groups: dict[tuple[int, float, float], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["n"], r["gateway_delay_ms"], r["one_way_delay_ms"]), []).append(r)
    rows = []
    for (n, delay, one_way), group in groups.items():
        measured = [r for r in group if "roundtrip_error_p50_ms" in r]
        row: dict = {"n": n, "gateway_delay_ms": delay, "one_way_delay_ms": one_way, "repeats": len(group),
                     "measured": len(measured), "saturated_repeats": sum(1 for r in measured if r["saturated"])}
        for key in FIGURES:
            row[key] = common.spread(r.get(key, math.nan) for r in measured)
        row["goal_met"] = bool(measured) and _within(row["roundtrip_error_vs_measured_p50_ms"]["median"],
                                                     row["roundtrip_error_vs_measured_p99_ms"]["median"])
        row["goal_met_vs_nominal"] = bool(measured) and _within(row["roundtrip_error_p50_ms"]["median"],
                                                                row["roundtrip_error_p99_ms"]["median"])
        row["goal_met_repeats"] = sum(1 for r in measured if r["goal_met"] and r["goal_met_vs_nominal"])
        rows.append(row)
    largest = max((row["n"] for row in rows), default=0)
    at_max = [row for row in rows if row["n"] == largest]
    return {
        "per_config": rows,
        "n": largest,
        "goal": DEFINITION,
        "goal_met_at_max_n": bool(at_max) and all(row["goal_met"] for row in at_max),
        "goal_met_at_max_n_vs_nominal": bool(at_max) and all(row["goal_met_vs_nominal"] for row in at_max),
        "goal_met_every_repeat": bool(at_max) and all(row["goal_met_repeats"] == row["repeats"] for row in at_max),
        "saturated_runs": [f"N={r['n']} D={r['gateway_delay_ms']:g} d={r['one_way_delay_ms']:g} #{r['attempt'] + 1}"
                           for r in runs if r.get("saturated")],
    }


def run(*, smoke: bool = False, duration_s: float | None = None, repeat: int = 1) -> dict:
    ns = (5,) if smoke else FULL_N
    delays = (0.0, 50.0) if smoke else FULL_DELAYS_MS
    one_way = 10.0 if smoke else PROXY_ONE_WAY_MS
    duration_s = duration_s or (6.0 if smoke else 15.0)
    # A smoke run's steady window is 3 s: at the default 1-3 s think time 5 users may start no
    # turn in it. The smoke checks the pipeline, so its users pause briefly.
    think_time = ("--think-time-ms", "100-300") if smoke else ()
    gaps = gap_ms_by_utterance()
    proxy_delay_ms = 50.0 if smoke else PROXY_GATEWAY_DELAY_MS
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-truth-") as tmp:
        workdir = Path(tmp)
        services: list[common.Service] = []
        try:
            # One sink per delay D (its turns file covers every run against it: turns are told apart by
            # session id), and the proxy in front of the D = 50 ms one's twin.
            targets = []
            for delay_ms in (*delays, proxy_delay_ms):
                port = common.free_port()
                turns_path = workdir / f"sink-{len(targets)}-turns.csv"
                sink = common.sink_service(port, workdir, delay_ms=delay_ms, speech_ends="GREETING", turns=turns_path)
                services.append(sink.start())
                targets.append((delay_ms, port, sink, turns_path))
            proxy_port = common.free_port()
            proxy_stats = workdir / "proxy-late.json"
            proxy = common.proxy_service(proxy_port, targets[-1][1], one_way, workdir, stats=proxy_stats)
            services.append(proxy.start())
            plan = [(delay_ms, 0.0, port, sink, turns_path, None) for delay_ms, port, sink, turns_path in targets[:-1]]
            plan.append((proxy_delay_ms, one_way, proxy_port, targets[-1][2], targets[-1][3], proxy_stats))
            for attempt in range(repeat):
                for delay_ms, d_ms, port, sink, turns_path, stats in plan:
                    for n in ns:
                        result = run_one(n, port, sink.pid, delay_ms, d_ms, duration_s, workdir, gaps, turns_path,
                                         think_time, proxy_stats=stats, attempt=attempt)
                        runs.append(result)
                        print(_line(result), flush=True)
        finally:
            for service in reversed(services):
                service.stop()
    return {
        "benchmark": "truth",
        "smoke": smoke,
        "machine": common.machine(),
        "system_under_test": "bench/sink.py --speech-ends GREETING (stamps speech end read and reply written)",
        "ground_truth": ("sink: reply written - speech end read, on the sink's CLOCK_MONOTONIC (+ 2d nominal, or + 2d + "
                         "the proxy's measured lateness, through bench/delay_proxy.py); model cross-check: (frames - "
                         "speech_end_frame) x 64 ms + D + 2d"),
        "duration_s": duration_s,
        "repeat": repeat,
        "runs": runs,
        "summary": summarize(runs),
    }


def _line(r: dict) -> str:
    name = f"truth N={r['n']:<4} D={r['gateway_delay_ms']:<4g} d={r['one_way_delay_ms']:<3g} #{r['attempt'] + 1}"
    if "roundtrip_error_p50_ms" not in r:
        return f"{name} FAILED {r.get('log_tail', '')[-300:]}"
    return (f"{name} turns {r['matched_turns']:>5}/{r['steady_turns']:<5} error vs sink p50 "
            f"{r['roundtrip_error_p50_ms']:+.2f} p99 {r['roundtrip_error_p99_ms']:+.2f} ms"
            + (f" (vs measured proxy delay p50 {r['roundtrip_error_vs_measured_p50_ms']:+.2f} "
               f"p99 {r['roundtrip_error_vs_measured_p99_ms']:+.2f}, proxy late "
               f"{r['proxy_late_up_ms']:.2f}+{r['proxy_late_down_ms']:.2f})" if r["one_way_delay_ms"] else "")
            + f"; model p50 {r['roundtrip_error_model_p50_ms']:+.2f}; sink D p50 {r['sink_delay_p50_ms']:.2f}; "
            f"ping error p50 {r['ping_error_p50_ms']:+.2f}; send lateness p99 {r['send_lateness_p99_ms']:.1f} ms, "
            f"cpu {r['client_cpu_percent']:.0f}%, sink {r['gateway_cpu_percent']:.0f}%, "
            f"others {r['others_cpu_percent']:.0f}% - {r['verdict']}")
