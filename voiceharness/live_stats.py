"""Running tallies of turn records for the live Voice quality view.

Fed one record at a time (as dicts, the form they travel in between Locust processes),
it keeps per-band counts of the four documented metrics, intent accuracy per utterance,
where each intent came from, the time to an audible reply, and the diagnoses seen. It keeps
counts and fixed-size histograms, not records, so a long run costs no memory.

As in the analysis, the bands, accuracy and diagnoses are those of real-time turns: a
fast-paced turn (streamed as fast as the socket takes) is not a user's experience, so fast
turns get rows of their own. Turns cut short by the end of the run (``run_stopped``) and turns
the harness itself broke (``harness_error``) are neither successes nor gateway failures.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
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
    if value in (None, ""):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class MsHistogram:
    """Times in 10 ms bins up to 30 s (one overflow bin): percentiles within 10 ms, in bounded memory.

    A percentile is the mean of the values in the bin that holds its rank, so it is never more
    than one bin from the exact figure (the analysis of the turns file gives the exact ones).
    """

    BIN_MS = 10.0
    BINS = 3000

    def __init__(self) -> None:
        self.counts = [0] * (self.BINS + 1)
        self.sums = [0.0] * (self.BINS + 1)
        self.n = 0
        self.max_ms = -math.inf

    def add(self, value_ms: float) -> None:
        if math.isnan(value_ms):
            return
        index = min(max(int(value_ms // self.BIN_MS), 0), self.BINS)
        self.counts[index] += 1
        self.sums[index] += value_ms
        self.n += 1
        self.max_ms = max(self.max_ms, value_ms)

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


class _PaceTally:
    """What one pace's turns came to: ended, succeeded, failures by code."""

    def __init__(self) -> None:
        self.ended = 0
        self.succeeded = 0
        self.failures: Counter[str] = Counter()
        self.judged = 0
        self.correct = 0
        self.roundtrip = MsHistogram()


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

    @property
    def succeeded(self) -> int:
        return self.realtime.succeeded

    def add(self, record: Mapping[str, Any]) -> None:
        self.turns += 1
        failure = str(record.get("failure") or "")
        if failure == RUN_STOPPED:
            self.stopped += 1
            return
        if failure == HARNESS_ERROR:
            self.harness_errors += 1
            self.harness_error_detail = str(record.get("failure_detail") or "")
            return
        fast = record.get("pace") == FAST
        tally = self.fast if fast else self.realtime
        tally.ended += 1
        tally.roundtrip.add(_number(record.get("roundtrip_ms")))
        if not failure:
            tally.succeeded += 1
        else:
            tally.failures[failure] += 1
        intent, expected = str(record.get("intent") or ""), str(record.get("expected_intent") or "")
        source = str(record.get("intent_source") or "") or ("metadata" if intent else "")
        if source and expected:
            tally.judged += 1
            tally.correct += int(intent == expected)
        if fast:
            return
        if failure:
            self.diagnoses[failure] += 1
            self.last_detail[failure] = str(record.get("failure_detail") or "")
        for metric, column in (
            (bands.ROUNDTRIP, "roundtrip_ms"),
            (bands.LATENCY, "ping_ms"),
            (bands.CHUNKS, "chunks_sent"),
            (bands.RECONNECTIONS, "reconnections"),
        ):
            value = _number(record.get(column))
            if not math.isnan(value):
                self.band_counts[metric][bands.band_of(metric, value)] += 1
        audible = _number(record.get("audible_ms"))
        self.audible.add(audible)
        self.audible_lead.add(audible - _number(record.get("roundtrip_ms")))
        stalls = _number(record.get("playback_stalls"))
        if not math.isnan(stalls):
            self.stalls_measured += 1
            self.stalled += int(stalls > 0)
        self.sources[source] += 1
        audio_intent = str(record.get("audio_intent") or "")
        if source == "metadata" and audio_intent:
            self.judge_both += 1
            self.judge_agreed += int(audio_intent == intent)
        utterance = str(record.get("utterance_id") or "")
        if utterance and expected:
            if not source:
                self.not_judged[failure or "not sampled for judging"] += 1
                return
            tally_u = self.per_utterance[utterance]
            tally_u[1] += 1
            tally_u[0] += int(intent == expected)
            self.expected_intent[utterance] = expected

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


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"
