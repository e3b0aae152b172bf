"""The maths of a run's analysis, as pure functions of numpy arrays.

:func:`summarize` turns a :class:`~analysis.readers.Run` into a :class:`~analysis.summary.RunSummary`,
the single source of every figure the terminal, the HTML page, report.json and the gate show
(:mod:`analysis.summary` lists its sections). Each section is built by a function here or in
:mod:`analysis.judge`, :mod:`analysis.replies` and :mod:`analysis.resources`; the verdict last,
from the others.

Conventions:

* Bands, percentiles, timings, intent accuracy, diagnoses and the verdict are computed on
  real-time turns. A fast-paced turn (``pace = fast``: streamed as fast as the socket takes) is
  not what a user experiences, so fast turns are summarised apart in ``fast`` and the verdict
  says how many it left out.
* ``run_stopped`` (cut short by the end of the run) and ``harness_error`` (a bug in the harness)
  turns are neither successes nor gateway failures: counted apart, left out of every figure.

* Percentiles are numpy's linear interpolation over the unrounded per-turn values; NaN
  (not observed, e.g. no reply audio) is left out. Without a turns file they are read from
  Locust's rounded percentile columns and marked ``exact: false``.
* Band edges and who owns them come from :mod:`voiceharness.bands` only.
* A metric's overall band is the band of its p95 (a run is as good as its slow tail), except
  chunks, which are not better or worse, whose band is that of the median.
* Reconnections are counted per user (the record holds a user's reconnections so far, so a
  user's value is its largest), the other metrics per turn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from analysis import judge, replies
from analysis.readers import Categorical, FailureRow, Run, StatsRow, Turns
from analysis.resources import summarize_resources
from analysis.stats import Percentiles, finite, label_counts, percentiles
from analysis.summary import (
    LOCUST_ONLY_MODE,
    TURNS_MODE,
    Audible,
    BandCount,
    Confusion,
    Diagnosis,
    FastTurns,
    FrameLateness,
    HarnessErrors,
    IntentAccuracy,
    IntentSources,
    IntentSummary,
    JudgeAgreement,
    JudgeConfusion,
    KindCount,
    LocustException,
    LocustFailure,
    LocustSummary,
    MetricSummary,
    NetworkProfileSummary,
    PaceCounts,
    RunInfo,
    RunSummary,
    SendLateness,
    Timing,
    UplinkBacklog,
    UtteranceAccuracy,
    Verdict,
    WorkerLateness,
    frozen_mapping,
)
from analysis.verdict import LATENESS_BOTTLENECK_MS, LATENESS_WARN_MS, lateness_status, verdict
from voiceharness import bands, guide
from voiceharness.diagnoses import DIAGNOSES
from voiceharness.errors import AnalysisError


@dataclass(frozen=True)
class MetricSpec:
    """What a documented metric is and where its values come from."""

    title: str
    unit: str
    column: str  # in the turns file
    locust_kind: str  # Locust's request type of its rows, "" when Locust's CSVs do not have it
    per: str  # what is counted: turns, or users
    definition: str


# Where each documented metric comes from.
METRICS: dict[str, MetricSpec] = {
    bands.ROUNDTRIP: MetricSpec(
        "Roundtrip", "ms", "roundtrip_ms", "roundtrip", "turns", "end of speech -> first reply audio frame"
    ),
    bands.LATENCY: MetricSpec("Latency (ping)", "ms", "ping_ms", "ping", "turns", "WebSocket ping -> pong round trip"),
    bands.CHUNKS: MetricSpec("Audio chunks", "chunks", "chunks_sent", "", "turns", "audio frames sent for the turn"),
    bands.RECONNECTIONS: MetricSpec(
        "Reconnections", "", "reconnections", "", "users", "reconnects of a user's connection"
    ),
}
TIMINGS = {
    "audible_ms": "time to audible reply",
    "client_tail_ms": "roundtrip, the client's part",
    "gateway_response_ms": "roundtrip, the gateway's part",
    "intent_ms": "time to intent",
    "reply_ms": "full reply",
    "connect_ms": "connect",
    "reply_audio_ms": "reply audio duration",
}

# Audio still unsent in the kernel at end of speech (voiceharness.uplink). One 64 ms frame in
# the queue is normal jitter; a median of more means the link is slower than real-time audio.
UPLINK_BACKLOG_WARN_MS = 100.0

NO_INTENT = "(none)"
_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]+")
NEEDS_TURNS = "needs the turns file"


# --- small pure helpers -------------------------------------------------------------------------


def band_ranges(metric: str) -> dict[str, str]:
    """Each band's range as text, showing which side owns each edge (see voiceharness.bands)."""
    unit = " ms" if metric in (bands.ROUNDTRIP, bands.LATENCY) else ""
    names = bands.BANDS[metric]
    if metric in (bands.ROUNDTRIP, bands.LATENCY):
        a, b, c = guide.ROUNDTRIP_EDGES_MS if metric == bands.ROUNDTRIP else guide.LATENCY_EDGES_MS
        texts = [f"< {a}", f"{a} - {b}", f"over {b} to {c}", f"> {c}"]
    elif metric == bands.RECONNECTIONS:
        _, minor, network = guide.RECONNECTION_EDGES
        texts = ["0", f"1 - {minor}", f"{minor + 1} - {network}", f"> {network}"]
    else:
        low, high = guide.CHUNKS_NORMAL_RANGE
        texts = [f"< {low}", f"{low} - {high}", f"> {high}"]
    return {name: text + unit for name, text in zip(names, texts)}


