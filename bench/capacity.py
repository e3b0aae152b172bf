"""Capacity of a load generator: how many real-time voices it drives, how well, at what cost.

For each N (real-time streams of 2048-byte frames every 64 ms, turns back to back) and each
client, against the same sink (``bench/sink.py``, its own process), every client doing the
same work per stream — the same corpus frames, the end marker, the sink's reply read and
parsed (metadata, audio, ``reply_end``) before the next turn, a ping every 3 s, each turn's
roundtrip timed:

* ``harness``        the harness itself — ``locust --headless`` running
                     ``bench/locustfile_capacity.py`` (VoiceUser, turns back to back) on one
                     process, or with ``--processes P`` on P forked Locust workers;
* ``asyncio_fair``   the best asyncio design: one ``call_at`` scheduler writing pre-framed,
                     pre-masked frames with ``transport.write`` (``bench/baseline_asyncio_fair.py``);
* ``asyncio_naive``  what most people write: a ``websockets`` task per stream, a sleep per
                     frame, the library framing and masking (``bench/baseline_asyncio_naive.py``);
* ``raw``            the upper bound: bare sockets and one selector loop (``bench/baseline_raw.py``);
* on request, ``harness_gc_cpython`` (``VOICE_COLLECTOR=cpython``: the harness with CPython's
  collector schedule).

Figures per run, over the steady window (after the ramp and a 3 s warm-up, reported apart):
frames/s achieved vs due (N x 15.625), send lateness p50/p99/max (every frame, 0.1 ms
histograms), CPU of the client's processes (% of one core, and per process), frames per
CPU-second, RSS and USS per user, the sink's CPU, how busy the rest of the machine was.
Each (N, client) runs ``--repeat`` times (default 5 for a full run), repeats interleaved
(repeat 1 of every N and client, then repeat 2, ...) so a busy spell of the shared machine
does not land on one client; the summary gives the median and min-max.

The definition that decides "met" at N (issue 15 item 8, issue 17): p99 send lateness
<= 5 ms AND every due frame sent (no turn failed; frames/s >= 99 % of N x 15.625, as the
streams wait for each reply) AND CPU <= 70 % of a core (with several processes: every
process within its own core's 70 %).
"""

from __future__ import annotations

import csv
import math
import subprocess
import tempfile
import time
from pathlib import Path

from bench import common
from voiceharness import guide
from voiceharness.lateness import merge, window_summary

FRAMES_PER_S = guide.SAMPLE_RATE_HZ / guide.CHUNK_SAMPLES  # 15.625 per stream
CLIENTS = ("harness", "asyncio_fair", "asyncio_naive", "raw")
EXTRA_CLIENTS = ("harness_gc_cpython",)
FULL_N = (1000, 2000, 3000, 4000)
PROCESSES_N = (2000, 3000, 4000, 5000, 6000)  # python -m bench processes: 1 and 2 Locust processes
SMOKE_N = (20,)
WARMUP_S = 3.0
GOAL_P99_MS = common.SATURATED_P99_MS  # 5 ms
GOAL_CPU_PERCENT = common.SATURATED_CPU_PERCENT  # 70 % of one core
# Every due frame sent. Between two turns a stream waits for the reply (the sink answers at
# once: a few ms per 1-2 s turn), so a client on schedule sends 99.5-99.9 % of N x 15.625;
# a client that falls behind or loses streams drops below 99 % (and a lost stream also fails
# a turn, which the definition checks on its own).
GOAL_ACHIEVED_RATIO = 0.99
GOAL_KB_PER_USER = 64.0
GOAL_MEMORY_N = 3000
GOAL_PROCESSES_SCALING = 1.7
SINK_SATURATED_CPU_PERCENT = 85.0


def label(client: str, processes: int) -> str:
    return client if processes <= 1 else f"{client} x{processes} processes"


