"""The maths of a run's analysis, as pure functions of numpy arrays.

:func:`summarize` turns a :class:`~analysis.readers.Run` into one JSON-ready dict, the single
source of every figure the terminal, the HTML page, report.json and the gate show::

    run          what was read; turns, failures, duration, users, workers; the percentile source
    metrics      roundtrip / latency / chunks / reconnections: percentiles, band counts, band
    timings      intent_ms / reply_ms / connect_ms percentiles (no documented bands)
    intent       accuracy overall, per utterance, per expected intent, confusion matrix
    diagnoses    each failure code seen, with the guide's headline, causes and fixes
    locust       Locust's failures and user-code exceptions
    send_lateness whether the load generator kept its real-time send schedule
    uplink_backlog whether the link carried the audio in real time (audio still queued at end of speech)
    verdict      one level (ok / warning / problem) and one line

Conventions:

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
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from analysis.readers import Categorical, Run, StatsRow, Turns
from voiceharness import bands, guide
from voiceharness.diagnoses import DIAGNOSES
from voiceharness.errors import AnalysisError

PERCENTILES = (50, 90, 95, 99)
STAT_NAMES = ("p50", "p90", "p95", "p99", "max")

# Where each documented metric comes from.
METRICS: dict[str, dict[str, str]] = {
    bands.ROUNDTRIP: {
        "title": "Roundtrip",
        "unit": "ms",
        "column": "roundtrip_ms",
        "locust_kind": "roundtrip",
        "per": "turns",
        "definition": "end of speech -> first reply audio frame",
    },
    bands.LATENCY: {
        "title": "Latency (ping)",
        "unit": "ms",
        "column": "ping_ms",
        "locust_kind": "ping",
        "per": "turns",
        "definition": "WebSocket ping -> pong round trip",
    },
    bands.CHUNKS: {
        "title": "Audio chunks",
        "unit": "chunks",
        "column": "chunks_sent",
        "locust_kind": "",
        "per": "turns",
        "definition": "audio frames sent for the turn",
    },
    bands.RECONNECTIONS: {
        "title": "Reconnections",
        "unit": "",
        "column": "reconnections",
        "locust_kind": "",
        "per": "users",
        "definition": "reconnects of a user's connection",
    },
}
TIMINGS = {"intent_ms": "time to intent", "reply_ms": "full reply", "connect_ms": "connect"}

# Send lateness (actual - due send time of a frame): above WARN the generator was busy and its
# timings are inflated by about that much; above BOTTLENECK it could not keep real time.
LATENESS_WARN_MS = 10.0
LATENESS_BOTTLENECK_MS = 50.0
# Audio still unsent in the kernel at end of speech (voiceharness.uplink). One 64 ms frame in
# the queue is normal jitter; a median of more means the link is slower than real-time audio.
UPLINK_BACKLOG_WARN_MS = 100.0

NO_INTENT = "(none)"
_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]+")


# --- small pure helpers -------------------------------------------------------------------------


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def percentiles(values: np.ndarray, *, counts: bool = False) -> dict[str, float | None]:
    """p50/p90/p95/p99, min, max, mean of the non-NaN ``values``.

    Times use linear interpolation; ``counts`` (chunks, reconnections) use the observed value
    at or above the rank, so a percentile of whole numbers is a whole number.
    """
    data = finite(values)
    if not len(data):
        return {"p50": None, "p90": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    points = np.percentile(data, PERCENTILES, method="higher" if counts else "linear")
    result: dict[str, float | None] = {f"p{q}": float(v) for q, v in zip(PERCENTILES, points)}
    result.update(max=float(data.max()), min=float(data.min()), mean=float(data.mean()))
    return result


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


def band_table(metric: str, values: np.ndarray) -> list[dict]:
    """Count and share of ``values`` in each band of ``metric``, best band first."""
    counts = bands.band_counts(metric, values)
    total = sum(counts.values())
    return [
        {
            "band": name,
            "meaning": bands.MEANINGS[metric].get(name, ""),
            "count": count,
            "share": count / total if total else None,
        }
        for name, count in counts.items()
    ]


def overall_band(metric: str, stats: dict[str, float | None]) -> str | None:
    """The metric's band for the run: of the p95, or of the median for chunks."""
    value = stats.get("p50" if metric == bands.CHUNKS else "p95")
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