def band_table(metric: str, values: np.ndarray) -> tuple[BandCount, ...]:
    """Count and share of ``values`` in each band of ``metric``, best band first."""
    counts = bands.band_counts(metric, values)
    total = sum(counts.values())
    return tuple(
        BandCount(name, bands.MEANINGS[metric].get(name, ""), count, count / total if total else None)
        for name, count in counts.items()
    )


def band_basis(metric: str) -> str:
    """The statistic a metric's overall band is of: the p95 (a run is as good as its slow tail), the
    median for chunks (neither better nor worse)."""
    return "p50" if metric == bands.CHUNKS else "p95"


def overall_band(metric: str, stats: Percentiles) -> str | None:
    """The metric's band for the run: of the p95, or of the median for chunks."""
    value = stats.stat(band_basis(metric))
    return None if value is None else bands.band_of(metric, value)


def group_max(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The largest value per distinct key (NaN values ignored; keys whose values are all NaN dropped)."""
    ok = ~np.isnan(values)
    keys, values = keys[ok], values[ok]
    if not len(keys):
        return np.empty(0)
    unique, inverse = np.unique(keys, return_inverse=True)
    out = np.full(len(unique), -np.inf)
    np.maximum.at(out, inverse, values)
    return out


def user_keys(turns: Turns) -> np.ndarray:
    """One integer per (worker, user): the identity of a Locust user across workers."""
    worker = turns.texts["worker"].codes.astype(np.int64)
    user = np.nan_to_num(turns.numbers["user"], nan=-1).astype(np.int64)
    return worker * (int(user.max(initial=0)) + 2) + (user + 1)


def window_turns(n: int) -> int:
    """Turns per window for percentiles over time: a tenth of the run, within 25 and 1,000.

    At 25 turns a window's p95 and p99 already fall on different turns (a p99 of three turns,
    what 120 time buckets gave a short run, is their max), and no window needs more than 1,000.
    """
    return int(min(max(n // 10, 25), 1000, n))


def percentiles_by_turn_count(
    times: np.ndarray, values: np.ndarray, window: int | None = None
) -> dict[str, np.ndarray]:
    """p50/p95/p99 over a window of consecutive turns (in time order), sliding by a fifth of it.

    Windows hold equal numbers of turns, not equal spans of time, so every point rests on enough
    turns for its percentiles to differ. ``time`` is each window's median start time.
    """
    ok = ~np.isnan(values) & ~np.isnan(times)
    times, values = np.asarray(times, dtype=float)[ok], np.asarray(values, dtype=float)[ok]
    keys = ("time", "p50", "p95", "p99")
    if not len(times):
        return {key: np.empty(0) for key in keys} | {"window": 0}
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    window = window_turns(len(times)) if window is None else min(window, len(times))
    stride = max(1, window // 5)
    starts = np.arange(0, len(times) - window + 1, stride)
    if starts[-1] != len(times) - window:  # the last turns always get a window
        starts = np.append(starts, len(times) - window)
    rows = starts[:, None] + np.arange(window)[None, :]
    points = np.percentile(values[rows], [50, 95, 99], axis=1)
    return {
        "time": np.median(times[rows], axis=1),
        "p50": points[0],
        "p95": points[1],
        "p99": points[2],
        "window": window,
    }


def rate_per_bucket(
    times: np.ndarray, mask: np.ndarray | None = None, bucket_s: float = 1.0
) -> dict[str, np.ndarray]:
    """Events per second over time (all of ``times``, or those where ``mask``)."""
    times = np.asarray(times, dtype=float)
    if not len(times):
        return {"time": np.empty(0), "rate": np.empty(0)}
    start = float(np.nanmin(times))
    index = ((times - start) // bucket_s).astype(np.int64)
    size = int(index.max()) + 1
    counts = np.bincount(index, weights=None if mask is None else mask.astype(float), minlength=size)
    return {"time": start + np.arange(size) * bucket_s, "rate": counts / bucket_s}


# --- Locust-only estimates ----------------------------------------------------------------------


def mixture_quantiles(rows: list[StatsRow], quantiles: Iterable[float]) -> list[float | None]:
    """Quantiles of several Locust rows pooled together, from their rounded percentile columns.

    Each row's CDF is interpolated through (0, min), its percentile points and (1, max); the
    rows are mixed by request count and the mixture inverted. With one row this returns
    Locust's own (rounded) values at its percentile columns.
    """
    grid, cdf = _mixture_cdf(rows)
    if grid is None:
        return [None for _ in quantiles]
    return [float(np.interp(q, cdf, grid)) for q in quantiles]


def mixture_band_counts(metric: str, rows: list[StatsRow]) -> tuple[BandCount, ...]:
    """Estimated count and share per band of requests pooled from Locust rows (edges interpolated)."""
    grid, cdf = _mixture_cdf(rows)
    total = sum(row.requests for row in rows)
    names = bands.BANDS[metric]
    if grid is None or not total:
        return tuple(BandCount(n, bands.MEANINGS[metric].get(n, ""), 0, None) for n in names)
    edges = _edges(metric)
    below = [float(np.interp(edge, grid, cdf, left=0.0, right=1.0)) for edge in edges] + [1.0]
    shares = np.diff([0.0] + below)
    return tuple(
        BandCount(n, bands.MEANINGS[metric].get(n, ""), round(s * total), float(s)) for n, s in zip(names, shares)
    )


def _edges(metric: str) -> list[float]:
    return list(guide.ROUNDTRIP_EDGES_MS if metric == bands.ROUNDTRIP else guide.LATENCY_EDGES_MS)


def _mixture_cdf(rows: list[StatsRow]) -> tuple[np.ndarray | None, np.ndarray]:
    curves = []
    for row in rows:
        if row.requests <= 0:
            continue
        points = sorted((q / 100.0, v) for q, v in row.percentiles_ms.items() if not math.isnan(v))
        probs = [0.0] + [p for p, _ in points] + [1.0]
        values = [row.min_ms] + [v for _, v in points] + [row.max_ms]
        values = np.maximum.accumulate(np.nan_to_num(np.asarray(values, dtype=float), nan=0.0))
        curves.append((row.requests, np.asarray(probs), values))
    if not curves:
        return None, np.empty(0)
    grid = np.unique(np.concatenate([values for _, _, values in curves]))
    total = sum(weight for weight, _, _ in curves)
    cdf = np.zeros(len(grid))
    for weight, probs, values in curves:
        # The CDF of one row at each grid value: the largest probability reached at or below it.
        cdf += weight * np.interp(grid, values, probs, left=0.0, right=1.0)
    return grid, cdf / total


RUN_STOPPED = "run_stopped"
HARNESS_ERROR = "harness_error"
FAST = "fast"
# Turns that are neither a success nor a failure of the gateway: counted apart, in no figure.
NOT_COUNTED = (RUN_STOPPED, HARNESS_ERROR)
FAST_NOTE = (
    "They stream as fast as the socket takes, not at the pace of speech: their roundtrip is not a user's "
    "experience, so they are not banded and not in the verdict"
)


# --- the summary --------------------------------------------------------------------------------


def split_turns(turns: Turns) -> tuple[Turns, Turns, Turns]:
    """(counted, real-time, fast) turns: counted leaves out run_stopped and harness_error turns."""
    counted = turns.where(~turns.text_is("failure", *NOT_COUNTED))
    fast = counted.text_is("pace", FAST)
    return counted, counted.where(~fast), counted.where(fast)


def summarize(run: Run) -> RunSummary:
    """Every figure of the analysis of ``run`` (see :mod:`analysis.summary`)."""
    info = _run_info(run)
    locust = _locust_section(run)
    turns = run.turns
    if turns is not None:
        counted, realtime, fast = split_turns(turns)
        backlog = counted.numbers.get("uplink_backlog_ms")
        shaped = ~counted.text_is("network_profile", "")
        summary = RunSummary(
            run=info,
            metrics=frozen_mapping({metric: _metric_from_turns(metric, realtime) for metric in METRICS}),
            audible=replies.audible(realtime),
            timings=timings(realtime),
            intent=judged_intent_accuracy(realtime),
            intent_sources=judge.intent_sources(realtime),
            judge=judge.judge_agreement(realtime),
            replies=replies.reply_audio(realtime),
            diagnoses=diagnosis_counts(realtime.texts["failure"], realtime.numbers["success"]),
            fast=fast_turns(fast),
            harness_errors=harness_errors(turns),
            send_lateness=send_lateness(
                counted.numbers["send_lateness_max_ms"],
                counted.texts["worker"],
                frame_level=(run.status or {}).get("send_lateness"),
            ),
            # A backlog on an emulated --network link is the profile's doing, not the machine's:
            # the run's uplink status is judged on the other turns, the shaped ones by profile below.
            uplink_backlog=_machine_uplink(backlog, counted.text_is("pace", FAST), shaped),
            resources=summarize_resources(run.resources),
            locust=locust,
            verdict=Verdict("ok", (), (), 0, ""),  # replaced below, from the other sections
            by_network=by_network(realtime),
        )
    else:
        stats = run.stats or []
        diagnoses = diagnoses_from_locust(run.failures or [])
        summary = RunSummary(
            run=info,
            metrics=frozen_mapping({metric: _metric_from_locust(metric, stats) for metric in METRICS}),
            audible=Audible(0, Percentiles(), Percentiles(), replies.AUDIBLE_DEFINITION, NEEDS_TURNS),
            timings=frozen_mapping({}),
            intent=intent_from_locust(stats),
            intent_sources=IntentSources(0, (), False, NEEDS_TURNS),
            judge=JudgeAgreement(0, 0, None, 0, JudgeConfusion(), NEEDS_TURNS),
            replies=None,
            diagnoses=diagnoses,
            fast=FastTurns(0, NEEDS_TURNS),
            harness_errors=harness_errors_from_locust(diagnoses),
            send_lateness=SendLateness(0, "unknown", NEEDS_TURNS),
            uplink_backlog=uplink_backlog(None),
            resources=summarize_resources(run.resources),
            locust=locust,
            verdict=Verdict("ok", (), (), 0, ""),  # replaced below, from the other sections
        )
    if run.calls is not None:
        from analysis.calls import summarize_calls

        summary = replace(summary, calls=summarize_calls(run.calls, turns))
    return replace(summary, verdict=summary_verdict(summary))


def _machine_uplink(backlog: np.ndarray | None, fast: np.ndarray, shaped: np.ndarray) -> UplinkBacklog:
    if backlog is None:
        return uplink_backlog(np.full(len(fast), np.nan), fast)
    if len(shaped) and shaped.all():
        return UplinkBacklog(0, "unknown", 0, "", note="every turn ran on an emulated --network link: "
                             "its backlog is in the by-profile table")
    return uplink_backlog(backlog[~shaped], fast[~shaped])


def by_network(turns: Turns) -> tuple[NetworkProfileSummary, ...]:
    """Every metric and its band by ``--network`` profile (real-time turns), when any turn had one."""
    column = turns.text("network_profile")
    names = [name for name, _ in label_counts(column.labels, column.codes)]
    if not any(names):
        return ()
    out = []
    for name in sorted(names, key=lambda n: (n == "", n)):
        subset = turns.where(turns.text_is("network_profile", name))
        backlog = subset.numbers.get("uplink_backlog_ms")
        backlog_max = finite(subset.numbers["uplink_backlog_max_ms"]) if "uplink_backlog_max_ms" in subset.numbers \
            else np.zeros(0)
        out.append(NetworkProfileSummary(
            profile=name,
            turns=len(subset),
            metrics=frozen_mapping({metric: _metric_from_turns(metric, subset) for metric in METRICS}),
            uplink_backlog=uplink_backlog(np.full(len(subset), np.nan) if backlog is None else backlog),
            uplink_backlog_max_p95_ms=float(np.percentile(backlog_max, 95)) if len(backlog_max) else None,
        ))
    return tuple(out)


def summary_verdict(summary: RunSummary) -> Verdict:
    """The verdict on a summary's other sections (:func:`verdict`)."""
    return verdict(
        summary.metrics,
        summary.run.paced,
        diagnoses=summary.diagnoses,
        accuracy=summary.intent.accuracy,
        lateness=summary.send_lateness.status,
        uplink=summary.uplink_backlog,
        exceptions=summary.locust.exception_count,
        harness_errors=summary.harness_errors.count,
        fast=summary.fast,
    )


