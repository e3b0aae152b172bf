"""Running tallies of turn records for the live Voice quality view.

Fed one record at a time (as dicts, the form they travel in between Locust processes),
it keeps per-band counts of the four documented metrics, intent accuracy per utterance
and the diagnoses seen. It keeps counts, not records, so a long run costs no memory.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from voiceharness import bands, diagnoses

# Turns cut short by the end of the run are neither successes nor gateway failures.
RUN_STOPPED = "run_stopped"

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


def _number(value: Any) -> float:
    if value in (None, ""):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class LiveStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.turns = 0
        self.succeeded = 0
        self.stopped = 0
        self.band_counts: dict[str, Counter[str]] = {metric: Counter() for metric in _TITLES}
        self.per_utterance: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [intent right, judged]
        self.expected_intent: dict[str, str] = {}
        self.diagnoses: Counter[str] = Counter()
        self.last_detail: dict[str, str] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        self.turns += 1
        failure = str(record.get("failure") or "")
        if failure == RUN_STOPPED:
            self.stopped += 1
            return
        if not failure:
            self.succeeded += 1
        else:
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
        utterance = str(record.get("utterance_id") or "")
        if utterance and record.get("expected_intent") and not failure.startswith("connection"):
            tally = self.per_utterance[utterance]
            tally[1] += 1
            tally[0] += int(record.get("intent") == record.get("expected_intent"))
            self.expected_intent[utterance] = str(record.get("expected_intent"))

    def rows(self) -> list[dict[str, Any]]:
        """Rows for one table: section, item, turns, share, detail."""
        rows: list[dict[str, Any]] = []
        judged = self.turns - self.stopped
        rows.append(
            {
                "section": "Turns",
                "item": "succeeded / ended",
                "turns": f"{self.succeeded} / {judged}",
                "share": _share(self.succeeded, judged),
                "detail": f"{self.stopped} cut short by the end of the run" if self.stopped else "",
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
        for code, count in self.diagnoses.most_common():
            diagnosis = diagnoses.DIAGNOSES.get(code)
            rows.append(
                {
                    "section": "Diagnoses",
                    "item": f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else code,
                    "turns": count,
                    "share": _share(count, judged),
                    "detail": (
                        f"{self.last_detail.get(code, '')} — causes: {'; '.join(diagnosis.causes)}; "
                        f"fix: {'; '.join(diagnosis.fixes)}"
                        if diagnosis
                        else self.last_detail.get(code, "")
                    ),
                }
            )
        return rows


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"