def bucketed_percentiles(
    times: np.ndarray,
    values: np.ndarray,
    buckets: int = 120,
    quantiles: Iterable[float] = (0.5, 0.95, 0.99),
) -> dict[str, np.ndarray]:
    """Per time bucket: centre, count and nearest-rank quantiles of ``values`` (NaN dropped).

    Vectorised: one lexsort of (bucket, value), then each bucket's quantile is an index into it.
    """
    ok = ~np.isnan(values) & ~np.isnan(times)
    times, values = np.asarray(times)[ok], np.asarray(values)[ok]
    result: dict[str, np.ndarray] = {"time": np.empty(0), "count": np.empty(0, dtype=int)}
    quantiles = tuple(quantiles)
    for q in quantiles:
        result[f"q{q:g}"] = np.empty(0)
    if not len(times):
        return result
    start, end = float(times.min()), float(times.max())
    width = max((end - start) / buckets, 1e-9)
    index = np.minimum(((times - start) / width).astype(np.int64), buckets - 1)
    order = np.lexsort((values, index))
    sorted_values = values[order]
    counts = np.bincount(index, minlength=buckets)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    present = counts > 0
    result["time"] = (start + (np.arange(buckets) + 0.5) * width)[present]
    result["count"] = counts[present]
    for q in quantiles:
        position = starts[present] + np.floor(q * (counts[present] - 1)).astype(np.int64)
        result[f"q{q:g}"] = sorted_values[position]
    return result


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


def mixture_band_counts(metric: str, rows: list[StatsRow]) -> list[dict]:
    """Estimated count and share per band of requests pooled from Locust rows (edges interpolated)."""
    grid, cdf = _mixture_cdf(rows)
    total = sum(row.requests for row in rows)
    names = bands.BANDS[metric]
    if grid is None or not total:
        return [
            {"band": n, "meaning": bands.MEANINGS[metric].get(n, ""), "count": 0, "share": None}
            for n in names
        ]
    edges = _edges(metric)
    below = [float(np.interp(edge, grid, cdf, left=0.0, right=1.0)) for edge in edges] + [1.0]
    shares = np.diff([0.0] + below)
    return [
        {
            "band": n,
            "meaning": bands.MEANINGS[metric].get(n, ""),
            "count": round(s * total),
            "share": float(s),
        }
        for n, s in zip(names, shares)
    ]


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


# --- the summary --------------------------------------------------------------------------------


def summarize(run: Run) -> dict:
    """Every figure of the analysis of ``run`` as one JSON-ready dict (see the module docstring)."""
    turns = run.turns
    summary: dict = {"run": _run_info(run)}
    if turns is not None:
        # A turn the end of the run cut short is neither a success nor a gateway failure:
        # it is counted apart and left out of every figure.
        turns = turns.where(~turns.failure_is(RUN_STOPPED))
        summary["metrics"] = {metric: _metric_from_turns(metric, turns) for metric in METRICS}
        summary["timings"] = {
            name: {"title": title, **percentiles(turns.numbers[name])}
            for name, title in TIMINGS.items()
            if name in turns.numbers
        }
        summary["intent"] = intent_accuracy(
            turns.texts["utterance_id"], turns.texts["expected_intent"], turns.texts["intent"]
        )
        summary["diagnoses"] = diagnosis_counts(turns.texts["failure"], turns.numbers["success"])
        summary["send_lateness"] = send_lateness(
            turns.numbers["send_lateness_p99_ms"],
            turns.numbers["send_lateness_max_ms"],
            turns.texts["worker"],
            frame_level=(run.status or {}).get("send_lateness"),
        )
        summary["uplink_backlog"] = uplink_backlog(turns.numbers.get("uplink_backlog_ms"))
    else:
        stats = run.stats or []
        summary["metrics"] = {metric: _metric_from_locust(metric, stats) for metric in METRICS}
        summary["timings"] = {}
        summary["intent"] = intent_from_locust(stats)
        summary["diagnoses"] = diagnoses_from_locust(run.failures or [])
        summary["send_lateness"] = {"turns": 0, "status": "unknown", "note": "needs the turns file"}
        summary["uplink_backlog"] = uplink_backlog(None)
    summary["locust"] = _locust_section(run)
    summary["verdict"] = verdict(summary)
    return summary