def timings(turns: Turns) -> Mapping[str, Timing]:
    """Percentiles of the timings with no documented band, the time to an audible reply first."""
    return frozen_mapping({
        name: Timing(title, "ms", len(finite(turns.numbers[name])), percentiles(turns.numbers[name]))
        for name, title in TIMINGS.items()
        if name in turns.numbers
    })  # fmt: skip


def judged_intent_accuracy(turns: Turns) -> IntentSummary:
    """Intent accuracy over the judged turns, per source, and how many were not judged."""
    judged = turns.where(judge.judged(turns))
    result = intent_accuracy(
        judged.texts["utterance_id"], judged.texts["expected_intent"], judged.texts["intent"]
    )
    return replace(result, by_source=judge.accuracy_by_source(turns), not_judged=judge.not_judged(turns))


def fast_turns(fast: Turns) -> FastTurns:
    """Fast-paced turns on their own: counts, failures, accuracy, timings. Never banded."""
    n = len(fast)
    if not n:
        return FastTurns(0, FAST_NOTE)
    succeeded = int((fast.numbers["success"] > 0).sum())
    return FastTurns(
        turns=n,
        note=FAST_NOTE,
        succeeded=succeeded,
        failed=n - succeeded,
        failure_rate=(n - succeeded) / n,
        roundtrip=percentiles(fast.numbers["roundtrip_ms"]),
        latency=percentiles(fast.numbers["ping_ms"]),
        timings=timings(fast),
        intent=judged_intent_accuracy(fast),
        diagnoses=diagnosis_counts(fast.texts["failure"], fast.numbers["success"]),
    )


