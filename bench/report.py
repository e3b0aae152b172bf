"""BENCHMARKS.md from ``bench/results/*.json``: machine, command, figures, baselines, ratios, goals.

Pure formatting: it reads whatever result files exist (never the ``-smoke`` ones) and
writes one Markdown page at the repository root.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench import common


def _f(value: object, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def _load(name: str) -> dict | None:
    path = common.RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _late(value: object) -> str:
    """A lateness percentile; the histograms stop at 100 ms, so 100 means 'at least 100'."""
    if isinstance(value, float) and value >= 100.0:
        return ">=100"
    return _f(value)


def _machine(result: dict) -> str:
    m = result.get("machine", {})
    return (f"{m.get('cores', m.get('cpus', '?'))} cores, {m.get('cpu_model', '?')}, Python {m.get('python', '?')}; "
            f"load average at start {m.get('loadavg_at_start', '?')}")


def capacity_section(result: dict, title: str) -> list[str]:
    lines = [f"## {title}", "", f"Machine: {_machine(result)}. System under test: {result.get('sink')}.",
             (f"Command: `{result.get('command', '.venv/bin/python -m bench capacity')}`. "
             f"Each run: ramp, then {result.get('duration_s')} s; warm-up = ramp + 3 s, reported apart; "
             "figures below are the steady window. Frames/s due = N x 15.625 (back-to-back turns do not wait the "
             "64 ms after an utterance's last frame, so a client that keeps up sends ~3-5 % more)."), ""]
    if result.get("nice"):
        lines += [f"Bench processes ran at nice {result['nice']} (the machine is shared; see 'others' CPU).", ""]
    lines += [("| N | client | frames/s achieved / due | lateness p50 / p99 / max ms | warm-up p99 / max ms | "
              "client CPU % | CPU-s per 1000 frames | frames per CPU-s | RSS KB/user | sink CPU % | others CPU % | verdict |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        if "frames_per_s" not in r:
            lines.append(f"| {r['n']} | {r['client']} | failed (rc {r.get('returncode')}) | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['n']} | {r['client']} | {_f(r['frames_per_s'], 0)} / {_f(r['frames_due_per_s'], 0)} "
            f"({_f(100 * r['achieved_ratio'], 0)} %) | {_late(r['lateness_p50_ms'])} / {_late(r['lateness_p99_ms'])} / "
            f"{_f(r['lateness_max_ms'])} | {_late(r['warmup']['p99_ms'])} / {_f(r['warmup']['max_ms'])} | "
            f"{_f(r['cpu_percent'], 0)} | {_f(r['cpu_s_per_1000_frames'], 3)} | {_f(r['frames_per_cpu_s'], 0)} | "
            f"{_f(r['rss_kb_per_user'], 0)} | {_f(r['sink_cpu_percent'], 0)} | {_f(r['others_cpu_percent'], 0)} | "
            f"{r['verdict']}{' (sink saturated)' if r.get('sink_saturated') else ''} |")
    summary = result.get("summary", {})
    lines += ["", ("| N | harness on time (p99 <= 5 ms, all due frames) | harness CPU % | harness kept up (also CPU <= 70 %) | "
                   "asyncio kept up | harness / asyncio frames per CPU-s | harness / timer path | harness collector pauses, longest ms | "
                   "harness p99 ms: held collector / CPython's schedule |"),
              "|---|---|---|---|---|---|---|---|---|"]
    pauses = {r["n"]: r.get("collector") for r in result["runs"] if r["client"] == "harness"}
    for row in summary.get("per_n", []):
        collector = pauses.get(row["n"]) or {}
        lines.append(f"| {row['n']} | {_f(row.get('harness_on_time', row['harness_kept_up']))} | "
                     f"{_f(row.get('harness_cpu_percent', math.nan), 0)} | {_f(row['harness_kept_up'])} | "
                     f"{_f(row['asyncio_kept_up'])} | "
                     f"{_f(row['frames_per_cpu_s_ratio_vs_asyncio'], 2)}x | {_f(row['frames_per_cpu_s_ratio_vs_timer'], 2)}x | "
                     f"{collector.get('count', '?')}, {_f(collector.get('max_ms', math.nan))} | "
                     f"{_late(row.get('harness_p99_ms', math.nan))} / {_late(row.get('gc_cpython_p99_ms', math.nan))} |")
    lines += ["", "Goals (issue 7):", "",
              (f"- >= 2,000 real-time streams per worker at p99 send lateness <= 5 ms: "
              f"**{'met' if summary.get('goal_2000_streams_p99_5ms') else 'not met'}** "
              f"(largest N on time: {summary.get('max_streams_on_time', summary.get('max_streams_kept_up'))}; "
              f"largest N also within the 70 % CPU headroom: {summary.get('max_streams_kept_up')}; floor 1,000: "
              f"{'met' if summary.get('floor_1000_streams') else 'not met'})"),
              (f"- >= 1.5x the asyncio baseline's frames per CPU-second: "
              f"**{'met' if summary.get('goal_ratio_1_5x') else 'not met'}** "
              f"(lowest ratio over N: {_f(summary.get('min_ratio_vs_asyncio'), 2)}x)"),
              (f"- <= 64 KB per simulated user: **{'met' if summary.get('goal_64kb_per_user') else 'not met'}** "
              f"(marginal RSS per added user {_f(summary.get('harness_marginal_kb_per_user'), 0)} KB)"), ""]
    return lines


def truth_section(result: dict) -> list[str]:
    lines = ["## Truth of the measurement", "", f"Machine: {_machine(result)}.",
             f"Command: `{result.get('command', 'python -m bench truth')}`. Ground truth: " + result["ground_truth"] + ".",
             ("Error = reported - true, over the turns after ramp + 3 s; ping error from each turn's last ping. "
              "Send lateness over the same window (the whole run's p99, ramp included, in the JSON)."), "",
             ("| N | gateway delay D ms | one-way delay d ms | turns | roundtrip error p50 / p99 ms | "
             "ping error p50 / p99 ms | proxy late up + down ms (measured) | roundtrip / ping error p50 vs measured ms | "
             "roundtrip error p99 vs measured ms | "
             "send lateness p50 / p99 ms | harness CPU % | gateway CPU % | others CPU % | verdict | goal |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        if "roundtrip_error_p50_ms" not in r:
            lines.append(f"| {r['n']} | {r['gateway_delay_ms']:g} | {r['one_way_delay_ms']:g} | failed | | | | | | | | | | | |")
            continue
        proxied = bool(r["one_way_delay_ms"]) and "proxy_late_up_ms" in r
        lines.append(
            f"| {r['n']} | {r['gateway_delay_ms']:g} | {r['one_way_delay_ms']:g} | {r['steady_turns']} | "
            f"{_f(r['roundtrip_error_p50_ms'], 2)} / {_f(r['roundtrip_error_p99_ms'], 2)} | "
            f"{_f(r['ping_error_p50_ms'], 2)} / {_f(r['ping_error_p99_ms'], 2)} | "
            + (f"{_f(r['proxy_late_up_ms'], 2)} + {_f(r['proxy_late_down_ms'], 2)} | "
               f"{_f(r['roundtrip_error_vs_measured_p50_ms'], 2)} / {_f(r['ping_error_vs_measured_p50_ms'], 2)} | "
               f"{_f(r['roundtrip_error_vs_measured_p99_ms'], 2)} | " if proxied else "no proxy | (as left) | (as left) | ")
            + f"{_late(r['send_lateness_p50_ms'])} / {_late(r['send_lateness_p99_ms'])} | {_f(r['client_cpu_percent'], 0)} | "
            f"{_f(r['gateway_cpu_percent'], 0)} | {_f(r['others_cpu_percent'], 0)} | {r['verdict']} | "
            f"{'met' if r['goal_met'] else 'not met'} |")
    summary = result["summary"]
    lines += ["", (f"Goal at N = {summary['n']}: {summary['goal']} (through the proxy: against the delay it measured "
                   f"it added): **{'met' if summary['goal_met_at_max_n'] else 'not met'}**."), "",
              "### Locust's bucketed percentiles vs the exact per-turn ones (same turns)", "",
              "Locust rounds response times (to 10 ms above 100 ms) before it counts them; `_turns.csv` keeps them exact.",
              "", "| N | D ms | d ms | roundtrip p50 Locust / exact | p90 Locust / exact | p99 Locust / exact | ping p50 Locust / exact |",
              "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        comparison = r.get("locust_vs_exact")
        if not comparison:
            continue
        lo, ex = comparison["roundtrip"]["locust"], comparison["roundtrip"]["exact"]
        pl, pe = comparison["ping"]["locust"], comparison["ping"]["exact_turn_samples"]
        lines.append(
            f"| {r['n']} | {r['gateway_delay_ms']:g} | {r['one_way_delay_ms']:g} | {_f(lo.get('p50_ms'), 0)} / "
            f"{_f(ex['p50_ms'], 1)} | {_f(lo.get('p90_ms'), 0)} / {_f(ex['p90_ms'], 1)} | {_f(lo.get('p99_ms'), 0)} / "
            f"{_f(ex['p99_ms'], 1)} | {_f(pl.get('p50_ms'), 0)} / {_f(pe['p50_ms'], 2)} |")
    lines.append("")
    return lines


def analysis_section(result: dict) -> list[str]:
    return ["## Analysis speed", "", f"Machine: {_machine(result)}.",
            "Command: `.venv/bin/python -m bench analysis` (runs `bench/bench_analysis.py`).", "",
            "| records | load + analyse s | goal s | HTML report s | goal s | whole CLI s |", "|---|---|---|---|---|---|",
            (f"| {result.get('records'):,} | {_f(result.get('load_analyse_s'), 2)} | {_f(result.get('goal_load_analyse_s'), 0)} "
            f"({'met' if result.get('load_analyse_ok') else 'not met'}) | {_f(result.get('html_s'), 2)} | "
            f"{_f(result.get('goal_html_s'), 0)} ({'met' if result.get('html_ok') else 'not met'}) | "
            f"{_f(result.get('cli_total_s'), 2)} |"), ""]


HEADER = """# Benchmarks

Generated by `.venv/bin/python -m bench all` (or one of `capacity`, `truth`, `analysis`; `report` only
rewrites this page) from `bench/results/*.json`. The machine is small and shared with other engineers'
test runs, so every figure stands next to a baseline measured in the same run, and each run records
how much CPU the rest of the machine used ("others"). Smoke versions (`--smoke`) run in CI
(`tests/test_bench_smoke.py`) and write `*-smoke.json`, never this page.

"""


def write_markdown(path: Path | None = None) -> Path:
    path = path or common.REPO / "BENCHMARKS.md"
    lines = [HEADER]
    notes = common.REPO / "bench" / "NOTES.md"  # written by hand after reading the results
    for name, title in (("capacity", "Capacity of one worker process"),
                        ("capacity-gateway", "Capacity against the reference gateway (--fast-sink)")):
        result = _load(name)
        if result:
            lines += capacity_section(result, title)
    truth = _load("truth")
    if truth:
        lines += truth_section(truth)
    analysis = _load("analysis")
    if analysis:
        lines += analysis_section(analysis)
    if notes.exists():
        lines += [notes.read_text(encoding="utf-8")]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
