"""BENCHMARKS.md from ``bench/results/*.json``: machine, command, figures with their spread, definitions, goals.

Pure formatting: it reads whatever result files exist (never the ``-smoke`` ones) and
writes one Markdown page at the repository root. Every figure that comes from repeats is
written ``median [min–max]``; every verdict stands next to the definition that decided it.
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


def _late(value: object) -> str:
    """A lateness figure; the histograms stop at 100 ms, so 100 means 'at least 100'."""
    if isinstance(value, float) and value >= 100.0:
        return ">=100"
    return _f(value)


def _s(spread: dict | None, digits: int = 1, late: bool = False) -> str:
    """``median [min–max]`` of a :func:`bench.common.spread`; just the value when there was one repeat."""
    if not spread or not spread.get("n"):
        return "–"
    show = _late if late else (lambda v: _f(v, digits))
    if spread["n"] == 1 or spread["min"] == spread["max"]:
        return show(spread["median"])
    return f"{show(spread['median'])} [{show(spread['min'])}–{show(spread['max'])}]"


def _load(name: str) -> dict | None:
    path = common.RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _machine(result: dict) -> str:
    m = result.get("machine", {})
    return (f"{m.get('cores', m.get('cpus', '?'))} cores, {m.get('cpu_model', '?')}, Python {m.get('python', '?')}; "
            f"load average at start {m.get('loadavg_at_start', '?')}")


def _preamble(result: dict, default_command: str) -> list[str]:
    lines = []
    if result.get("note"):
        lines += [f"> **{result['note']}**", ""]
    lines += [f"Machine: {_machine(result)}.",
              (f"Command: `{result.get('command', default_command)}` — {result.get('repeat', 1)} repeat(s) of every "
              "measurement, interleaved; a cell with a range is `median [min–max]` over the repeats.")]
    if result.get("nice"):
        lines.append(f"Bench processes ran at nice {result['nice']} (the machine is shared; see 'others' CPU).")
    return lines + [""]


def _met(row: dict, key: str = "met", repeats_key: str = "met_repeats") -> str:
    verdict = "**met**" if row.get(key) else "not met"
    count = f" ({row.get(repeats_key, 0)}/{row.get('repeats', 0)} repeats)" if row.get("repeats", 0) > 1 else ""
    why = f": {row['why_not']}" if row.get("why_not") and not row.get(key) else ""
    if row.get(key) and row.get(repeats_key, 0) < row.get("repeats", 0):
        why = " — in the median, not in every repeat"
    if "measured" in row and row["measured"] < row.get("repeats", 0):
        why += f" (figures from {row['measured']} of {row['repeats']} repeats: the others reported nothing)"
    return verdict + count + why


def capacity_section(result: dict, title: str) -> list[str]:
    summary = result.get("summary", {})
    rows = summary.get("per_n", [])
    if rows and "label" not in rows[0]:
        return [f"## {title}", "", "(results in an older format: rerun `python -m bench capacity`)", ""]
    definitions = summary.get("definitions", {})
    lines = [f"## {title}", "", *_preamble(result, "python -m bench capacity"),
             (f"System under test: {result.get('sink')}, its own process. Each run: ramp, then {result.get('duration_s')} s; "
             "figures are the steady window (after ramp + 3 s). Frames/s due = N x 15.625; turns run back to back, each "
             "stream waiting for the reply between two, so a client on schedule sends a little less (99.5-99.9 %). "
             "Every client does the same work per stream: the same frames, the end marker when the last frame's audio "
             "is over, the sink's reply read and parsed before the next turn, a ping every 3 s (turns per "
             "stream-minute shows it)."),
             "", f"**Definition (decides 'met'):** {definitions.get('capacity', '')}.", "",
             ("| N | client | frames/s achieved / due | lateness p50 / p99 / max ms | CPU % of a core | frames per CPU-s | "
              "RSS / USS KB per user | sink CPU % | others CPU % | turns per stream-min | met |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row.get("measured"):
            lines.append(f"| {row['n']:,} | {row['label']} | failed ({row['repeats']} runs) | | | | | | | | not met |")
            continue
        sink = " (sink saturated)" if row.get("sink_saturated_repeats") else ""
        lines.append(
            f"| {row['n']:,} | {row['label']} | {_s(row['frames_per_s'], 0)} / {_f(row['frames_due_per_s'], 0)} | "
            f"{_s(row['lateness_p50_ms'], late=True)} / {_s(row['lateness_p99_ms'], late=True)} / "
            f"{_s(row['lateness_max_ms'])} | {_s(row['cpu_percent'], 0)} | {_s(row['frames_per_cpu_s'], 0)} | "
            f"{_s(row['rss_kb_per_user'], 0)} / {_s(row['uss_kb_per_user'], 0)} | {_s(row['sink_cpu_percent'], 0)}{sink} | "
            f"{_s(row['others_cpu_percent'], 0)} | {_s(row['turns_per_stream_min'], 1)} | {_met(row)} |")
    lines += [""]
    fair, naive = summary.get("ratio_vs_asyncio_fair", {}), summary.get("ratio_vs_asyncio_naive", {})
    if fair or naive:
        lines += [("Frames per CPU-second of the harness over each asyncio baseline (each repeat against the same "
                  "repeat's baseline):"), "", "| N | harness / fair asyncio | harness / naive asyncio |", "|---|---|---|"]
        for n in sorted({int(k) for k in (*fair, *naive)}):
            lines.append(f"| {n:,} | {_s(fair.get(n) or fair.get(str(n)), 2)}x | {_s(naive.get(n) or naive.get(str(n)), 2)}x |")
        lines.append("")
    largest = summary.get("largest_n_met", {})
    if largest:
        lines += ["Largest N met (strict definition), per client:", "", "| client | on the median | in every repeat |",
                  "|---|---|---|"]
        for name, entry in largest.items():
            lines.append(f"| {name} | {entry['median'] or 'none'} | {entry['every_repeat'] or 'none'} |")
        lines.append("")
    memory = summary.get("memory", {})
    lines += ["Goals:", ""]
    harness = largest.get("harness", {})
    lines.append(f"- Capacity (issue 17: 3,000 streams in one process, stretch 4,000; issue 7's floor 2,000): largest N "
                 f"met by the harness **{harness.get('median') or 'none'}** on the median, "
                 f"{harness.get('every_repeat') or 'none'} in every repeat (definition above).")
    if fair:
        lines.append(f"- Frames per CPU-second >= 1.5x the **fair** asyncio baseline at every N: "
                     f"**{'met' if summary.get('goal_ratio_1_5x_fair') else 'not met'}** (lowest median ratio "
                     f"{_f(summary.get('ratio_vs_asyncio_fair_min_median'), 2)}x). Definition: {definitions.get('ratio', '')}.")
    if memory.get("n"):
        verdict = ("**met** (in every repeat)" if memory.get("goal_met_every_repeat") else
                   "**met** — in the median, not in every repeat" if memory.get("goal_met") else "not met")
        lines.append(f"- Memory at N = {memory['n']:,}: RSS per user **{_s(memory.get('rss_kb_per_user'), 0)} KB** — "
                     f"{verdict}; USS "
                     f"per user {_s(memory.get('uss_kb_per_user'), 0)} KB; marginal RSS per added user "
                     f"{_f(memory.get('marginal_kb_per_user'), 0)} KB. Definition: {definitions.get('memory', '')}.")
    lines.append("")
    return lines


def processes_section(result: dict) -> list[str]:
    summary = result.get("summary", {})
    rows = [row for row in summary.get("per_n", []) if row["client"] == "harness"]
    lines = ["## Every core: the harness with Locust's `--processes`", "", *_preamble(result, "python -m bench capacity"),
             ("Locust's `--processes P` forks P workers (and keeps a master); the sink runs in its own process. "
              "Each worker writes its own lateness statistics (`VOICE_PACER_STATS` with `{pid}`, see "
              "`bench/locustfile_capacity.py`); the figures are summed over the workers, and a worker whose "
              "statistics are missing is named in the last column — its frames are then not in the total and the "
              "row cannot be met. CPU is the sum over the process tree, master included (% of one core), "
              "and the busiest single process beside it."), "",
             f"**Definition:** {summary.get('definitions', {}).get('capacity', '')}.", "",
             ("| N | processes | frames/s achieved / due | lateness p50 / p99 / max ms | CPU % (all processes) | "
              "busiest process CPU % | frames per CPU-s | RSS / USS KB per user (sum over processes) | sink CPU % | "
              "process reports missing | met |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row.get("measured"):
            lines.append(f"| {row['n']:,} | {row['processes']} | failed | | | | | | | {row['missing_process_reports']} | not met |")
            continue
        lines.append(
            f"| {row['n']:,} | {row['processes']} | {_s(row['frames_per_s'], 0)} / {_f(row['frames_due_per_s'], 0)} | "
            f"{_s(row['lateness_p50_ms'], late=True)} / {_s(row['lateness_p99_ms'], late=True)} / {_s(row['lateness_max_ms'])} | "
            f"{_s(row['cpu_percent'], 0)} | {_s(row['cpu_percent_max_process'], 0)} | {_s(row['frames_per_cpu_s'], 0)} | "
            f"{_s(row['rss_kb_per_user'], 0)} / {_s(row['uss_kb_per_user'], 0)} | {_s(row['sink_cpu_percent'], 0)} | "
            f"{row['missing_process_reports'] or 'none'} | {_met(row)} |")
    lines.append("")
    for p, scaling in sorted(summary.get("processes_scaling", {}).items(), key=lambda item: int(item[0])):
        lines.append(f"Goal (issue 17): {p} processes drive >= {1.7:g}x one process's largest on-time N: "
                     f"**{'met' if scaling['goal_met'] else 'not met'}** — {scaling['largest_n_met'] or 'none'} vs "
                     f"{scaling['one_process_largest_n_met'] or 'none'} ({_f(scaling['ratio'], 2)}x; median figures).")
    return [*lines, ""]


def truth_section(result: dict) -> list[str]:
    summary = result.get("summary", {})
    rows = summary.get("per_config")
    if rows is None:
        return ["## Truth of the measurement", "", "(results in an older format: rerun `python -m bench truth`)", ""]
    lines = ["## Truth of the measurement", "", *_preamble(result, "python -m bench truth"),
             f"System under test: {result.get('system_under_test')}. Ground truth: {result.get('ground_truth')}.",
             "", f"**Definition (decides 'met'):** {summary.get('goal')}.", "",
             ("| N | sink delay D ms | one-way delay d ms | turns matched | error vs sink p50 / p99 ms (+ nominal 2d) | "
              "error vs sink + proxy's measured delay p50 / p99 ms | proxy late up + down ms | model cross-check error "
              "p50 / p99 ms | sink's real D p50 ms | ping error p50 ms | send lateness p99 ms | harness CPU % | "
              "others CPU % | met (strict: both) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["measured"]:
            lines.append(f"| {row['n']} | {row['gateway_delay_ms']:g} | {row['one_way_delay_ms']:g} | failed | | | | | | | | | | not met |")
            continue
        proxied = bool(row["one_way_delay_ms"])
        both = row["goal_met"] and row["goal_met_vs_nominal"]
        verdict = ("**met**" if both else ("met vs measured, not vs nominal" if row["goal_met"] else "not met"))
        if row["repeats"] > 1:
            verdict += f" ({row['goal_met_repeats']}/{row['repeats']} repeats)"
        lines.append(
            f"| {row['n']} | {row['gateway_delay_ms']:g} | {row['one_way_delay_ms']:g} | {_s(row['matched_turns'], 0)} | "
            f"{_s(row['roundtrip_error_p50_ms'], 2)} / {_s(row['roundtrip_error_p99_ms'], 2)} | "
            + (f"{_s(row['roundtrip_error_vs_measured_p50_ms'], 2)} / {_s(row['roundtrip_error_vs_measured_p99_ms'], 2)} | "
               f"{_s(row['proxy_late_up_ms'], 2)} + {_s(row['proxy_late_down_ms'], 2)} | " if proxied else "(no proxy) | – | ")
            + f"{_s(row['roundtrip_error_model_p50_ms'], 2)} / {_s(row['roundtrip_error_model_p99_ms'], 2)} | "
            f"{_s(row['sink_delay_p50_ms'], 2)} | {_s(row['ping_error_p50_ms'], 2)} | "
            f"{_s(row['send_lateness_p99_ms'], late=True)} | {_s(row['client_cpu_percent'], 0)} | "
            f"{_s(row['others_cpu_percent'], 0)} | {verdict} |")
    mismatched = sum(row["mismatched_turns"]["max"] for row in rows if row["measured"] and row["mismatched_turns"]["n"])
    lines += ["", (f"Goal at N = {summary['n']}: **{'met' if summary['goal_met_at_max_n'] else 'not met'}** against the "
                   f"sink's timestamps and the proxy's measured delay; against the nominal delay: "
                   f"**{'met' if summary['goal_met_at_max_n_vs_nominal'] else 'not met'}**; "
                   f"{'in every repeat' if summary.get('goal_met_every_repeat') else 'not in every repeat'}."
                   + (f" Turns dropped because harness and sink named different utterances: up to {mismatched:g} a run."
                      if mismatched else " No turn was dropped for an utterance mismatch.")), ""]
    saturated = [f"N={row['n']} D={row['gateway_delay_ms']:g} d={row['one_way_delay_ms']:g} "
                 f"({row['saturated_repeats']} of {row['repeats']})" for row in rows if row.get("saturated_repeats")]
    if saturated:
        lines += [("Runs where the load generator did not keep up (send lateness p99 > 5 ms or CPU > 70 %: the error "
                   f"there is its own): {', '.join(saturated)}."), ""]
    lines += ["### Locust's bucketed percentiles vs the exact per-turn ones (same turns, first repeat)", "",
              "Locust rounds response times (to 10 ms above 100 ms) before it counts them; `_turns.csv` keeps them exact.",
              "", "| N | D ms | d ms | roundtrip p50 Locust / exact | p90 Locust / exact | p99 Locust / exact | ping p50 Locust / exact |",
              "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        comparison = r.get("locust_vs_exact")
        if not comparison or r.get("attempt", 0):
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
    spreads = result.get("spread", {})
    lines = ["## Analysis speed", "", *_preamble(result, ".venv/bin/python -m bench analysis"),
             ("Runs `bench/bench_analysis.py`: one synthetic turns file, then load + analyse, the HTML report and the "
             "whole command line, each timed afresh in every repeat."), "",
             (f"**Definition (decides 'met'):** load + analyse < {_f(result.get('goal_load_analyse_s'), 0)} s and HTML "
             f"report < {_f(result.get('goal_html_s'), 0)} s, on the median of the repeats."), "",
             "| records | load + analyse s | goal s | HTML report s | goal s | whole CLI s |", "|---|---|---|---|---|---|"]
    load = spreads.get("load_analyse_s") or common.spread([result.get("load_analyse_s")])
    html = spreads.get("html_s") or common.spread([result.get("html_s")])
    cli = spreads.get("cli_total_s") or common.spread([result.get("cli_total_s")])
    every = ""
    if result.get("repeat", 1) > 1:
        every = (" in every repeat" if result.get("load_analyse_ok_every_repeat") and result.get("html_ok_every_repeat")
                 else " in the median, not in every repeat")
    lines.append(f"| {result.get('records'):,} | {_s(load, 2)} | {_f(result.get('goal_load_analyse_s'), 0)} "
                 f"({'met' if result.get('load_analyse_ok') else 'not met'}) | {_s(html, 2)} | "
                 f"{_f(result.get('goal_html_s'), 0)} ({'met' if result.get('html_ok') else 'not met'}) | {_s(cli, 2)} |")
    if every:
        lines += ["", f"Both goals hold{every}."]
    return [*lines, ""]


HEADER = """# Benchmarks