HARNESS_ERROR_ADVICE = (
    "A bug in the harness (or in scenario code), not a failure of the gateway: read the traceback the "
    "harness logged once for it, and report it"
)


def harness_errors(turns: Turns) -> HarnessErrors:
    """Turns the harness itself broke: counted apart from the gateway's failures, with the advice."""
    mask = turns.failure_is(HARNESS_ERROR)
    count = int(mask.sum())
    details = turns.where(mask).text("failure_detail")
    examples = tuple([text for text, _ in label_counts(details.labels, details.codes) if text][:3])
    return _harness_errors(count, count / len(turns) if len(turns) else None, examples)


def harness_errors_from_locust(diagnoses: Sequence[Diagnosis]) -> HarnessErrors:
    return _harness_errors(sum(d.count for d in diagnoses if d.code == HARNESS_ERROR), None, ())


def _harness_errors(count: int, share: float | None, examples: tuple[str, ...]) -> HarnessErrors:
    diagnosis = DIAGNOSES[HARNESS_ERROR]
    return HarnessErrors(count, share, diagnosis.headline, diagnosis.finding, HARNESS_ERROR_ADVICE, examples)


def _run_info(run: Run) -> RunInfo:
    status = run.status or {}
    history = run.history if run.history is not None and len(run.history.timestamp) else None
    common = {
        "prefix": run.prefix,
        "label": run.label,
        # where the load went, when the harness recorded it in PREFIX_run.json
        "target": status.get("target") or status.get("host") or None,
        "files": frozen_mapping(run.files),
        "missing": tuple(run.missing),
        "history": history is not None,
        "peak_users": int(np.nanmax(history.users)) if history is not None and len(history.users) else None,
    }
    # A Locust-only run's times come from Locust's history; a turns file's from its turns.
    span = {}
    if history is not None:
        span = {
            "start": _iso(float(history.timestamp.min())),
            "end": _iso(float(history.timestamp.max())),
            "duration_s": float(history.timestamp.max() - history.timestamp.min()),
        }
    turns = run.turns
    if turns is None:
        requests = sum(row.requests for row in run.stats or [])
        failures = sum(row.failures for row in run.stats or [])
        return RunInfo(
            **common,
            **span,
            mode=LOCUST_ONLY_MODE,
            percentile_source="Locust's rounded percentiles (no turns file: values are rounded to 10 ms "
            "above 100 ms and 100 ms above 1 s, band shares are estimates)",
            turns=None,
            requests=requests,
            failed=failures,
            failure_rate=failures / requests if requests else None,
        )
    cut_short = int(turns.failure_is(RUN_STOPPED).sum())
    broken = int(turns.failure_is(HARNESS_ERROR).sum())
    counted, realtime, fast = split_turns(turns)
    n = len(counted)
    if n == 0:
        if broken:
            raise AnalysisError(
                f"{turns.path}: every turn ended in harness_error ({broken}), {cut_short} cut short: the "
                "harness itself failed, not the gateway. Read the traceback it logged once for it"
            )
        raise AnalysisError(
            f"{turns.path}: all {cut_short} turns were cut short by the end of the run; "
            "run longer (-t) or with --stop-timeout so turns can finish"
        )
    success = counted.numbers["success"] > 0
    times = counted.numbers["timestamp"]
    start, end = float(times.min()), float(times.max())
    duration = end - start
    dialects = counted.text("dialect")
    return RunInfo(
        **common,
        mode=TURNS_MODE,
        percentile_source="per-turn records (exact)",
        turns=n,
        succeeded=int(success.sum()),
        failed=int(n - success.sum()),
        failure_rate=float((n - success.sum()) / n),
        cut_short=cut_short,
        harness_errors=broken,
        realtime=_pace_counts(realtime),
        fast=_pace_counts(fast),
        start=_iso(start),
        end=_iso(end),
        duration_s=duration,
        turns_per_s=n / duration if duration > 0 else None,
        workers=len(np.unique(counted.texts["worker"].codes)),
        users=len(np.unique(user_keys(counted))),
        dialects=tuple(name for name, _ in label_counts(dialects.labels, dialects.codes) if name),
    )