def _run_info(run: Run) -> dict:
    info: dict = {
        "prefix": run.prefix,
        "label": run.label,
        "files": dict(run.files),
        "missing": list(run.missing),
    }
    turns = run.turns
    if turns is not None:
        stopped = turns.failure_is(RUN_STOPPED)
        cut_short = int(stopped.sum())
        info["cut_short"] = cut_short
        if cut_short:
            info["cut_short_note"] = (
                f"{cut_short} turn(s) cut short by the end of the run (run_stopped): not counted"
            )
        turns = turns.where(~stopped)
        n = len(turns)
        if n == 0:
            raise AnalysisError(
                f"{run.turns.path}: all {cut_short} turns were cut short by the end of the run; "
                "run longer (-t) or with --stop-timeout so turns can finish"
            )
        success = turns.numbers["success"] > 0
        times = turns.numbers["timestamp"]
        start, end = float(times.min()), float(times.max())
        duration = end - start
        info.update(
            mode="turns",
            percentile_source="per-turn records (exact)",
            turns=n,
            succeeded=int(success.sum()),
            failed=int(n - success.sum()),
            failure_rate=float((n - success.sum()) / n),
            start=_iso(start),
            end=_iso(end),
            duration_s=duration,
            turns_per_s=n / duration if duration > 0 else None,
            workers=len(np.unique(turns.texts["worker"].codes)),
            users=len(np.unique(user_keys(turns))),
        )
    else:
        requests = sum(row.requests for row in run.stats or [])
        failures = sum(row.failures for row in run.stats or [])
        info.update(
            mode="locust-only",
            percentile_source="Locust's rounded percentiles (no turns file: values are rounded to 10 ms "
            "above 100 ms and 100 ms above 1 s, band shares are estimates)",
            turns=None,
            requests=requests,
            failed=failures,
            failure_rate=failures / requests if requests else None,
        )
    if run.history is not None and len(run.history.timestamp):
        history = run.history
        info.setdefault("start", _iso(float(history.timestamp.min())))
        info.setdefault("end", _iso(float(history.timestamp.max())))
        info.setdefault("duration_s", float(history.timestamp.max() - history.timestamp.min()))
        info["peak_users"] = int(np.nanmax(history.users)) if len(history.users) else None
    return info


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def _metric_from_turns(metric: str, turns: Turns) -> dict:
    spec = METRICS[metric]
    values = turns.numbers[spec["column"]]
    if metric == bands.RECONNECTIONS:
        values = group_max(user_keys(turns), values)
    elif metric == bands.CHUNKS:
        # Turns that never streamed (the connection failed first) say nothing about command length.
        values = values[values > 0]
    stats = percentiles(values, counts=spec["unit"] != "ms")
    entry = {
        **spec,
        "source": "turns",
        "exact": True,
        "count": len(finite(values)),
        "percentiles": stats,
        "bands": band_table(metric, values),
        "band": overall_band(metric, stats),
        "band_basis": "p50" if metric == bands.CHUNKS else "p95",
        "note": "",
    }
    if metric == bands.CHUNKS:
        entry["received"] = percentiles(turns.numbers["chunks_received"], counts=True)
    return entry


