"""The report's plots, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Each function takes arrays or summary sections and returns PNG bytes, or None when the run has
nothing to draw (the page then says why). No pyplot: figures are built on
``matplotlib.figure.Figure``, so there is no global state and no display is needed. Large runs
are drawn from aggregates (time-bucket percentiles, histograms, a bounded random sample of
points), so a million turns draw as fast as a thousand.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MultipleLocator, PercentFormatter

from analysis.metrics import (
    band_ranges,
    finite,
    group_max,
    percentiles_by_turn_count,
    rate_per_bucket,
    user_keys,
)
from analysis.readers import History, Resources, Turns
from analysis.resources import GATEWAY_CPU, GATEWAY_RSS, SATURATED_CPU_PERCENT, gateway_column, gateway_scope
from analysis.summary import IntentSummary
from voiceharness import bands, guide

BAND_COLOURS = {0: "#2e7d32", 1: "#9ccc65", 2: "#ffb300", 3: "#e53935"}
WORKER_COLOURS = ("#1e88e5", "#43a047", "#8e24aa", "#00897b", "#5e35b1", "#6d4c41")
GATEWAY_COLOUR = "#ef6c00"
CHUNK_COLOURS = {0: "#90caf9", 1: "#9ccc65", 2: "#ffb300"}
SAMPLE_POINTS = 4000
DPI = 100


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _figure(width: float = 9.0, height: float = 3.8) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _shade_bands(axis, edges: tuple[float, ...], top: float, horizontal: bool = True) -> None:  # type: ignore[no-untyped-def]
    limits = [0.0, *edges, max(top, edges[-1] * 1.2)]
    for i in range(len(limits) - 1):
        span = axis.axhspan if horizontal else axis.axvspan
        span(limits[i], limits[i + 1], color=BAND_COLOURS[i], alpha=0.12, lw=0)


def roundtrip_over_time_figure(turns: Turns, seed: int = 0) -> Figure | None:
    """Roundtrip of real-time turns over time: p50/p95/p99 over windows of turns, the slowest 1 %
    marked, on the shaded bands.

    Windows hold equal numbers of turns (:func:`~analysis.metrics.percentiles_by_turn_count`) so
    the three lines differ; the axis always reaches the slowest turn, which is labelled. Fast-paced
    turns are drawn apart as crosses: they are not banded.
    """
    times, values = turns.numbers["timestamp"], turns.numbers["roundtrip_ms"]
    fast = turns.text_is("pace", "fast")
    ok = ~np.isnan(values)
    realtime = ok & ~fast
    if not realtime.any():
        return None
    start = float(times.min())
    series = percentiles_by_turn_count(times[realtime] - start, values[realtime])
    figure = _figure()
    axis = figure.add_subplot()
    rng = np.random.default_rng(seed)
    index = np.flatnonzero(realtime)
    threshold = float(np.percentile(values[index], 99))
    outliers = index[values[index] > threshold]
    if len(outliers) > SAMPLE_POINTS // 4:  # the worst ones, when there are too many to draw
        outliers = outliers[np.argsort(values[outliers])[-(SAMPLE_POINTS // 4):]]
    if len(index) > SAMPLE_POINTS:
        index = rng.choice(index, SAMPLE_POINTS, replace=False)
    axis.scatter(
        times[index] - start, values[index], s=5, color="#607d8b", alpha=0.35, lw=0, label="real-time turns"
    )
    fast_index = np.flatnonzero(ok & fast)
    if len(fast_index):
        if len(fast_index) > SAMPLE_POINTS:
            fast_index = rng.choice(fast_index, SAMPLE_POINTS, replace=False)
        axis.scatter(times[fast_index] - start, values[fast_index], s=14, marker="x", color="#ef6c00", lw=0.8,
                     alpha=0.7, label="fast-paced (not banded)")
    for key, colour in (("p50", "#1565c0"), ("p95", "#6a1b9a"), ("p99", "#c62828")):
        axis.plot(series["time"], series[key], color=colour, lw=1.6, label=key)
    axis.scatter(times[outliers] - start, values[outliers], marker="^", s=28, color="#b71c1c", zorder=3,
                 label=f"slowest 1 % (> {threshold:.0f} ms)")
    slowest = int(np.flatnonzero(realtime)[np.argmax(values[realtime])])
    highest = float(values[slowest])
    top = max(highest, float(values[ok].max())) * 1.12
    top = max(top, guide.ROUNDTRIP_EDGES_MS[0] * 1.5)
    on_the_right = times[slowest] - start > 0.5 * (float(times.max()) - start)
    axis.annotate(
        f"slowest {highest:.0f} ms",
        (times[slowest] - start, highest),
        xytext=(-6 if on_the_right else 6, 3),
        textcoords="offset points",
        ha="right" if on_the_right else "left",
        fontsize=8,
        color="#b71c1c",
    )
    _shade_bands(axis, guide.ROUNDTRIP_EDGES_MS, top)
    for edge in guide.ROUNDTRIP_EDGES_MS:
        if edge < top:
            axis.axhline(edge, color="#455a64", lw=0.6, ls="--")
    axis.set_ylim(0, top)
    axis.set_xlabel("seconds since the first turn")
    axis.set_ylabel("roundtrip (ms)")
    axis.set_title(f"Roundtrip over time, real-time turns: percentiles over {series['window']} turns at a time")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="bands shaded", title_fontsize=8)
    return figure


def roundtrip_over_time(turns: Turns, seed: int = 0) -> bytes | None:
    figure = roundtrip_over_time_figure(turns, seed)
    return None if figure is None else _png(figure)


def latency_figure(values: np.ndarray) -> Figure | None:
    """Histogram and CDF of ping latency on an axis scaled to the data, with the bands inside it marked."""
    data = finite(values)
    if not len(data):
        return None
    figure = _figure()
    axis = figure.add_subplot()
    high = float(np.percentile(data, 99.9))
    # The axis ends just past the data (past the max unless one far outlier would squash the rest).
    top = float(data.max()) if data.max() <= 3 * high else high
    top = max(top * 1.08, 1.0)
    counts, edges = np.histogram(np.minimum(data, top), bins=60, range=(0, top))
    axis.bar(
        edges[:-1], counts, width=np.diff(edges), align="edge", color="#42a5f5", alpha=0.85, label="turns"
    )
    _shade_bands(axis, guide.LATENCY_EDGES_MS, top, horizontal=False)
    cdf_axis = axis.twinx()
    points = np.linspace(0, 100, 401)
    cdf_axis.plot(np.percentile(data, points), points / 100, color="#0d47a1", lw=1.6, label="CDF")
    cdf_axis.set_ylim(0, 1.02)
    cdf_axis.set_ylabel("share of turns at or below")
    for edge in guide.LATENCY_EDGES_MS:
        if edge < top:
            axis.axvline(edge, color="#455a64", lw=0.8, ls="--")
            axis.text(edge, axis.get_ylim()[1] * 0.97, f" {edge} ms", fontsize=8, va="top")
    axis.set_xlim(0, top)
    inside = _bands_in_view(bands.LATENCY, top)
    axis.set_xlabel("ping latency (ms)" + (", values above the axis are drawn at its end" if data.max() > top else ""))
    axis.set_ylabel("turns")
    axis.set_title(f"Latency, bands in view: {inside}")
    return figure


def latency_distribution(values: np.ndarray) -> bytes | None:
    figure = latency_figure(values)
    return None if figure is None else _png(figure)


def _bands_in_view(metric: str, top: float) -> str:
    """The bands an axis from 0 to ``top`` shows, with their ranges: 'excellent (< 50 ms)'."""
    ranges = band_ranges(metric)
    edges = (0.0, *(guide.ROUNDTRIP_EDGES_MS if metric == bands.ROUNDTRIP else guide.LATENCY_EDGES_MS))
    names = bands.BANDS[metric]
    return ", ".join(f"{name} ({ranges[name]})" for name, low in zip(names, edges) if low < top)


def audible_figure(turns: Turns) -> Figure | None:
    """CDFs of the roundtrip and of the time to the first audible reply sample, on the roundtrip bands."""
    audible = turns.numbers.get("audible_ms")
    if audible is None:
        return None
    realtime = ~turns.text_is("pace", "fast")
    heard, roundtrip = finite(audible[realtime]), finite(turns.numbers["roundtrip_ms"][realtime])
    if not len(heard):
        return None
    figure = _figure(9.0, 3.6)
    axis = figure.add_subplot()
    points = np.linspace(0, 100, 401)
    top = max(float(heard.max()), float(roundtrip.max()) if len(roundtrip) else 0.0) * 1.08
    _shade_bands(axis, guide.ROUNDTRIP_EDGES_MS, top, horizontal=False)
    if len(roundtrip):
        axis.plot(np.percentile(roundtrip, points), points / 100, color="#1565c0", lw=1.6,
                  label="roundtrip (first reply byte)")
    axis.plot(np.percentile(heard, points), points / 100, color="#c62828", lw=1.6,
              label="audible (first reply sample above the speech threshold)")
    axis.set_xlim(0, top)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("ms after end of speech (bands: the guide's, for the roundtrip)")
    axis.set_ylabel("share of real-time turns")
    axis.set_title("Roundtrip and time to the first audible reply (CDF)")
    axis.legend(loc="lower right", fontsize=8)
    return figure


def audible_distribution(turns: Turns) -> bytes | None:
    figure = audible_figure(turns)
    return None if figure is None else _png(figure)


def users_and_failures(history: History | None, turns: Turns | None) -> bytes | None:
    """Users, requests/s and failures/s over time, from Locust's history (or the turns as a fallback)."""
    figure = _figure()
    axis = figure.add_subplot()
    rate_axis = axis.twinx()
    if history is not None and len(history.timestamp):
        t = history.timestamp - history.timestamp.min()
        axis.plot(t, history.users, color="#37474f", lw=1.8, label="users")
        rate_axis.plot(t, history.requests_per_s, color="#1e88e5", lw=1.2, label="requests/s (all kinds)")
        rate_axis.plot(t, history.failures_per_s, color="#e53935", lw=1.2, label="failures/s")
        axis.set_title("Users and failures over time (Locust history)")
    elif turns is not None:
        start = float(turns.numbers["timestamp"].min())
        times = turns.numbers["timestamp"] - start
        all_turns = rate_per_bucket(times)
        failed = rate_per_bucket(times, mask=~(turns.numbers["success"] > 0))
        rate_axis.plot(all_turns["time"], all_turns["rate"], color="#1e88e5", lw=1.2, label="turns/s")
        rate_axis.plot(failed["time"], failed["rate"], color="#e53935", lw=1.2, label="failed turns/s")
        axis.set_title("Turns and failures over time (from the turns file; no Locust history)")
    else:
        return None
    axis.set_xlabel("seconds since start")
    axis.set_ylabel("users")
    rate_axis.set_ylabel("per second")
    lines = axis.get_legend_handles_labels()
    more = rate_axis.get_legend_handles_labels()
    rate_axis.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    return _png(figure)


