"""Send lateness of every audio frame a process sends, kept cheaply: a histogram per second.

A load generator is only trustworthy while it sends on time. The pacer (and the baseline
clients in ``bench/``) call :meth:`LatenessStats.add` once per frame — a few list operations,
no allocation — and the run's percentiles come from the histograms afterwards, for any
window of whole seconds (warm-up apart from steady state). Bins are 0.1 ms wide up to
100 ms; a percentile is reported as the upper edge of its bin, the maximum exactly.

Seconds are whole seconds of ``time.monotonic()``, which on Linux is one clock for every
process, so windows line up with CPU samples taken by another process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

BIN_MS = 0.1
BINS = 1000  # 0 .. 100 ms in 0.1 ms bins; the last bin holds everything later


RETAIN_S = 300  # seconds of per-second detail kept (every benchmark window fits); older ones are folded


class LatenessStats:
    """Send lateness of every frame, as a 0.1 ms histogram per whole second of monotonic time.

    A row is a list of ``BINS`` counts, the frame count and the maximum lateness in µs (8 KB; a
    list, not an ``array``: a list's item update is half the cost, and it runs per frame). The
    last ``retain_s`` seconds keep their own rows, for windows such as the resource monitor's
    last few seconds; an older second is folded into :attr:`folded`, so a day-long run holds the
    same 2.4 MB as a five-minute one.
    """

    def __init__(self, retain_s: int = RETAIN_S) -> None:
        self.retain_s = retain_s
        self.seconds: dict[int, list[int]] = {}  # second -> [bins..., frames, max lateness in µs]
        self.folded = [0] * (BINS + 2)  # every second older than the retained ones
        self.folded_through = -1  # the newest second folded
        self._second = -1
        self._row: list[int] = []
        self.streams_max = 0

    def add(self, now: float, late_s: float) -> None:
        second = int(now)
        if second != self._second:
            self._row, self._second = self.row_for(second), second
        row = self._row
        late_us = int(late_s * 1e6)
        index = late_us // 100 if late_us > 0 else 0
        row[index if index < BINS else BINS - 1] += 1
        row[BINS] += 1
        if late_us > row[BINS + 1]:  # noqa: PLR1730 (once per frame: a compare is cheaper than max())
            row[BINS + 1] = late_us

    def row_for(self, second: int) -> list[int]:
        """The histogram row of one whole second, for a caller that books frames inline
        (the pacer's hot loop does :meth:`add`'s work itself: a method call per frame counts).
        A new second folds the seconds that have left the retained window."""
        row = self.seconds.get(second)
        if row is None:
            if second <= self.folded_through:  # a frame stamped in a second already folded
                return self.folded
            row = self.seconds[second] = [0] * (BINS + 2)
            self._fold_before(second - self.retain_s + 1)
        return row

    def _fold_before(self, first_kept: int) -> None:
        old = [second for second in self.seconds if second < first_kept]
        folded = self.folded
        for second in old:
            row = self.seconds.pop(second)
            for index, value in enumerate(row[:BINS]):
                if value:
                    folded[index] += value
            folded[BINS] += row[BINS]
            if row[BINS + 1] > folded[BINS + 1]:  # noqa: PLR1730
                folded[BINS + 1] = row[BINS + 1]
            self.folded_through = max(self.folded_through, second)
        if old and self._second in old:
            self._second = -1  # add() must not book into a row that is gone

    def summary(self, first_second: int | None = None, last_second: int | None = None) -> dict[str, float]:
        """frames, p50/p99/max lateness in ms over whole seconds [first, last] (all when None).

        The seconds folded into :attr:`folded` count only in a window that reaches back to the
        run's start (``first_second`` None): a window that starts among them sees the retained ones."""
        hist = [0] * BINS
        frames = 0
        max_us = 0
        if first_second is not None and last_second is not None and last_second - first_second < len(self.seconds):
            # A short window (the resource monitor asks for the last few seconds, every few
            # seconds, all run long): look its seconds up rather than pass over the whole run.
            rows = [row for second in range(first_second, last_second + 1)
                    if (row := self.seconds.get(second)) is not None]
        else:
            rows = [row for second, row in self.seconds.items()
                    if (first_second is None or second >= first_second)
                    and (last_second is None or second <= last_second)]
        if first_second is None and self.folded[BINS]:
            rows.append(self.folded)
        for row in rows:
            for index, value in enumerate(row[:BINS]):
                if value:
                    hist[index] += value
            frames += row[BINS]
            max_us = max(max_us, row[BINS + 1])
        return {
            "frames": frames,
            "p50_ms": histogram_percentile(hist, 50),
            "p99_ms": histogram_percentile(hist, 99),
            "max_ms": max_us / 1000.0 if frames else math.nan,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "bin_ms": BIN_MS,
            "streams_max": self.streams_max,
            "seconds": {
                str(second): {
                    "frames": row[BINS],
                    "max_ms": row[BINS + 1] / 1000.0,
                    "hist": {str(i): v for i, v in enumerate(row[:BINS]) if v},
                }
                for second, row in sorted(self.seconds.items())
            },
            # the seconds before those above, folded into one histogram (a run longer than retain_s)
            "folded": {
                "through_second": self.folded_through,
                "frames": self.folded[BINS],
                "max_ms": self.folded[BINS + 1] / 1000.0,
                "hist": {str(i): v for i, v in enumerate(self.folded[:BINS]) if v},
            },
        }


def histogram_percentile(hist: Sequence[int], q: float) -> float:
    """The q-th percentile (upper edge of its 0.1 ms bin, in ms) of a lateness histogram."""
    total = sum(hist)
    if not total:
        return math.nan
    rank = max(1, math.ceil(q / 100 * total))
    running = 0
    for index, value in enumerate(hist):
        running += value
        if running >= rank:
            return round((index + 1) * BIN_MS, 3)
    return round(len(hist) * BIN_MS, 3)


def merge(histograms: Iterable[Mapping[str, int]]) -> list[int]:
    """Sum sparse JSON histograms (``{"bin": count}``) into one dense list."""
    dense = [0] * BINS
    for hist in histograms:
        for index, value in hist.items():
            dense[int(index)] += value
    return dense


def window_summary(stats_json: Mapping[str, object], first_second: int, last_second: int) -> dict[str, float]:
    """frames, p50/p99/max (ms) of a :meth:`LatenessStats.to_json` document over whole seconds [first, last]."""
    seconds = stats_json["seconds"]
    assert isinstance(seconds, Mapping)
    rows = [row for second, row in seconds.items() if first_second <= int(second) <= last_second]
    hist = merge(row["hist"] for row in rows)
    frames = sum(row["frames"] for row in rows)
    return {
        "frames": frames,
        "p50_ms": histogram_percentile(hist, 50),
        "p99_ms": histogram_percentile(hist, 99),
        "max_ms": max((row["max_ms"] for row in rows), default=math.nan),
    }