Generated by `.venv/bin/python -m bench all` (or one of `capacity`, `truth`, `analysis`, `judge`; `report` only
rewrites this page) from `bench/results/*.json`. The machine is small and shared with other engineers'
test runs, so every figure stands next to a baseline measured in the same run, every measurement is
repeated (median and min–max), and each run records how much CPU the rest of the machine used
("others"). Smoke versions (`--smoke`) run in CI (`tests/test_bench_smoke.py`) and write
`*-smoke.json`, never this page.

"""


def write_markdown(path: Path | None = None) -> Path:
    path = path or common.REPO / "BENCHMARKS.md"
    lines = [HEADER]
    notes = common.REPO / "bench" / "NOTES.md"  # written by hand after reading the results
    for name, title in (("capacity", "Capacity: one load-generator process, four clients"),
                        ("capacity-gateway", "Capacity against the reference gateway (--fast-sink)")):
        result = _load(name)
        if result:
            lines += capacity_section(result, title)
    processes = _load("capacity-processes")
    if processes:
        lines += processes_section(processes)
    truth = _load("truth")
    if truth:
        lines += truth_section(truth)
    analysis = _load("analysis")
    if analysis:
        lines += analysis_section(analysis)
    from bench.judge import CURRENT_HELDOUT

    judge = _load(f"judge-{CURRENT_HELDOUT}")
    if judge:
        from bench import judge as judge_bench

        lines += judge_bench.markdown(judge)
    if notes.exists():
        lines += [notes.read_text(encoding="utf-8")]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