def calls_over_time(calls, knee_rate_per_s: float | None) -> bytes | None:  # analysis.calls.Calls
    """Concurrent calls (a step function) and the offered call rate over time, the knee marked."""
    from analysis.calls import concurrency_over_time

    if calls is None or not len(calls):
        return None
    times, levels = concurrency_over_time(calls)
    scheduled = calls.numbers["scheduled_at"]
    start = float(np.nanmin(scheduled))
    figure = _figure()
    axis = figure.add_subplot()
    rate_axis = axis.twinx()
    if len(times):
        axis.step(np.concatenate([[0.0], times - start]), np.concatenate([[0.0], levels]), where="post",
                  color="#37474f", lw=1.5, label="concurrent calls")
    order = np.argsort(scheduled)
    rate = calls.numbers["offered_rate_per_s"][order]
    rate_axis.step(scheduled[order] - start, rate, where="post", color="#1e88e5", lw=1.2, label="offered calls/s")
    if knee_rate_per_s is not None:
        at = scheduled[order][np.isclose(rate, knee_rate_per_s)]
        if len(at):
            axis.axvline(float(at.min()) - start, color="#e53935", lw=1.5, ls="--",
                         label=f"knee: {knee_rate_per_s:g} calls/s")
    axis.set_xlabel("seconds since the first call's arrival")
    axis.set_ylabel("calls in progress")
    rate_axis.set_ylabel("offered calls per second")
    rate_axis.set_ylim(bottom=0)
    axis.set_ylim(bottom=0)
    axis.set_title("Concurrent calls and the offered rate (open model)")
    lines = axis.get_legend_handles_labels()
    more = rate_axis.get_legend_handles_labels()
    rate_axis.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    return _png(figure)


