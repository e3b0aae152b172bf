"""Running tallies of turn records for the live Voice quality view.

Fed one record at a time (as dicts, the form they travel in between Locust processes),
it keeps per-band counts of the four documented metrics, intent accuracy per utterance,
where each intent came from, the time to an audible reply, and the diagnoses seen. It keeps
counts and fixed-size histograms, not records, so a long run costs no memory.

The tab opens with a **headline** (:meth:`LiveStats.headline`): the verdict the analysis would
give on the turns so far (:func:`analysis.verdict.verdict`, the same function), the roundtrip's
p50/p95/p99 and its split into the client's and the gateway's part, the time to an audible
reply, intent accuracy with where the intents came from, and whether the load generators kept
up; and a **chart** of the roundtrip's percentiles over time (:class:`RollingPercentiles`:
every 2 s, over the turns that ended in the last 10 s, as Locust's own Charts tab does).

As in the analysis, the bands, accuracy and diagnoses are those of real-time turns: a
fast-paced turn (streamed as fast as the socket takes) is not a user's experience, so fast
turns get rows of their own. Turns cut short by the end of the run (``run_stopped``) and turns
the harness itself broke (``harness_error``) are neither successes nor gateway failures.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any

from voiceharness import bands, diagnoses

# Turns cut short by the end of the run are neither successes nor gateway failures.
RUN_STOPPED = "run_stopped"
# Nor are turns the harness itself broke (a bug in the harness, logged with its traceback).
HARNESS_ERROR = "harness_error"
FAST = "fast"

_EDGE_LABELS = {
    bands.ROUNDTRIP: ("< 100 ms", "100-500 ms", "500 ms-1 s", "> 1 s"),
    bands.LATENCY: ("< 50 ms", "50-100 ms", "100-200 ms", "> 200 ms"),
    bands.RECONNECTIONS: ("0", "1-3", "4-10", "> 10"),
    bands.CHUNKS: ("< 50", "50-200", "> 200"),
}
_TITLES = {
    bands.ROUNDTRIP: "Roundtrip",
    bands.LATENCY: "Latency (ping)",
    bands.RECONNECTIONS: "Reconnections",
    bands.CHUNKS: "Audio chunks sent",
}
_SOURCES = (("metadata", "gateway metadata"), ("audio", "reply audio (the judge)"), ("", "not judged"))


def _number(value: Any) -> float:
    if type(value) is float:  # the usual cell (a turn's row): no conversion, no comparisons
        return value
    if value in (None, ""):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


_BIN_MS = 10.0
_BINS = 3000


class MsHistogram:
    """Times in 10 ms bins up to 30 s (one overflow bin): percentiles within 10 ms, in bounded memory.

    A percentile is the mean of the values in the bin that holds its rank, so it is never more
    than one bin from the exact figure (the analysis of the turns file gives the exact ones).
    """

    BIN_MS = _BIN_MS
    BINS = _BINS

    def __init__(self) -> None:
        self.counts = [0] * (self.BINS + 1)
        self.sums = [0.0] * (self.BINS + 1)
        self.n = 0
        self.max_ms = -math.inf

    def add(self, value_ms: float) -> None:
        # A dozen of these per turn: compares instead of isnan(), min() and max() calls.
        if value_ms != value_ms:  # noqa: PLR0124 — NaN: not measured
            return
        index = int(value_ms // _BIN_MS)
        if index > _BINS:  # the overflow bin
            index = _BINS
        elif index < 0:
            index = 0
        self.counts[index] += 1
        self.sums[index] += value_ms
        self.n += 1
        if value_ms > self.max_ms:  # noqa: PLR1730
            self.max_ms = value_ms

    def percentile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = max(math.ceil(q / 100.0 * self.n), 1)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return self.sums[index] / count
        return self.max_ms

    def describe(self) -> str:
        if not self.n:
            return "-"
        return (
            f"p50 {self.percentile(50):.0f} ms, p95 {self.percentile(95):.0f} ms, max {self.max_ms:.0f} ms"
        )

    def three(self) -> str:
        """``p50 / p95 / p99 ms`` (or ``-``)."""
        if not self.n:
            return "-"
        return " / ".join(f"{self.percentile(q):.0f}" for q in (50, 95, 99)) + " ms"

    def percentiles(self):
        """As the analysis's :class:`analysis.stats.Percentiles` (within a bin of the exact figures)."""
        from analysis.stats import Percentiles

        if not self.n:
            return Percentiles()
        return Percentiles(p50=self.percentile(50), p90=self.percentile(90), p95=self.percentile(95),
                           p99=self.percentile(99), max=self.max_ms)