def _pace_counts(turns: Turns) -> PaceCounts:
    n = len(turns)
    succeeded = int((turns.numbers["success"] > 0).sum())
    return PaceCounts(n, succeeded, n - succeeded, (n - succeeded) / n if n else None)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def _metric_from_turns(metric: str, turns: Turns) -> MetricSummary:
    spec = METRICS[metric]
    values = turns.numbers[spec.column]
    if metric == bands.RECONNECTIONS:
        values = group_max(user_keys(turns), values)
    elif metric == bands.CHUNKS:
        # Turns that never streamed (the connection failed first) say nothing about command length.
        values = values[values > 0]
    stats = percentiles(values, counts=spec.unit != "ms")
    return MetricSummary(
        **vars(spec),
        source="turns",
        exact=True,
        count=len(finite(values)),
        percentiles=stats,
        bands=band_table(metric, values),
        band=overall_band(metric, stats),
        band_basis=band_basis(metric),
        note="",
        received=percentiles(turns.numbers["chunks_received"], counts=True) if metric == bands.CHUNKS else None,
    )


def _metric_from_locust(metric: str, stats: list[StatsRow]) -> MetricSummary:
    spec = METRICS[metric]
    rows = [row for row in stats if spec.locust_kind and row.kind == spec.locust_kind]
    if not rows:
        note = (
            "not in Locust's CSVs: needs the turns file"
            if not spec.locust_kind
            else f"no '{spec.locust_kind}' rows in Locust's stats"
        )
        return MetricSummary(**vars(spec), source=None, exact=False, count=0, percentiles=Percentiles(), bands=(),
                             band=None, band_basis="p95", note=note)  # fmt: skip
    p50, p90, p95, p99 = mixture_quantiles(rows, [0.5, 0.9, 0.95, 0.99])
    requests = sum(row.requests for row in rows)
    stats_ = Percentiles(
        p50, p90, p95, p99,
        max=max(row.max_ms for row in rows),
        min=min(row.min_ms for row in rows),
        mean=sum(row.average_ms * row.requests for row in rows) / requests if requests else None,
    )  # fmt: skip
    return MetricSummary(
        **{**vars(spec), "per": "requests"},
        source="locust",
        exact=False,
        count=requests,
        percentiles=stats_,
        bands=mixture_band_counts(metric, rows),
        band=overall_band(metric, stats_),
        band_basis="p95",
        note="Locust's rounded percentiles; band shares estimated from them",
    )