def _metric_from_locust(metric: str, stats: list[StatsRow]) -> dict:
    spec = METRICS[metric]
    rows = [row for row in stats if spec["locust_kind"] and row.kind == spec["locust_kind"]]
    empty = {"p50": None, "p90": None, "p95": None, "p99": None, "max": None, "min": None, "mean": None}
    if not rows:
        note = (
            "not in Locust's CSVs: needs the turns file"
            if not spec["locust_kind"]
            else f"no '{spec['locust_kind']}' rows in Locust's stats"
        )
        return {
            **spec,
            "source": None,
            "exact": False,
            "count": 0,
            "percentiles": empty,
            "bands": [],
            "band": None,
            "band_basis": "p95",
            "note": note,
        }
    values = mixture_quantiles(rows, [0.5, 0.9, 0.95, 0.99])
    requests = sum(row.requests for row in rows)
    stats_ = dict(zip(("p50", "p90", "p95", "p99"), values))
    stats_.update(
        max=max(row.max_ms for row in rows),
        min=min(row.min_ms for row in rows),
        mean=sum(row.average_ms * row.requests for row in rows) / requests if requests else None,
    )
    return {
        **spec,
        "per": "requests",
        "source": "locust",
        "exact": False,
        "count": requests,
        "percentiles": stats_,
        "bands": mixture_band_counts(metric, rows),
        "band": overall_band(metric, stats_),
        "band_basis": "p95",
        "note": "Locust's rounded percentiles; band shares estimated from them",
    }


def intent_accuracy(utterance: Categorical, expected: Categorical, recognised: Categorical) -> dict:
    """Accuracy overall, per utterance and per expected intent, and the confusion matrix.

    Only turns with an expected intent count; a turn with no recognised intent counts as wrong
    and appears in the matrix as ``(none)``. All counting is ``np.bincount`` on integer codes.
    """
    expected_labels = np.asarray(expected.labels, dtype=object)
    has_expected = expected_labels[expected.codes] != ""
    if not has_expected.any():
        return {
            "source": "turns",
            "turns": 0,
            "correct": 0,
            "accuracy": None,
            "per_utterance": [],
            "per_intent": [],
            "confusion": {"expected": [], "recognised": [], "counts": []},
        }
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
    confusion = {
        "expected": [shown(i) for i in expected_used],
        "recognised": [shown(i) for i in recognised_used],
        "counts": matrix[np.ix_(expected_used, recognised_used)].tolist(),
    }
    per_intent = []
    for i in expected_used:
        n, hits, predicted = int(matrix[i].sum()), int(matrix[i, i]), int(matrix[:, i].sum())
        per_intent.append(
            {
                "intent": shown(i),
                "turns": n,
                "correct": hits,
                "accuracy": hits / n,
                "recognised_as_it": predicted,
                "precision": hits / predicted if predicted else None,
            }
        )

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
            {
                "utterance": str(utterance.labels[u]),
                "expected": shown(int(pair_expected[u].argmax())),
                "turns": n,
                "correct": hits,
                "accuracy": hits / n,
                "top_wrong": None if top_wrong is None else shown(top_wrong),
                "top_wrong_count": 0 if top_wrong is None else int(pair_wrong[u, top_wrong]),
            }
        )
    per_utterance.sort(key=lambda row: (row["accuracy"], row["utterance"]))
    total = int(has_expected.sum())
    return {
        "source": "turns",
        "turns": total,
        "correct": int(correct.sum()),
        "accuracy": float(correct.sum() / total),
        "per_utterance": per_utterance,
        "per_intent": per_intent,
        "confusion": confusion,
    }