def intent_per_utterance(intent: IntentSummary, limit: int = 40) -> bytes | None:
    """Accuracy of the utterances below 100 %, worst first (at most ``limit`` bars); None when none is.

    Forty full bars say nothing a line of text does not (:func:`intent_summary_line`).
    """
    rows = [r for r in intent.per_utterance if r.accuracy < 1.0]
    if not rows:
        return None
    below = len(rows)
    rows = rows[:limit][::-1]
    figure = _figure(9.0, max(2.2, 0.28 * len(rows) + 1.2))
    axis = figure.add_subplot()
    accuracy = np.array([r.accuracy for r in rows])
    colours = np.where(accuracy >= 0.98, "#43a047", np.where(accuracy >= 0.9, "#ffb300", "#e53935"))
    axis.barh(np.arange(len(rows)), accuracy, color=colours)
    labels = [f"{r.utterance} ({r.correct}/{r.turns})" for r in rows]
    axis.set_yticks(np.arange(len(rows)), labels, fontsize=7)
    # Start the axis a little below the worst bar so that 93 % and 97 % look different.
    low = max(0.0, np.floor((float(accuracy.min()) - 0.05) * 10) / 10)
    axis.set_xlim(low, 1)
    axis.xaxis.set_major_locator(MultipleLocator(0.05 if low >= 0.5 else 0.1))
    axis.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axis.axvline(0.98, color="#455a64", lw=0.8, ls="--")
    axis.set_xlabel("accuracy (dashed: 98 %" + (f"; the axis starts at {low:.0%})" if low else ")"))
    total = len(intent.per_utterance)
    title = f"Utterances below 100 %: {below} of {total}"
    if below > limit:
        title += f" (worst {limit} drawn)"
    axis.set_title(title)
    return _png(figure)