def intent_accuracy(utterance: Categorical, expected: Categorical, recognised: Categorical) -> IntentSummary:
    """Accuracy overall, per utterance and per expected intent, and the confusion matrix.

    Only turns with an expected intent count; a turn with no recognised intent counts as wrong
    and appears in the matrix as ``(none)``. All counting is ``np.bincount`` on integer codes.
    """
    expected_labels = np.asarray(expected.labels, dtype=object)
    has_expected = expected_labels[expected.codes] != ""
    if not has_expected.any():
        return IntentSummary("turns", 0, 0, None)
    # Put both intent columns on one label set so codes compare directly.
    labels = sorted(set(expected_labels) | set(recognised.labels))
    position = {label: i for i, label in enumerate(labels)}
    exp = np.array([position[x] for x in expected.labels], dtype=np.int64)[expected.codes][has_expected]
    rec = np.array([position[x] for x in recognised.labels], dtype=np.int64)[recognised.codes][has_expected]
    utt = utterance.codes[has_expected].astype(np.int64)
    correct = exp == rec
    k = len(labels)
    matrix = np.bincount(exp * k + rec, minlength=k * k).reshape(k, k)

    expected_used = [i for i in range(k) if matrix[i].sum() > 0]
    recognised_used = [i for i in range(k) if matrix[:, i].sum() > 0]
    shown = lambda i: labels[i] or NO_INTENT
    confusion = Confusion(
        expected=tuple(shown(i) for i in expected_used),
        recognised=tuple(shown(i) for i in recognised_used),
        counts=tuple(tuple(row) for row in matrix[np.ix_(expected_used, recognised_used)].tolist()),
    )
    per_intent = []
    for i in expected_used:
        n, hits, predicted = int(matrix[i].sum()), int(matrix[i, i]), int(matrix[:, i].sum())
        per_intent.append(IntentAccuracy(shown(i), n, hits, hits / n, predicted, hits / predicted if predicted else None))

    m = len(utterance.labels)
    utt_turns = np.bincount(utt, minlength=m)
    utt_correct = np.bincount(utt, weights=correct, minlength=m)
    # Most frequent expected and wrong answer per utterance, from a (utterance, intent) table.
    pair_expected = np.bincount(utt * k + exp, minlength=m * k).reshape(m, k)
    wrong = ~correct
    pair_wrong = np.bincount(utt[wrong] * k + rec[wrong], minlength=m * k).reshape(m, k)
    per_utterance = []
    for u in np.flatnonzero(utt_turns):
        n, hits = int(utt_turns[u]), int(utt_correct[u])
        top_wrong = int(pair_wrong[u].argmax()) if pair_wrong[u].any() else None
        per_utterance.append(
            UtteranceAccuracy(
                utterance=str(utterance.labels[u]),
                expected=shown(int(pair_expected[u].argmax())),
                turns=n,
                correct=hits,
                accuracy=hits / n,
                top_wrong=None if top_wrong is None else shown(top_wrong),
                top_wrong_count=0 if top_wrong is None else int(pair_wrong[u, top_wrong]),
            )
        )
    per_utterance.sort(key=lambda row: (row.accuracy, row.utterance))
    total = int(has_expected.sum())
    return IntentSummary(
        source="turns",
        turns=total,
        correct=int(correct.sum()),
        accuracy=float(correct.sum() / total),
        per_utterance=tuple(per_utterance),
        per_intent=tuple(per_intent),
        confusion=confusion,
    )