def intent_from_locust(stats: list[StatsRow]) -> dict:
    """Accuracy from Locust's ``intent`` rows: a failed intent request is a wrong or missing intent."""
    rows = [row for row in stats if row.kind == "intent"]
    total = sum(row.requests for row in rows)
    correct = total - sum(row.failures for row in rows)
    per_utterance = sorted(
        (
            {
                "utterance": row.name,
                "expected": None,
                "turns": row.requests,
                "correct": row.requests - row.failures,
                "accuracy": (row.requests - row.failures) / row.requests,
                "top_wrong": None,
                "top_wrong_count": 0,
            }
            for row in rows
            if row.requests
        ),
        key=lambda row: (row["accuracy"], row["utterance"]),
    )
    return {
        "source": "locust" if rows else None,
        "turns": total,
        "correct": correct,
        "accuracy": correct / total if total else None,
        "per_utterance": per_utterance,
        "per_intent": [],
        "confusion": {"expected": [], "recognised": [], "counts": []},
        "note": "from Locust's intent failures; per-intent accuracy and the confusion matrix need the turns file",
    }


def _diagnosis_entry(code: str, count: int, total: int) -> dict:
    diagnosis = DIAGNOSES.get(code)
    if diagnosis is None:
        return {
            "code": code,
            "count": count,
            "share": count / total if total else None,
            "known": False,
            "headline": "Unclassified failure",
            "finding": code,
            "causes": [],
            "fixes": ["see failure_detail in the turns file"],
        }
    return {
        "code": code,
        "count": count,
        "share": count / total if total else None,
        "known": True,
        "headline": diagnosis.headline,
        "finding": diagnosis.finding,
        "causes": list(diagnosis.causes),
        "fixes": list(diagnosis.fixes),
    }


def diagnosis_counts(failure: Categorical, success: np.ndarray) -> list[dict]:
    """Each diagnosis code among failed turns, most frequent first, with causes and fixes."""
    failed = ~(success > 0)
    counts = np.bincount(failure.codes[failed], minlength=len(failure.labels))
    total = int(failed.sum())
    entries = []
    for i in np.flatnonzero(counts):
        code = str(failure.labels[i]) or "unclassified"
        entries.append(_diagnosis_entry(code, int(counts[i]), total))
    return sorted(entries, key=lambda e: (-e["count"], e["code"]))


def diagnose_error_text(error: str) -> str | None:
    """The diagnosis code named in a Locust error message, if it names one."""
    for word in _CODE_PATTERN.findall(error):
        if word in DIAGNOSES:
            return word
    return None


def diagnoses_from_locust(failures: list) -> list[dict]:
    """Diagnoses from Locust's failures CSV, by the code each error message carries."""
    counts: dict[str, int] = {}
    for row in failures:
        code = diagnose_error_text(row.error) or "unclassified"
        counts[code] = counts.get(code, 0) + row.occurrences
    total = sum(counts.values())
    return sorted(
        (_diagnosis_entry(c, n, total) for c, n in counts.items()), key=lambda e: (-e["count"], e["code"])
    )