def intent_summary_line(intent: IntentSummary) -> str:
    """One line for the utterances that need no bar: how many are at 100 %."""
    rows = intent.per_utterance
    perfect = [r for r in rows if r.accuracy >= 1.0]
    if not rows:
        return "no turn had an expected intent"
    if len(perfect) == len(rows):
        return f"all {len(rows)} utterances at 100 % ({sum(r.turns for r in rows)} judged turns)"
    return f"{len(perfect)} of {len(rows)} utterances at 100 %; the others are drawn"


def resources_figure(resources: Resources | None) -> Figure | None:
    """CPU (top) and RSS (bottom) over time: each load generator, and the gateway when it was local."""
    if resources is None or not len(resources.timestamp):
        return None
    start = float(np.nanmin(resources.timestamp))
    t = resources.timestamp - start
    figure = _figure(9.0, 5.2)
    cpu_axis, rss_axis = figure.subplots(2, 1, sharex=True)
    workers = sorted(set(resources.worker.tolist()))
    cpu = resources.numbers.get("worker_cpu_percent", np.full(len(t), np.nan))
    rss = resources.numbers.get("worker_rss_mb", np.full(len(t), np.nan))
    for i, worker in enumerate(workers):
        mine = resources.worker == worker
        order = np.argsort(t[mine])
        colour = WORKER_COLOURS[i % len(WORKER_COLOURS)]
        label = f"load generator {worker}" if len(workers) <= 6 else ("load generators" if i == 0 else None)
        cpu_axis.plot(t[mine][order], cpu[mine][order], color=colour, lw=1.3, label=label)
        rss_axis.plot(t[mine][order], rss[mine][order], color=colour, lw=1.3, label=label)
    cpu_column = gateway_column(resources, GATEWAY_CPU)
    rss_column = gateway_column(resources, GATEWAY_RSS)
    gateway_label = f"gateway ({gateway_scope(resources, cpu_column or rss_column)})"
    for axis, column in ((cpu_axis, cpu_column), (rss_axis, rss_column)):
        if column:
            values = resources.numbers[column]
            ok = ~np.isnan(values)
            order = np.argsort(t[ok])
            axis.plot(t[ok][order], values[ok][order], color=GATEWAY_COLOUR, lw=1.8, ls="-", label=gateway_label)
    cpu_axis.axhline(SATURATED_CPU_PERCENT, color="#e53935", lw=0.8, ls="--")
    cpu_axis.text(0, SATURATED_CPU_PERCENT, f" load generator saturated above {SATURATED_CPU_PERCENT:g} %",
                  fontsize=7, va="bottom", color="#c62828")
    highest = [SATURATED_CPU_PERCENT * 1.2, *(float(finite(c).max()) * 1.1 for c in (cpu,) if len(finite(c)))]
    if cpu_column:
        highest.append(float(finite(resources.numbers[cpu_column]).max()) * 1.1)
    cpu_axis.set_ylim(0, max(highest))
    cpu_axis.set_ylabel("CPU (% of a core)")
    cpu_axis.set_title("CPU and memory over time")
    cpu_axis.legend(loc="upper right", fontsize=7, ncols=2)
    rss_axis.set_ylim(bottom=0)
    rss_axis.set_ylabel("RSS (MB)")
    rss_axis.set_xlabel("seconds since the first sample")
    return figure