def intent_from_locust(stats: list[StatsRow]) -> IntentSummary:
    """Accuracy from Locust's ``intent`` rows: a failed intent request is a wrong or missing intent."""
    rows = [row for row in stats if row.kind == "intent"]
    total = sum(row.requests for row in rows)
    correct = total - sum(row.failures for row in rows)
    per_utterance = sorted(
        (
            UtteranceAccuracy(row.name, None, row.requests, row.requests - row.failures,
                              (row.requests - row.failures) / row.requests, None, 0)
            for row in rows
            if row.requests
        ),
        key=lambda row: (row.accuracy, row.utterance),
    )  # fmt: skip
    return IntentSummary(
        source="locust" if rows else None,
        turns=total,
        correct=correct,
        accuracy=correct / total if total else None,
        per_utterance=tuple(per_utterance),
        note="from Locust's intent failures; per-intent accuracy and the confusion matrix need the turns file",
    )


def _diagnosis_entry(code: str, count: int, total: int) -> Diagnosis:
    share = count / total if total else None
    diagnosis = DIAGNOSES.get(code)
    if diagnosis is None:
        return Diagnosis(code, count, share, False, "Unclassified failure", code, (),
                         ("see failure_detail in the turns file",))  # fmt: skip
    return Diagnosis(code, count, share, True, diagnosis.headline, diagnosis.finding, tuple(diagnosis.causes),
                     tuple(diagnosis.fixes))  # fmt: skip


def diagnosis_counts(failure: Categorical, success: np.ndarray) -> tuple[Diagnosis, ...]:
    """Each diagnosis code among failed turns, most frequent first, with causes and fixes."""
    failed = ~(success > 0)
    counts = np.bincount(failure.codes[failed], minlength=len(failure.labels))
    total = int(failed.sum())
    entries = []
    for i in np.flatnonzero(counts):
        code = str(failure.labels[i]) or "unclassified"
        entries.append(_diagnosis_entry(code, int(counts[i]), total))
    return tuple(sorted(entries, key=lambda e: (-e.count, e.code)))


def diagnose_error_text(error: str) -> str | None:
    """The diagnosis code named in a Locust error message, if it names one."""
    for word in _CODE_PATTERN.findall(error):
        if word in DIAGNOSES:
            return word
    return None


def diagnoses_from_locust(failures: Sequence[FailureRow]) -> tuple[Diagnosis, ...]:
    """Diagnoses from Locust's failures CSV, by the code each error message carries."""
    counts: dict[str, int] = {}
    for row in failures:
        code = diagnose_error_text(row.error) or "unclassified"
        counts[code] = counts.get(code, 0) + row.occurrences
    total = sum(counts.values())
    return tuple(
        sorted((_diagnosis_entry(c, n, total) for c, n in counts.items()), key=lambda e: (-e.count, e.code))
    )


LATENESS_PER_TURN = "each turn's latest frame"


def send_lateness(max_ms: np.ndarray, worker: Categorical, frame_level: dict | None = None) -> SendLateness:
    """Did the load generator keep its send schedule? Per run and per worker.

    A turn records its latest frame (``send_lateness_max_ms``); the figures here are percentiles
    *over turns* of that, and say so. ``frame_level`` is the run status's per-worker summary over
    every frame sent (``{worker: {"frames", "p50_ms", "p99_ms", "max_ms"}}``); when present it
    decides the status, because the p99 over turns of each turn's latest frame is nearly the worst
    frame of the worst 1 % of turns, and one short hiccup would otherwise condemn a whole run.
    """
    ok = ~np.isnan(max_ms)
    if not ok.any():
        return SendLateness(0, "unknown", "no send lateness recorded")
    per_turn = max_ms[ok]
    turn_p50, turn_p99 = (float(v) for v in np.percentile(per_turn, [50, 99]))
    # The figures as the run status wrote them (report.json repeats them as they were).
    frames = {
        name: FrameLateness(figures["frames"], figures["p50_ms"], figures["p99_ms"], figures.get("max_ms"))
        for name, figures in (frame_level or {}).items()
        if figures.get("frames")
    }
    if frames:
        judged_p50 = max(float(f.p50_ms) for f in frames.values())
        judged_p99 = max(float(f.p99_ms) for f in frames.values())
        judged_by = "p99 over every frame sent (run status; the worst load generator's)"
    else:
        judged_p50, judged_p99 = turn_p50, turn_p99
        judged_by = f"p99 over turns of {LATENESS_PER_TURN} (no frame-level figures: an upper bound)"
    status = lateness_status(judged_p99)
    codes = worker.codes[ok]
    per_worker = []
    for w in np.unique(codes):
        mine = per_turn[codes == w]
        name = str(worker.labels[w])
        per_worker.append(
            WorkerLateness(
                worker=name,
                turns=len(mine),
                turn_max_p99_ms=float(np.percentile(mine, 99)),
                max_ms=float(mine.max()),
                frame_p99_ms=float(frames[name].p99_ms) if name in frames else None,
            )
        )
    per_worker.sort(key=lambda row: -row.turn_max_p99_ms)
    explanation = {
        "kept up": "the load generator kept its real-time send schedule; the timings measure the gateway",
        "strained": f"the load generator sent frames late (p99 > {LATENESS_WARN_MS:g} ms); timings may be "
        "inflated by about that much: add workers or lower the users per worker",
        "bottleneck": f"the load generator was the bottleneck (p99 send lateness > {LATENESS_BOTTLENECK_MS:g} ms): "
        "it could not stream in real time; add workers before trusting these timings",
    }[status]
    worst_frame = max([float(per_turn.max())] + [float(f.max_ms) for f in frames.values() if f.max_ms is not None])
    return SendLateness(
        turns=int(ok.sum()),
        status=status,
        per_turn=LATENESS_PER_TURN,
        turn_max_p50_ms=turn_p50,
        turn_max_p99_ms=turn_p99,
        p50_ms=judged_p50,
        p99_ms=judged_p99,
        max_ms=worst_frame,
        late_turns=int((per_turn > LATENESS_WARN_MS).sum()),
        late_share=float((per_turn > LATENESS_WARN_MS).mean()),
        warn_ms=LATENESS_WARN_MS,
        bottleneck_ms=LATENESS_BOTTLENECK_MS,
        judged_by=judged_by,
        frame_level=frozen_mapping(frames),
        explanation=explanation,
        per_worker=tuple(per_worker),
    )