def send_lateness(
    p99_ms: np.ndarray, max_ms: np.ndarray, worker: Categorical, frame_level: dict | None = None
) -> dict:
    """Did the load generator keep its send schedule? Per run and per worker.

    ``frame_level`` is the run status's per-worker summary over every frame sent
    (``{worker: {"frames", "p50_ms", "p99_ms", "max_ms"}}``). When present it decides the status:
    a p99 of per-turn p99s is nearly the worst frame of the worst 1 % of turns, so one short
    hiccup would otherwise condemn a whole run.
    """
    ok = ~np.isnan(p99_ms)
    if not ok.any():
        return {"turns": 0, "status": "unknown", "note": "no send lateness recorded"}
    per_turn = p99_ms[ok]
    p99 = float(np.percentile(per_turn, 99))
    frames = {name: figures for name, figures in (frame_level or {}).items() if figures.get("frames")}
    judged_p99 = max((float(f["p99_ms"]) for f in frames.values()), default=p99)
    status = (
        "bottleneck" if judged_p99 > LATENESS_BOTTLENECK_MS
        else "strained" if judged_p99 > LATENESS_WARN_MS else "kept up"
    )
    codes = worker.codes[ok]
    per_worker = []
    for w in np.unique(codes):
        mine = codes == w
        worker_max = finite(max_ms[ok][mine])
        per_worker.append(
            {
                "worker": str(worker.labels[w]),
                "turns": int(mine.sum()),
                "p99_ms": float(np.percentile(per_turn[mine], 99)),
                "max_ms": float(worker_max.max()) if len(worker_max) else None,
            }
        )
    per_worker.sort(key=lambda row: -row["p99_ms"])
    maxima = finite(max_ms)
    explanation = {
        "kept up": "the load generator kept its real-time send schedule; the timings measure the gateway",
        "strained": f"the load generator sent frames late (p99 > {LATENESS_WARN_MS:g} ms); timings may be "
        "inflated by about that much: add workers or lower the users per worker",
        "bottleneck": f"the load generator was the bottleneck (p99 send lateness > {LATENESS_BOTTLENECK_MS:g} ms): "
        "it could not stream in real time; add workers before trusting these timings",
    }[status]
    return {
        "turns": int(ok.sum()),
        "p50_ms": float(np.percentile(per_turn, 50)),
        "p99_ms": p99,
        "max_ms": float(maxima.max()) if len(maxima) else None,
        "late_turns": int((per_turn > LATENESS_WARN_MS).sum()),
        "late_share": float((per_turn > LATENESS_WARN_MS).mean()),
        "warn_ms": LATENESS_WARN_MS,
        "bottleneck_ms": LATENESS_BOTTLENECK_MS,
        "status": status,
        "judged_by": "frame-level p99 (run status)" if frames else "p99 of per-turn p99",
        "frame_level": frames,
        "explanation": explanation,
        "per_worker": per_worker,
    }


def uplink_backlog(backlog_ms: np.ndarray | None) -> dict:
    """Did the link carry the audio in real time? From each turn's ``uplink_backlog_ms``.

    The audio still queued in the kernel at end of speech reaches the gateway that much later,
    so a roundtrip measured over a slow uplink includes it; the status says whether it does.
    """
    measured = finite(backlog_ms) if backlog_ms is not None else np.empty(0)
    if not len(measured):
        note = "needs the turns file" if backlog_ms is None else "not recorded (older turns file, or no kernel figure)"
        return {"turns": 0, "status": "unknown", "note": note}
    p50 = float(np.percentile(measured, 50))
    status = "backlogged" if p50 > UPLINK_BACKLOG_WARN_MS else "real time"
    explanation = {
        "real time": "the link carried the audio as fast as it was spoken",
        "backlogged": f"the link from the harness to the gateway is slower than real-time audio: at end of speech "
        f"a median {p50:.0f} ms of audio had not left this machine, and every roundtrip includes at least that "
        "long (more: the link drains it slower than it was spoken); "
        "check the uplink bandwidth (PCM16 16 kHz needs 256 kbit/s per user) or run fewer users per machine",
    }[status]
    return {
        "turns": len(measured),
        "p50_ms": p50,
        "p95_ms": float(np.percentile(measured, 95)),
        "max_ms": float(measured.max()),
        "backlogged_turns": int((measured > UPLINK_BACKLOG_WARN_MS).sum()),
        "warn_ms": UPLINK_BACKLOG_WARN_MS,
        "status": status,
        "explanation": explanation,
    }


def _locust_section(run: Run) -> dict:
    failures = [
        {
            "kind": row.method,
            "name": row.name,
            "error": row.error,
            "occurrences": row.occurrences,
            "diagnosis": diagnose_error_text(row.error),
        }
        for row in sorted(run.failures or [], key=lambda r: -r.occurrences)
    ]
    exceptions = [
        {"count": row.count, "message": row.message, "nodes": row.nodes}
        for row in sorted(run.exceptions or [], key=lambda r: -r.count)
    ]
    requests = {}
    for row in run.stats or []:
        entry = requests.setdefault(row.kind, {"requests": 0, "failures": 0})
        entry["requests"] += row.requests
        entry["failures"] += row.failures
    return {"requests_by_kind": requests, "failures": failures, "exceptions": exceptions}