def resources_over_time(resources: Resources | None) -> bytes | None:
    figure = resources_figure(resources)
    return None if figure is None else _png(figure)


def chunks_distribution(turns: Turns) -> bytes | None:
    """Histogram of chunks sent per turn with the normal range (50-200) shaded; received beside it."""
    sent = turns.numbers["chunks_sent"]
    sent = sent[sent > 0]
    if not len(sent):
        return None
    received = finite(turns.numbers["chunks_received"])
    figure = _figure()
    left, right = figure.subplots(1, 2)
    low, high = guide.CHUNKS_NORMAL_RANGE
    top = max(float(sent.max()), high * 1.2)
    counts, edges = np.histogram(sent, bins=60, range=(0, top))
    centres = (edges[:-1] + edges[1:]) / 2
    colours = [CHUNK_COLOURS[int(i)] for i in bands.bands_of(bands.CHUNKS, centres)]
    left.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colours)
    left.axvspan(low, high, color="#9ccc65", alpha=0.12, lw=0)
    left.set_title("Audio chunks sent per turn (normal 50-200)")
    left.set_xlabel("chunks")
    left.set_ylabel("turns")
    if len(received):
        right.hist(received, bins=40, color="#7e57c2")
    right.set_title("Reply chunks received per turn")
    right.set_xlabel("chunks")
    return _png(figure)


def reconnections_distribution(turns: Turns) -> bytes | None:
    """How many users reached each reconnection count, coloured by band."""
    per_user = group_max(user_keys(turns), turns.numbers["reconnections"])
    if not len(per_user):
        return None
    values, counts = np.unique(per_user.astype(np.int64), return_counts=True)
    figure = _figure(9.0, 3.2)
    axis = figure.add_subplot()
    colours = [BAND_COLOURS[int(i)] for i in bands.bands_of(bands.RECONNECTIONS, values)]
    axis.bar(values, counts, color=colours, width=0.8)
    axis.set_xlabel("reconnections of a user (0 stable, 1-3 minor, 4-10 network problems, > 10 critical)")
    axis.set_ylabel("users")
    axis.set_title("Reconnections per user")
    axis.set_xlim(-0.7, max(float(values.max()), 11) + 0.7)
    return _png(figure)
