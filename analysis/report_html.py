"""report.html: one self-contained page (plots embedded as base64 PNG, CSS inline, no script).

The page opens from disk with no network: every image is a ``data:`` URI and nothing is
fetched. The template is ``templates/report.html.j2``; this module only draws the plots and
hands the template the summaries, the gate's checks and the comparisons.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import jinja2

from analysis import plots
from analysis.compare import Comparison
from analysis.gate import Check
from analysis.metrics import band_ranges, split_turns
from analysis.readers import Run
from analysis.summary import RunSummary
from analysis.terminal import number, percent

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


@dataclass
class Plot:
    id: str
    title: str
    png_base64: str | None
    missing: str  # why there is no plot, when there is none


def _plot(id_: str, title: str, png: bytes | None, missing: str) -> Plot:
    return Plot(id_, title, base64.b64encode(png).decode("ascii") if png else None, missing)


def draw_plots(run: Run, summary: RunSummary) -> list[Plot]:
    """Every plot of one run; a plot the run has no data for carries the reason instead."""
    turns = run.turns
    no_turns = "needs the turns file (Locust's CSVs hold no per-turn values)"
    counted, realtime, _ = split_turns(turns) if turns is not None else (None, None, None)
    calls = []
    if run.calls is not None and summary.calls is not None:  # an open-model run
        calls.append(_plot("calls", "Concurrent calls and the offered rate, the knee marked",
                           plots.calls_over_time(run.calls, summary.calls.knee_rate_per_s), "no call was offered"))
    return calls + [
        _plot(
            "roundtrip",
            "Roundtrip over time",
            plots.roundtrip_over_time(counted) if counted is not None else None,
            no_turns if turns is None else "no real-time turn had a roundtrip (no reply audio)",
        ),
        _plot(
            "audible",
            "Roundtrip and time to the first audible reply",
            plots.audible_distribution(counted) if counted is not None else None,
            no_turns if turns is None else "no turn recorded when its reply became audible (audible_ms)",
        ),
        _plot(
            "latency",
            "Latency histogram and CDF",
            plots.latency_distribution(realtime.numbers["ping_ms"]) if realtime is not None else None,
            no_turns if turns is None else "no ping was measured",
        ),
        _plot(
            "users",
            "Users and failures over time",
            plots.users_and_failures(run.history, turns),
            "needs Locust's _stats_history.csv or the turns file",
        ),
        _plot(
            "intent",
            "Intent accuracy per utterance",
            plots.intent_per_utterance(summary.intent),
            plots.intent_summary_line(summary.intent),
        ),
        _plot(
            "chunks",
            "Audio chunks",
            plots.chunks_distribution(realtime) if realtime is not None else None,
            no_turns if turns is None else "no turn streamed audio",
        ),
        _plot(
            "reconnections",
            "Reconnections",
            plots.reconnections_distribution(realtime) if realtime is not None else None,
            no_turns if turns is None else "no reconnection counts recorded",
        ),
        _plot(
            "resources",
            "CPU and memory over time",
            plots.resources_over_time(run.resources),
            "no _resources.csv for this run" if run.resources is None else "_resources.csv holds no sample",
        ),
    ]


def run_title(summary: RunSummary) -> str:
    """What a page is about: the run's target (or its files) and when it ran."""
    run = summary.run
    where = run.target or run.prefix
    when = ""
    if run.start:
        moment = datetime.fromisoformat(run.start)
        when = moment.strftime("%Y-%m-%d %H:%M UTC")
    dialects = [d for d in run.dialects if d != "reference"]
    return " ".join(part for part in (where, f"({', '.join(dialects)} dialect)" if dialects else "", when and f"at {when}") if part)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    env.filters["pct"] = percent
    env.globals["band_ranges"] = band_ranges
    return env


def render(
    runs: Sequence[tuple[Run, RunSummary]], checks: Sequence[Check] | None = None,
    comparisons: Sequence[Comparison] | None = None,
) -> str:
    """The page for one run, or several with their comparisons to the first."""
    sections = [
        {"summary": summary, "plots": draw_plots(run, summary), "title": run_title(summary)} for run, summary in runs
    ]
    template = environment().get_template("report.html.j2")
    return template.render(
        title=" vs ".join(section["title"] for section in sections),
        sections=sections,
        checks=checks or [],
        comparisons=comparisons or [],
        gate_target=runs[-1][1].run.label,
    )