def _client_command(client: str, n: int, port: int, duration_s: float, ramp_s: float, prefix: Path,
                    stats: Path, processes: int) -> tuple[list[str], dict[str, str]]:
    env = common.python_env()
    url = f"ws://127.0.0.1:{port}"
    if client.startswith("harness"):
        command = [
            common.LOCUST, "-f", str(common.REPO / "bench" / "locustfile_capacity.py"), "--host", url,
            "--headless", "-u", str(n), "-r", str(max(1.0, n / ramp_s)), "-t", f"{int(ramp_s + duration_s)}s",
            "--csv", str(prefix), "--only-summary", "--utterances", "GREETING", "--stats-by", "intent",
            "--loglevel", "WARNING",
        ]
        if processes > 1:
            command += ["--processes", str(processes)]
        # bench/locustfile_capacity.py puts each process's pid in the place of {pid}.
        env["VOICE_PACER_STATS"] = str(stats).replace(".json", "-{pid}.json")
        if client == "harness_gc_cpython":
            env["VOICE_COLLECTOR"] = "cpython"
        return command, env
    common_args = ["--streams", str(n), "--duration-s", str(duration_s), "--ramp-s", str(ramp_s), "--stats", str(stats)]
    if client == "asyncio_naive":
        return [common.PYTHON, "-m", "bench.baseline_asyncio_naive", "--url", url + guide.WS_PATH_GATEWAY,
                *common_args], env
    module = "bench.baseline_asyncio_fair" if client == "asyncio_fair" else "bench.baseline_raw"
    return [common.PYTHON, "-m", module, "--port", str(port), *common_args], env


def merge_stats(documents: list[dict]) -> dict:
    """One lateness document (``LatenessStats.to_json`` shape) from several processes' documents."""
    seconds: dict[str, dict] = {}
    for document in documents:
        for second, row in document["seconds"].items():
            into = seconds.setdefault(second, {"frames": 0, "max_ms": 0.0, "hists": []})
            into["frames"] += row["frames"]
            into["max_ms"] = max(into["max_ms"], row["max_ms"])
            into["hists"].append(row["hist"])
    for row in seconds.values():
        dense = merge(row.pop("hists"))
        row["hist"] = {str(i): v for i, v in enumerate(dense) if v}
    merged: dict = {"seconds": seconds}
    for key in ("streams_max", "slow_streams", "errors", "turns", "connected", "blocked_sends", "buffered_markers"):
        values = [d[key] for d in documents if isinstance(d.get(key), int | float)]
        if values:
            merged[key] = sum(values)
    for key in ("roundtrip_p50_ms", "roundtrip_p99_ms", "ping_p50_ms", "collector"):
        if len(documents) == 1 and key in documents[0]:
            merged[key] = documents[0][key]
    return merged