# --- the verdict --------------------------------------------------------------------------------

_BAD_BANDS = {
    bands.ROUNDTRIP: {"bad"},
    bands.LATENCY: {"slow"},
    bands.RECONNECTIONS: {"network problems", "critical"},
}
_WARN_BANDS = {bands.ROUNDTRIP: {"slow"}, bands.LATENCY: {"average"}, bands.RECONNECTIONS: {"minor problems"}}
FAILURE_RATE_PROBLEM = 0.05
ACCURACY_PROBLEM = 0.90
ACCURACY_WARN = 0.98


def verdict(summary: dict) -> dict:
    """One line for the whole run: ``ok``, ``warning`` or ``problem``, and why.

    problem: roundtrip p95 bad, latency p95 slow, reconnections at network problems or worse,
    more than 5 % of turns failed, or intent accuracy below 90 %. warning: the band just above
    those, any failure, accuracy below 98 %, a load generator that fell behind, or exceptions
    in user code. Otherwise ok.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for metric, bad in _BAD_BANDS.items():
        entry = summary["metrics"][metric]
        band, basis = entry["band"], entry["band_basis"]
        value = entry["percentiles"].get(basis)
        described = f"{metric} {band} ({basis} {_short(value)}{entry['unit'] and ' ' + entry['unit']})"
        if band in bad:
            problems.append(described)
        elif band in _WARN_BANDS[metric]:
            warnings.append(described)
    run = summary["run"]
    rate, failed = run.get("failure_rate"), run.get("failed") or 0
    if failed:
        top = summary["diagnoses"][0]["code"] if summary["diagnoses"] else None
        text = f"{failed} failed ({rate:.1%}{', mostly ' + top if top else ''})"
        (problems if rate is not None and rate > FAILURE_RATE_PROBLEM else warnings).append(text)
    accuracy = summary["intent"].get("accuracy")
    if accuracy is not None:
        if accuracy < ACCURACY_PROBLEM:
            problems.append(f"intent accuracy {accuracy:.1%}")
        elif accuracy < ACCURACY_WARN:
            warnings.append(f"intent accuracy {accuracy:.1%}")
    lateness = summary["send_lateness"]["status"]
    if lateness in ("strained", "bottleneck"):
        warnings.append(
            f"load generator {'was the bottleneck' if lateness == 'bottleneck' else 'fell behind'}"
        )
    backlog = summary.get("uplink_backlog", {})
    if backlog.get("status") == "backlogged":
        warnings.append(f"uplink slower than real time (median {_short(backlog['p50_ms'])} ms of audio queued at end of speech)")
    exceptions = sum(e["count"] for e in summary["locust"]["exceptions"])
    if exceptions:
        warnings.append(f"{exceptions} exception(s) in user code")
    level = "problem" if problems else "warning" if warnings else "ok"
    good = []
    for metric in (bands.ROUNDTRIP, bands.LATENCY):
        entry = summary["metrics"][metric]
        if entry["band"] and not any(text.startswith(metric) for text in problems + warnings):
            good.append(f"{metric} {entry['band']} (p95 {_short(entry['percentiles']['p95'])} ms)")
    if accuracy is not None and accuracy >= ACCURACY_WARN:
        good.append(f"intent accuracy {accuracy:.1%}")
    if lateness == "kept up":
        good.append("load generator kept up")
    parts = problems + warnings if level != "ok" else good
    return {
        "level": level,
        "problems": problems,
        "warnings": warnings,
        "text": f"{level.upper()}: " + ("; ".join(parts) if parts else "nothing measured"),
    }


def _short(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() or abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"