class RollingPercentiles:
    """The chart's points: every ``every_s``, p50/p95/p99 of the values that arrived in the last
    ``window_s`` (no point while nothing did), at most ``points`` of them (the oldest dropped)."""

    def __init__(self, *, window_s: float = 10.0, every_s: float = 2.0, points: int = 1800,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_s, self.every_s, self.clock = window_s, every_s, clock
        self.values: deque[tuple[float, float]] = deque()
        self.points: deque[tuple[float, float, float, float]] = deque(maxlen=points)
        self._next = 0.0

    def add(self, value_ms: float) -> None:
        if math.isnan(value_ms):
            return
        now = self.clock()
        self._advance(now)
        self.values.append((now, value_ms))

    def _advance(self, now: float) -> None:
        if not self._next:
            self._next = now + self.every_s
        while now >= self._next:
            at = self._next
            self._next += self.every_s
            while self.values and self.values[0][0] <= at - self.window_s:
                self.values.popleft()
            recent = sorted(v for t, v in self.values if t <= at)
            if recent:
                self.points.append((round(at, 3), *(_rank(recent, q) for q in (50, 95, 99))))

    def chart(self) -> dict[str, list[float]]:
        """``{"t": [...], "p50": [...], "p95": [...], "p99": [...]}``, ``t`` in epoch seconds."""
        self._advance(self.clock())
        columns = list(zip(*self.points, strict=True)) if self.points else [[], [], [], []]
        return {name: list(column) for name, column in zip(("t", "p50", "p95", "p99"), columns, strict=True)}


def _rank(ordered: list[float], q: float) -> float:
    return round(ordered[max(math.ceil(q / 100.0 * len(ordered)), 1) - 1], 1)


class _PaceTally:
    """What one pace's turns came to: ended, succeeded, failures by code."""

    def __init__(self) -> None:
        self.ended = 0
        self.succeeded = 0
        self.failures: Counter[str] = Counter()
        self.judged = 0
        self.correct = 0
        self.roundtrip = MsHistogram()


class _NetworkTally:
    """The real-time turns of one --network profile, for the tab's by-profile rows."""

    def __init__(self) -> None:
        self.ended = 0
        self.succeeded = 0
        self.roundtrip = MsHistogram()
        self.ping = MsHistogram()
        self.backlog = MsHistogram()

    def add(self, record: Mapping[str, Any], roundtrip_ms: float, *, succeeded: bool) -> None:
        self.ended += 1
        self.succeeded += int(succeeded)
        self.roundtrip.add(roundtrip_ms)
        self.ping.add(_number(record.get("ping_ms")))
        self.backlog.add(_number(record.get("uplink_backlog_ms")))


class LiveStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.turns = 0
        self.stopped = 0
        self.harness_errors = 0
        self.harness_error_detail = ""
        self.realtime = _PaceTally()
        self.fast = _PaceTally()
        self.band_counts: dict[str, Counter[str]] = {metric: Counter() for metric in _TITLES}
        self.per_utterance: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [intent right, judged]
        self.expected_intent: dict[str, str] = {}
        self.not_judged: Counter[str] = Counter()  # reason (diagnosis, or "not sampled") -> turns
        self.sources: Counter[str] = Counter()
        self.judge_both = 0
        self.judge_agreed = 0
        self.audible = MsHistogram()
        self.audible_lead = MsHistogram()
        self.stalls_measured = 0
        self.stalled = 0
        self.diagnoses: Counter[str] = Counter()
        self.last_detail: dict[str, str] = {}
        self.ping = MsHistogram()
        self.client_tail = MsHistogram()
        self.gateway_response = MsHistogram()
        self.reconnections: dict[tuple[str, str], float] = {}  # (worker, user) -> their latest count
        self.judged_by_source: Counter[str] = Counter()
        self.correct_by_source: Counter[str] = Counter()
        self.chart = RollingPercentiles()
        self.by_network: dict[str, _NetworkTally] = {}  # --network profile -> its real-time turns

    @property
    def succeeded(self) -> int:
        return self.realtime.succeeded

    def add(self, record: Mapping[str, Any]) -> None:
        # Once per turn, on the process that owns the records: each column read once.
        self.turns += 1
        get = record.get
        failure = str(get("failure") or "")
        if failure == RUN_STOPPED:
            self.stopped += 1
            return
        if failure == HARNESS_ERROR:
            self.harness_errors += 1
            self.harness_error_detail = str(get("failure_detail") or "")
            return
        fast = get("pace") == FAST
        tally = self.fast if fast else self.realtime
        tally.ended += 1
        roundtrip = _number(get("roundtrip_ms"))
        tally.roundtrip.add(roundtrip)
        if not failure:
            tally.succeeded += 1
        else:
            tally.failures[failure] += 1
        intent, expected = str(get("intent") or ""), str(get("expected_intent") or "")
        source = str(get("intent_source") or "") or ("metadata" if intent else "")
        judged = bool(source and expected)
        if judged:
            tally.judged += 1
            tally.correct += int(intent == expected)
        if fast:
            return
        self.chart.add(roundtrip)
        profile = get("network_profile")
        if profile:
            network = self.by_network.get(profile)
            if network is None:
                network = self.by_network[profile] = _NetworkTally()
            network.add(record, roundtrip, succeeded=not failure)
        ping = _number(get("ping_ms"))
        self.ping.add(ping)
        self.client_tail.add(_number(get("client_tail_ms")))
        self.gateway_response.add(_number(get("gateway_response_ms")))
        reconnections = _number(get("reconnections"))
        if reconnections == reconnections:  # noqa: PLR0124 — not NaN
            self.reconnections[(str(get("worker") or ""), str(get("user") or ""))] = reconnections
        if judged:
            self.judged_by_source[source] += 1
            self.correct_by_source[source] += int(intent == expected)
        if failure:
            self.diagnoses[failure] += 1
            self.last_detail[failure] = str(get("failure_detail") or "")
        band_counts = self.band_counts
        for metric, value in (
            (bands.ROUNDTRIP, roundtrip),
            (bands.LATENCY, ping),
            (bands.CHUNKS, _number(get("chunks_sent"))),
            (bands.RECONNECTIONS, reconnections),
        ):
            if value == value:  # noqa: PLR0124 — not NaN
                band_counts[metric][bands.band_of(metric, value)] += 1
        audible = _number(get("audible_ms"))
        self.audible.add(audible)
        self.audible_lead.add(audible - roundtrip)
        stalls = _number(get("playback_stalls"))
        if stalls == stalls:  # noqa: PLR0124
            self.stalls_measured += 1
            self.stalled += int(stalls > 0)
        self.sources[source] += 1
        audio_intent = str(get("audio_intent") or "")
        if source == "metadata" and audio_intent:
            self.judge_both += 1
            self.judge_agreed += int(audio_intent == intent)
        utterance = str(get("utterance_id") or "")
        if utterance and expected:
            if not source:
                self.not_judged[failure or "not sampled for judging"] += 1
                return
            tally_u = self.per_utterance[utterance]
            tally_u[1] += 1
            tally_u[0] += int(intent == expected)
            self.expected_intent[utterance] = expected

    # -- the headline
    def verdict(self, *, lateness_p99_ms: float | None = None, exceptions: int = 0):
        """The verdict the analysis would give on the real-time turns so far
        (:func:`analysis.verdict.verdict`, fed with these tallies)."""
        from analysis.summary import Diagnosis, FastTurns, PaceCounts
        from analysis.verdict import lateness_status, verdict

        realtime = self.realtime
        failed = realtime.ended - realtime.succeeded
        paced = PaceCounts(realtime.ended, realtime.succeeded, failed,
                           failed / realtime.ended if realtime.ended else None)
        reconnections = MsHistogram()
        for count in self.reconnections.values():
            reconnections.add(count)
        metrics = {
            bands.ROUNDTRIP: _Banded.of(bands.ROUNDTRIP, realtime.roundtrip, "ms"),
            bands.LATENCY: _Banded.of(bands.LATENCY, self.ping, "ms"),
            bands.RECONNECTIONS: _Banded.of(bands.RECONNECTIONS, reconnections, ""),
        }
        top = [Diagnosis(code, count, None, True, "", "", (), ()) for code, count in self.diagnoses.most_common(1)]
        judged = sum(self.judged_by_source.values())
        accuracy = sum(self.correct_by_source.values()) / judged if judged else None
        lateness = lateness_status(lateness_p99_ms) if lateness_p99_ms is not None else "unknown"
        fast = FastTurns(self.fast.ended, "", self.fast.succeeded, self.fast.ended - self.fast.succeeded)
        return verdict(metrics, paced, diagnoses=top, accuracy=accuracy, lateness=lateness, exceptions=exceptions,
                       harness_errors=self.harness_errors, fast=fast)

    def headline(self, *, lateness_p99_ms: float | None = None, exceptions: int = 0) -> list[dict[str, Any]]:
        """The first rows of the tab: the answer to "is the voice loop fast, right and measured truly?"."""
        realtime = self.realtime
        judged = sum(self.judged_by_source.values())
        correct = sum(self.correct_by_source.values())
        sources = ", ".join(f"{dict(_SOURCES).get(source, source)} {n}" for source, n in self.judged_by_source.most_common())
        verdict = self.verdict(lateness_p99_ms=lateness_p99_ms, exceptions=exceptions)
        if lateness_p99_ms is None:
            lateness = ("-", "no frame sent yet")
        else:
            from analysis.verdict import lateness_status

            lateness = (lateness_status(lateness_p99_ms),
                        (f"p99 {lateness_p99_ms:.1f} ms, the latest samples of the worst load generator "
                         "(frame sent - frame due; under 10 ms: the timings measure the gateway)"))
        band = bands.band_of(bands.ROUNDTRIP, realtime.roundtrip.percentile(95)) if realtime.roundtrip.n else "-"
        return [
            {"section": "Headline", "item": "verdict (the analysis's, on the turns so far)",
             "turns": realtime.ended, "share": verdict.level.upper(), "detail": verdict.text},
            {"section": "Headline", "item": "roundtrip p50 / p95 / p99", "turns": realtime.roundtrip.n,
             "share": band, "detail": f"{realtime.roundtrip.three()}: end of speech -> first reply audio"},
            {"section": "Headline", "item": "  the client's part / the gateway's part", "turns": self.gateway_response.n,
             "share": "", "detail": f"client {self.client_tail.three()} (end of speech -> last frame or end marker "
                                    f"sent); gateway {self.gateway_response.three()} (-> first reply audio)"},
            {"section": "Headline", "item": "audible reply p50 / p95 / p99", "turns": self.audible.n, "share": "",
             "detail": f"{self.audible.three()}: end of speech -> first audible reply sample"},
            {"section": "Headline", "item": "intent accuracy", "turns": f"{correct} / {judged}",
             "share": _share(correct, judged), "detail": f"judged by: {sources}" if sources else "nothing judged yet"},
            {"section": "Headline", "item": "load generator", "turns": "", "share": lateness[0], "detail": lateness[1]},
        ]

    def rows(self) -> list[dict[str, Any]]:
        """Rows for one table: section, item, turns, share, detail."""
        rows: list[dict[str, Any]] = []
        realtime, fast = self.realtime, self.fast
        apart = ["real-time turns"]
        if self.stopped:
            apart.append(f"{self.stopped} cut short by the end of the run")
        if fast.ended:
            apart.append(f"{fast.ended} fast-paced, shown apart")
        if self.harness_errors:
            apart.append(f"{self.harness_errors} harness error(s), shown apart")
        rows.append(
            {
                "section": "Turns",
                "item": "succeeded / ended",
                "turns": f"{realtime.succeeded} / {realtime.ended}",
                "share": _share(realtime.succeeded, realtime.ended),
                "detail": "; ".join(apart),
            }
        )
        for metric, title in _TITLES.items():
            counts = self.band_counts[metric]
            total = sum(counts.values())
            for band, label in zip(bands.BANDS[metric], _EDGE_LABELS[metric]):
                rows.append(
                    {
                        "section": title,
                        "item": f"{band} ({label})",
                        "turns": counts.get(band, 0),
                        "share": _share(counts.get(band, 0), total),
                        "detail": bands.MEANINGS[metric].get(band, ""),
                    }
                )
            if metric == bands.ROUNDTRIP and self.audible.n:
                rows.append(
                    {
                        "section": "Time to audible reply",
                        "item": "end of speech -> first audible reply sample (not banded)",
                        "turns": self.audible.n,
                        "share": "",
                        "detail": f"{self.audible.describe()}; after the first reply byte: "
                        f"{self.audible_lead.describe()} (the reply's leading silence)",
                    }
                )
        if fast.ended:
            failures = ", ".join(f"{code} {count}" for code, count in fast.failures.most_common())
            accuracy = f"; intent {fast.correct} / {fast.judged} right" if fast.judged else ""
            rows.append(
                {
                    "section": "Fast-paced turns (apart)",
                    "item": "succeeded / ended",
                    "turns": f"{fast.succeeded} / {fast.ended}",
                    "share": _share(fast.succeeded, fast.ended),
                    "detail": f"roundtrip {fast.roundtrip.describe()}{accuracy}"
                    + (f"; failed: {failures}" if failures else "")
                    + "; not banded: streamed faster than speech, not a user's experience",
                }
            )
        judged_total = sum(self.sources.values())
        if judged_total:
            for source, title in _SOURCES:
                count = self.sources.get(source, 0)
                detail = ""
                if not source and self.not_judged:
                    detail = "not counted in accuracy: " + ", ".join(
                        f"{reason} {n}" for reason, n in self.not_judged.most_common()
                    )
                rows.append(
                    {
                        "section": "Intent source",
                        "item": title,
                        "turns": count,
                        "share": _share(count, judged_total),
                        "detail": detail,
                    }
                )
            if self.judge_both:
                rows.append(
                    {
                        "section": "Intent source",
                        "item": "judge agrees with metadata",
                        "turns": f"{self.judge_agreed} / {self.judge_both}",
                        "share": _share(self.judge_agreed, self.judge_both),
                        "detail": "the intent heard in the reply audio equals the gateway's metadata",
                    }
                )
        for utterance in sorted(self.per_utterance):
            right, total = self.per_utterance[utterance]
            rows.append(
                {
                    "section": "Intent accuracy",
                    "item": utterance,
                    "turns": f"{right} / {total}",
                    "share": _share(right, total),
                    "detail": f"expected {self.expected_intent.get(utterance, '')}",
                }
            )
        for profile in sorted(self.by_network):
            network = self.by_network[profile]
            p95 = network.roundtrip.percentile(95)
            band = f" ({bands.band_of(bands.ROUNDTRIP, p95)})" if p95 is not None else ""
            rows.append(
                {
                    "section": "By network profile",
                    "item": profile,
                    "turns": f"{network.succeeded} / {network.ended}",
                    "share": _share(network.succeeded, network.ended),
                    "detail": f"roundtrip {network.roundtrip.describe()}{band}; ping {network.ping.describe()}; "
                    f"uplink backlog {network.backlog.describe()} (emulated link, docs/networks.md)",
                }
            )
        if self.stalls_measured:
            rows.append(
                {
                    "section": "Replies",
                    "item": "playback stalls",
                    "turns": f"{self.stalled} / {self.stalls_measured}",
                    "share": _share(self.stalled, self.stalls_measured),
                    "detail": "streamed replies whose audio would have run out if played as it arrived",
                }
            )
        for code, count in self.diagnoses.most_common():
            diagnosis = diagnoses.DIAGNOSES.get(code)
            rows.append(
                {
                    "section": "Diagnoses",
                    "item": f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else code,
                    "turns": count,
                    "share": _share(count, realtime.ended),
                    "detail": (
                        f"{self.last_detail.get(code, '')} — causes: {'; '.join(diagnosis.causes)}; "
                        f"fix: {'; '.join(diagnosis.fixes)}"
                        if diagnosis
                        else self.last_detail.get(code, "")
                    ),
                }
            )
        if self.harness_errors:
            diagnosis = diagnoses.DIAGNOSES[HARNESS_ERROR]
            rows.append(
                {
                    "section": "Harness errors (apart)",
                    "item": f"{diagnosis.headline}: {diagnosis.finding}",
                    "turns": self.harness_errors,
                    "share": "",
                    "detail": (f"{self.harness_error_detail} — " if self.harness_error_detail else "")
                    + "not a gateway failure, not counted as one; fix: " + "; ".join(diagnosis.fixes),
                }
            )
        return rows


class _Banded:
    """A documented metric as the verdict reads it (band, the statistic it is of, percentiles)."""

    def __init__(self, band: str | None, band_basis: str, unit: str, percentiles) -> None:
        self.band, self.band_basis, self.unit, self.percentiles = band, band_basis, unit, percentiles

    @classmethod
    def of(cls, metric: str, histogram: MsHistogram, unit: str) -> _Banded:
        p95 = histogram.percentile(95)
        return cls(bands.band_of(metric, p95) if p95 is not None else None, "p95", unit, histogram.percentiles())


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"