def uplink_backlog(backlog_ms: np.ndarray | None, fast: np.ndarray | None = None) -> UplinkBacklog:
    """Did the link carry the audio in real time? From each turn's ``uplink_backlog_ms``.

    The audio still queued in the kernel at end of speech reaches the gateway that much later,
    so a roundtrip measured over a slow uplink includes it; the status says whether it does.
    It is judged on real-time turns: a fast-paced turn fills the send queue by design, so when
    the outliers are fast turns the section says so instead of blaming the link.
    """
    if backlog_ms is None:
        return UplinkBacklog(0, "unknown", 0, "", note=NEEDS_TURNS)
    fast = np.zeros(len(backlog_ms), dtype=bool) if fast is None else fast
    measured_all = ~np.isnan(backlog_ms)
    measured = backlog_ms[measured_all & ~fast]
    over = measured_all & (np.nan_to_num(backlog_ms) > UPLINK_BACKLOG_WARN_MS)
    fast_over = int((over & fast).sum())
    fast_note = ""
    if fast_over:
        fast_note = (
            f"{fast_over} of the {int(over.sum())} turn(s) with over {UPLINK_BACKLOG_WARN_MS:g} ms of audio queued "
            f"are fast-paced (worst {float(backlog_ms[over & fast].max()):.0f} ms): they send as fast as the socket "
            "takes, so audio queues by design; they say nothing about the link and are left out of the status"
        )
    if not len(measured):
        note = "not recorded (older turns file, or no kernel figure)" if not measured_all.any() else "no real-time turn"
        return UplinkBacklog(0, "unknown", fast_over, fast_note, note=note)
    p50 = float(np.percentile(measured, 50))
    status = "backlogged" if p50 > UPLINK_BACKLOG_WARN_MS else "real time"
    explanation = {
        "real time": "the link carried the audio as fast as it was spoken",
        "backlogged": f"the link from the harness to the gateway is slower than real-time audio: at end of speech "
        f"a median {p50:.0f} ms of audio had not left this machine, and every roundtrip includes at least that "
        "long (more: the link drains it slower than it was spoken); "
        "check the uplink bandwidth (PCM16 16 kHz needs 256 kbit/s per user) or run fewer users per machine",
    }[status]
    return UplinkBacklog(
        turns=len(measured),
        status=status,
        fast_outliers=fast_over,
        fast_note=fast_note,
        p50_ms=p50,
        p95_ms=float(np.percentile(measured, 95)),
        max_ms=float(measured.max()),
        backlogged_turns=int((measured > UPLINK_BACKLOG_WARN_MS).sum()),
        warn_ms=UPLINK_BACKLOG_WARN_MS,
        explanation=explanation,
    )


def _locust_section(run: Run) -> LocustSummary:
    failures = tuple(
        LocustFailure(row.method, row.name, row.error, row.occurrences, diagnose_error_text(row.error))
        for row in sorted(run.failures or [], key=lambda r: -r.occurrences)
    )
    exceptions = tuple(
        LocustException(row.count, row.message, row.nodes) for row in sorted(run.exceptions or [], key=lambda r: -r.count)
    )
    requests: dict[str, list[int]] = {}
    for row in run.stats or []:
        entry = requests.setdefault(row.kind, [0, 0])
        entry[0] += row.requests
        entry[1] += row.failures
    return LocustSummary(
        frozen_mapping({kind: KindCount(n, failed) for kind, (n, failed) in requests.items()}), failures, exceptions
    )