def _turns_file(turns_path: Path) -> dict[str, object]:
    """Turns ended (not cut by the end of the run), failed turns and the exact roundtrip p50 from the
    harness's turns file: the baselines count the turns whose reply ended, so the harness's cut turns are left out."""
    turns = failures = 0
    roundtrips: list[float] = []
    if turns_path.exists():
        with open(turns_path, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                if row["failure"] == "run_stopped":
                    continue
                turns += 1
                if row["failure"]:
                    failures += 1
                if row.get("roundtrip_ms"):
                    roundtrips.append(float(row["roundtrip_ms"]))
    roundtrips.sort()
    return {"turns": turns, "failed_turns": failures,
            "roundtrip_p50_ms": roundtrips[len(roundtrips) // 2] if roundtrips else math.nan}


def _verdict(result: dict) -> tuple[bool, str]:
    """The strict capacity definition: (met, what failed)."""
    problems = []
    if not result["lateness_p99_ms"] <= GOAL_P99_MS:
        problems.append(f"p99 {result['lateness_p99_ms']:.1f} ms > {GOAL_P99_MS:g}")
    if not result["achieved_ratio"] >= GOAL_ACHIEVED_RATIO:
        problems.append(f"sent {100 * result['achieved_ratio']:.1f} % of N x 15.625 frames/s")
    if result.get("failed_turns"):
        problems.append(f"{result['failed_turns']} turns failed (streams lost)")
    if not result["cpu_percent_max_process"] <= GOAL_CPU_PERCENT:
        problems.append(f"CPU {result['cpu_percent_max_process']:.0f} % of a core > {GOAL_CPU_PERCENT:g}")
    if result.get("missing_processes"):
        problems.append(f"{result['missing_processes']} process(es) reported nothing")
    return not problems, "; ".join(problems)


def run_one(client: str, n: int, port: int, sink_pid: int, duration_s: float, ramp_s: float, workdir: Path,
            processes: int = 1, attempt: int = 0) -> dict:
    tag = f"{client}-{processes}p-{n}-{attempt}"
    prefix = workdir / tag
    stats_path = workdir / f"{tag}-lateness.json"
    command, env = _client_command(client, n, port, duration_s, ramp_s, prefix, stats_path, processes)
    log_path = workdir / f"{tag}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = common.start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = common.Sampler([process.pid, sink_pid]).start()
        try:
            returncode = process.wait(timeout=ramp_s + duration_s + 180)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
        sampler.stop()
    result: dict = {"client": client, "label": label(client, processes), "n": n, "processes": processes,
                    "attempt": attempt, "returncode": returncode, "log_tail": ""}
    if client.startswith("harness"):
        paths = sorted(workdir.glob(f"{tag}-lateness-*.json"))
    else:
        paths = [stats_path] if stats_path.exists() else []
    documents = [common.read_json(p) for p in paths]
    documents = [d for d in documents if d.get("seconds")]
    # With --processes P the master sends no audio: P workers should each have written their file.
    result["processes_reported"] = len(documents)
    result["missing_processes"] = max(0, processes - len(documents))
    if not documents:
        result["log_tail"] = log_path.read_text(errors="replace")[-1500:]
        return result
    stats = merge_stats(documents)
    seconds = sorted(int(s) for s in stats["seconds"])
    due_per_s = n * FRAMES_PER_S
    frames_by_second = {int(s): row["frames"] for s, row in stats["seconds"].items()}
    first = seconds[0]
    # The ramp ends at the first second in which 90 % of the due frames went out.
    ramp_end = next((s for s in seconds if frames_by_second[s] >= 0.9 * due_per_s), first + int(2 * ramp_s))
    steady_first = ramp_end + math.ceil(WARMUP_S)
    steady_last = seconds[-1] - 2  # the last seconds are cut by the end of the run (users stopping)
    if steady_last - steady_first < 3:
        steady_first = max(first, steady_last - 3)
    if steady_last < steady_first or steady_first < first:
        # The statistics cover too few seconds for a steady window (a process that reported part of the run).
        result["log_tail"] = (f"statistics cover only seconds {first}..{seconds[-1]}: no steady window\n"
                              + log_path.read_text(errors="replace")[-1200:])
        return result
    warmup = window_summary(stats, first, steady_first - 1)
    steady = window_summary(stats, steady_first, steady_last)
    window = sampler.window(float(steady_first), float(steady_last + 1))
    window_s = steady_last + 1 - steady_first
    frames = steady["frames"]
    tree = [pid for pid, root in window["parent"].items() if root == process.pid]
    cpu_s = window["tree_cpu_s"].get(process.pid, math.nan)
    per_process = [{"pid": pid, "role": "main" if pid == process.pid else "worker",
                    "cpu_percent": window["cpu_percent"][pid], "rss_mb": window["rss_mb"].get(pid, math.nan),
                    "uss_mb": window["uss_mb"].get(pid, math.nan)} for pid in sorted(tree)]
    # Frames each worker reported over the steady window: a worker that reported nothing shows here.
    for entry in per_process:
        own = next((d for d in documents if d.get("pid") == entry["pid"]), None)
        entry["frames"] = window_summary(own, steady_first, steady_last)["frames"] if own else None
    rss_mb = sum(p["rss_mb"] for p in per_process)
    uss_values = [p["uss_mb"] for p in per_process if not math.isnan(p["uss_mb"])]
    uss_mb = sum(uss_values) if uss_values else math.nan
    whole_s = max(1.0, seconds[-1] + 1 - first)
    result.update({
        "window_s": window_s,
        "frames_due_per_s": due_per_s,
        "frames_per_s": frames / window_s,
        "achieved_ratio": frames / window_s / due_per_s,
        "lateness_p50_ms": steady["p50_ms"],
        "lateness_p99_ms": steady["p99_ms"],
        "lateness_max_ms": steady["max_ms"],
        "warmup": {"seconds": steady_first - first, **warmup},
        "cpu_percent": 100 * cpu_s / window["seconds"] if window["seconds"] else math.nan,
        "cpu_percent_max_process": max((p["cpu_percent"] for p in per_process), default=math.nan),
        "per_process": per_process,
        "cpu_s_per_1000_frames": 1000 * cpu_s / frames if frames else math.nan,
        "frames_per_cpu_s": frames / cpu_s if cpu_s else math.nan,
        "rss_mb": rss_mb,
        "uss_mb": uss_mb,
        "rss_kb_per_user": 1024 * rss_mb / n,
        "uss_kb_per_user": 1024 * uss_mb / n,
        "sink_cpu_percent": window["cpu_percent"].get(sink_pid, math.nan),
        "others_cpu_percent": window["others_cpu_percent"],
        "others_cpu_percent_tick": window["others_cpu_percent_tick"],
        "wall_s": time.monotonic() - started,
        "streams_max": stats.get("streams_max"),
        "errors": stats.get("errors", 0),
        "slow_streams": stats.get("slow_streams", 0),
        # the harness's collector pauses over the whole run (voiceharness/locust/collector.py)
        "collector": stats.get("collector"),
    })
    if client.startswith("harness"):
        result.update(_turns_file(Path(f"{prefix}_turns.csv")))
    else:
        result.update({"turns": stats.get("turns", 0), "failed_turns": stats.get("errors", 0),
                       "roundtrip_p50_ms": stats.get("roundtrip_p50_ms", math.nan)})
    # The same work per stream: turns per stream per minute over the whole run, ramp included.
    result["turns_per_stream_min"] = 60 * result["turns"] / n / whole_s if result["turns"] else math.nan
    result["met"], result["why_not"] = _verdict(result)
    result["sink_saturated"] = bool(result["sink_cpu_percent"] > SINK_SATURATED_CPU_PERCENT)
    return result


FIGURES = ("frames_per_s", "achieved_ratio", "failed_turns", "lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms",
           "cpu_percent", "cpu_percent_max_process", "cpu_s_per_1000_frames", "frames_per_cpu_s", "rss_kb_per_user",
           "uss_kb_per_user", "rss_mb", "sink_cpu_percent", "others_cpu_percent", "others_cpu_percent_tick",
           "turns_per_stream_min", "roundtrip_p50_ms")


def _groups(runs: list[dict]) -> dict[tuple[int, str, int], list[dict]]:
    groups: dict[tuple[int, str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["n"], r["client"], r.get("processes", 1)), []).append(r)
    return groups


def _group_row(n: int, client: str, processes: int, runs: list[dict]) -> dict:
    measured = [r for r in runs if "frames_per_s" in r]
    row: dict = {"n": n, "client": client, "processes": processes, "label": label(client, processes),
                 "repeats": len(runs), "measured": len(measured),
                 "met_repeats": sum(1 for r in measured if r["met"]),
                 "missing_process_reports": sum(r.get("missing_processes", 0) for r in runs),
                 "sink_saturated_repeats": sum(1 for r in measured if r.get("sink_saturated")),
                 "frames_due_per_s": n * FRAMES_PER_S}
    for key in FIGURES:
        row[key] = common.spread(r.get(key, math.nan) for r in measured)
    row["warmup_p99_ms"] = common.spread(r["warmup"]["p99_ms"] for r in measured)
    row["warmup_max_ms"] = common.spread(r["warmup"]["max_ms"] for r in measured)
    # Met on the median figures (a claim that holds in the median but not in every repeat says so: met_repeats).
    median = {key: row[key]["median"] for key in ("lateness_p99_ms", "achieved_ratio", "cpu_percent_max_process",
                                                  "failed_turns")}
    row["met"], row["why_not"] = _verdict({**median, "missing_processes": 0}) if measured else (False, "no run measured")
    if row["missing_process_reports"]:
        row["why_not"] = (row["why_not"] + "; " if row["why_not"] else "") + \
            f"{row['missing_process_reports']} process report(s) missing over the repeats"
        row["met"] = False
    row["met_every_repeat"] = bool(measured) and row["met_repeats"] == len(runs)
    collectors = [r.get("collector") or {} for r in measured]
    row["collector_max_ms"] = common.spread(c.get("max_ms", math.nan) for c in collectors)
    return row


def _ratios(runs: list[dict], client: str, baseline: str, processes: int = 1) -> dict[int, dict]:
    """Frames per CPU-second of ``client`` over ``baseline``, per N: each repeat paired with its own."""
    out = {}
    for n in sorted({r["n"] for r in runs}):
        pairs = []
        mine = {r["attempt"]: r for r in runs if r["n"] == n and r["client"] == client and r.get("processes", 1) == processes}
        theirs = {r["attempt"]: r for r in runs if r["n"] == n and r["client"] == baseline and r.get("processes", 1) == 1}
        for attempt, r in mine.items():
            b = theirs.get(attempt)
            if b and "frames_per_cpu_s" in r and "frames_per_cpu_s" in b and b["frames_per_cpu_s"]:
                pairs.append(r["frames_per_cpu_s"] / b["frames_per_cpu_s"])
        if pairs:
            out[n] = common.spread(pairs)
    return out


def _marginal_kb_per_user(rows: list[dict], client: str) -> float:
    """RSS growth per added user between the smallest and largest N (medians; the corpus is shared)."""
    points = sorted((row["n"], row["rss_mb"]["median"]) for row in rows
                    if row["client"] == client and row["processes"] == 1 and not math.isnan(row["rss_mb"]["median"]))
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return math.nan
    return 1024 * (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def summarize(runs: list[dict]) -> dict:
    """Per (N, client, processes): median and min-max of every figure; largest N met; goals."""
    rows = [_group_row(n, client, processes, group) for (n, client, processes), group in sorted(_groups(runs).items(),
            key=lambda item: (item[0][0], _client_order(item[0][1]), item[0][2]))]
    largest: dict[str, dict] = {}
    for row in rows:
        entry = largest.setdefault(row["label"], {"client": row["client"], "processes": row["processes"],
                                                  "median": 0, "every_repeat": 0})
        if row["met"]:
            entry["median"] = max(entry["median"], row["n"])
        if row["met_every_repeat"]:
            entry["every_repeat"] = max(entry["every_repeat"], row["n"])
    harness = {row["n"]: row for row in rows if row["client"] == "harness" and row["processes"] == 1}
    memory_n = GOAL_MEMORY_N if GOAL_MEMORY_N in harness else (max(harness) if harness else None)
    memory_row = harness.get(memory_n) if memory_n else None
    processes = sorted({row["processes"] for row in rows if row["client"] == "harness"})
    scaling = {}
    if len(processes) > 1 and "harness" in largest:
        one = largest["harness"]["median"]
        for p in processes[1:]:
            many = largest.get(label("harness", p), {}).get("median", 0)
            scaling[p] = {"largest_n_met": many, "one_process_largest_n_met": one,
                          "ratio": many / one if one else math.nan,
                          "goal_met": bool(one) and many >= GOAL_PROCESSES_SCALING * one}
    ratios_fair = _ratios(runs, "harness", "asyncio_fair")
    ratios_naive = _ratios(runs, "harness", "asyncio_naive")
    fair_medians = [v["median"] for v in ratios_fair.values()]
    return {
        "per_n": rows,
        "largest_n_met": largest,
        "ratio_vs_asyncio_fair": ratios_fair,
        "ratio_vs_asyncio_naive": ratios_naive,
        "ratio_vs_asyncio_fair_min_median": min(fair_medians) if fair_medians else math.nan,
        "goal_ratio_1_5x_fair": bool(fair_medians) and min(fair_medians) >= 1.5,
        "memory": {
            "n": memory_n,
            "rss_kb_per_user": memory_row["rss_kb_per_user"] if memory_row else common.spread([]),
            "uss_kb_per_user": memory_row["uss_kb_per_user"] if memory_row else common.spread([]),
            "marginal_kb_per_user": _marginal_kb_per_user(rows, "harness"),
            "goal_met": bool(memory_row) and memory_row["rss_kb_per_user"]["median"] <= GOAL_KB_PER_USER,
            "goal_met_every_repeat": bool(memory_row) and memory_row["rss_kb_per_user"]["max"] <= GOAL_KB_PER_USER,
        },
        "processes_scaling": scaling,
        "definitions": DEFINITIONS,
    }


DEFINITIONS = {
    "capacity": (f"met at N = p99 send lateness <= {GOAL_P99_MS:g} ms AND every due frame sent (no turn failed, and "
                 f"frames/s achieved >= {100 * GOAL_ACHIEVED_RATIO:g} % of N x 15.625: between turns each stream waits "
                 "for the reply, so a client on schedule sends 99.5-99.9 %) AND CPU <= "
                 f"{GOAL_CPU_PERCENT:g} % of a core (several processes: each within its core's 70 %), over the steady "
                 "window; judged on the median of the repeats, and the count of repeats that met it on their own "
                 "is given beside it"),
    "memory": (f"RSS of the client's processes at N / N <= {GOAL_KB_PER_USER:g} KB at N = {GOAL_MEMORY_N:,} (peak over the "
               "steady window, the interpreter and corpus included); beside it the unique set size per user (USS: "
               "pages no other process shares, so a corpus shared after Locust's fork is not in it) and the "
               "marginal slope between the smallest and largest N (information, not the verdict)"),
    "ratio": "frames per CPU-second of the harness / of the fair asyncio baseline, each repeat against the same repeat's baseline",
    "processes": (f"with --processes P, the largest N met (strict definition above) >= {GOAL_PROCESSES_SCALING:g} x "
                  "one process's largest N met"),
}


def _client_order(client: str) -> int:
    order = (*CLIENTS, *EXTRA_CLIENTS)
    return order.index(client) if client in order else len(order)


def run(*, smoke: bool = False, ns: tuple[int, ...] | None = None, clients: tuple[str, ...] = CLIENTS,
        duration_s: float | None = None, sink: str = "minimal", repeat: int = 1,
        processes: tuple[int, ...] = (1,)) -> dict:
    ns = ns or (SMOKE_N if smoke else FULL_N)
    duration_s = duration_s or (6.0 if smoke else 22.0)
    unknown = [c for c in clients if c not in (*CLIENTS, *EXTRA_CLIENTS)]
    if unknown:
        raise SystemExit(f"bench capacity: unknown client(s) {', '.join(unknown)}; "
                         f"choose from {', '.join((*CLIENTS, *EXTRA_CLIENTS))}")
    runs: list[dict] = []
    plan = [(client, p) for client in clients for p in (processes if client == "harness" else (1,))]
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        workdir = Path(tmp)
        port = common.free_port()
        service = (common.sink_service(port, workdir) if sink == "minimal"
                   else common.gateway_service(port, workdir, "--fast-sink"))
        service.start()
        try:
            for attempt in range(repeat):
                for n in ns:
                    ramp_s = 1.0 if smoke else max(2.0, n / 400)
                    for client, p in plan:
                        result = run_one(client, n, port, service.pid, duration_s, ramp_s, workdir, p, attempt)
                        runs.append(result)
                        print(_line(result), flush=True)
        finally:
            service.stop()
    return {
        "benchmark": "capacity",
        "smoke": smoke,
        "sink": "bench/sink.py (minimal raw asyncio sink)" if sink == "minimal" else "gateway --fast-sink",
        "machine": common.machine(),
        "frame_bytes": guide.CHUNK_BYTES,
        "frame_ms": guide.CHUNK_MS,
        "duration_s": duration_s,
        "repeat": repeat,
        "processes": list(processes),
        "runs": runs,
        "summary": summarize(runs),
    }


def _line(r: dict) -> str:
    name = f"{r['label']} #{r['attempt'] + 1}"
    if "frames_per_s" not in r:
        expected = f"none of the {r['processes']} processes reported its statistics" if r.get("processes", 1) > 1 \
            else "no statistics written"
        return f"{name:>28} N={r['n']:<5} FAILED ({expected}) rc={r['returncode']} {r.get('log_tail', '')[-300:]}"
    missing = f" MISSING {r['missing_processes']} process report(s)" if r.get("missing_processes") else ""
    return (f"{name:>28} N={r['n']:<5} {r['frames_per_s']:8.0f}/{r['frames_due_per_s']:.0f} fps "
            f"late p50/p99/max {r['lateness_p50_ms']:.1f}/{r['lateness_p99_ms']:.1f}/{r['lateness_max_ms']:.1f} ms "
            f"(warm-up p99 {r['warmup']['p99_ms']:.1f}) cpu {r['cpu_percent']:.0f}% "
            f"{r['frames_per_cpu_s']:.0f} f/cpu-s rss {r['rss_kb_per_user']:.0f} uss {r['uss_kb_per_user']:.0f} KB/user "
            f"turns/stream/min {r['turns_per_stream_min']:.1f} sink {r['sink_cpu_percent']:.0f}% "
            f"others {r['others_cpu_percent']:.0f}% (tick {r['others_cpu_percent_tick']:.0f}%) "
            f"{'met' if r['met'] else 'not met: ' + r['why_not']}{missing}")

