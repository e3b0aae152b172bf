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

from analysis.metrics import bucketed_percentiles, finite, group_max, rate_per_bucket, user_keys
from analysis.readers import History, Turns
from voiceharness import bands, guide

BAND_COLOURS = {0: "#2e7d32", 1: "#9ccc65", 2: "#ffb300", 3: "#e53935"}
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


def roundtrip_over_time(turns: Turns, buckets: int = 120, seed: int = 0) -> bytes | None:
    """Roundtrip p50/p95/p99 per time bucket over a sample of turns, on the shaded bands."""
    times, values = turns.numbers["timestamp"], turns.numbers["roundtrip_ms"]
    ok = ~np.isnan(values)
    if not ok.any():
        return None
    start = float(times.min())
    series = bucketed_percentiles(times - start, values, buckets=buckets)
    figure = _figure()
    axis = figure.add_subplot()
    rng = np.random.default_rng(seed)
    index = np.flatnonzero(ok)
    if len(index) > SAMPLE_POINTS:
        index = rng.choice(index, SAMPLE_POINTS, replace=False)
    axis.scatter(
        times[index] - start, values[index], s=4, color="#607d8b", alpha=0.35, lw=0, label="turns (sample)"
    )
    for key, colour, label in (
        ("q0.5", "#1565c0", "p50"),
        ("q0.95", "#6a1b9a", "p95"),
        ("q0.99", "#c62828", "p99"),
    ):
        axis.plot(series["time"], series[key], color=colour, lw=1.5, label=label)
    top = float(np.percentile(values[ok], 99.5)) * 1.15
    top = max(top, guide.ROUNDTRIP_EDGES_MS[1] * 1.1)
    _shade_bands(axis, guide.ROUNDTRIP_EDGES_MS, top)
    for edge in guide.ROUNDTRIP_EDGES_MS:
        if edge < top:
            axis.axhline(edge, color="#455a64", lw=0.6, ls="--")
    axis.set_ylim(0, top)
    axis.set_xlabel("seconds since the first turn")
    axis.set_ylabel("roundtrip (ms)")
    axis.set_title("Roundtrip over time (bands: excellent / good / slow / bad)")
    axis.legend(loc="upper right", fontsize=8, ncols=4)
    return _png(figure)


def latency_distribution(values: np.ndarray) -> bytes | None:
    """Histogram and CDF of ping latency with the band edges (50 / 100 / 200 ms)."""
    data = finite(values)
    if not len(data):
        return None
    figure = _figure()
    axis = figure.add_subplot()
    top = max(float(np.percentile(data, 99.9)) * 1.1, guide.LATENCY_EDGES_MS[-1] * 1.1)
    counts, edges = np.histogram(np.minimum(data, top), bins=80, range=(0, top))
    axis.bar(
        edges[:-1], counts, width=np.diff(edges), align="edge", color="#42a5f5", alpha=0.8, label="turns"
    )
    _shade_bands(axis, guide.LATENCY_EDGES_MS, top, horizontal=False)
    cdf_axis = axis.twinx()
    points = np.linspace(0, 100, 401)
    cdf_axis.plot(np.percentile(data, points), points / 100, color="#0d47a1", lw=1.6, label="CDF")
    cdf_axis.set_ylim(0, 1.02)
    cdf_axis.set_ylabel("share of turns at or below")
    for edge in guide.LATENCY_EDGES_MS:
        axis.axvline(edge, color="#455a64", lw=0.8, ls="--")
        axis.text(edge, axis.get_ylim()[1] * 0.97, f" {edge} ms", fontsize=8, va="top")
    axis.set_xlim(0, top)
    axis.set_xlabel("ping latency (ms), values above the axis are drawn at its end")
    axis.set_ylabel("turns")
    axis.set_title("Latency: excellent < 50 <= good <= 100 < average <= 200 < slow")
    return _png(figure)


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


def intent_per_utterance(intent: dict, limit: int = 40) -> bytes | None:
    """Intent accuracy per utterance, worst first (at most ``limit`` bars)."""
    rows = intent.get("per_utterance") or []
    if not rows:
        return None
    rows = rows[:limit][::-1]
    figure = _figure(9.0, max(2.2, 0.28 * len(rows) + 1.0))
    axis = figure.add_subplot()
    accuracy = np.array([r["accuracy"] for r in rows])
    colours = np.where(accuracy >= 0.98, "#43a047", np.where(accuracy >= 0.9, "#ffb300", "#e53935"))
    axis.barh(np.arange(len(rows)), accuracy, color=colours)
    axis.set_yticks(np.arange(len(rows)), [f"{r['utterance']} ({r['turns']})" for r in rows], fontsize=7)
    axis.set_xlim(0, 1)
    axis.axvline(0.98, color="#455a64", lw=0.8, ls="--")
    axis.set_xlabel("accuracy (dashed: 98 %)")
    title = "Intent accuracy per utterance (worst first)"
    if len(intent["per_utterance"]) > limit:
        title += f", worst {limit} of {len(intent['per_utterance'])}"
    axis.set_title(title)
    return _png(figure)


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
