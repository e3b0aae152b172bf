"""Baseline against candidate: which metric moved, by how much, and into which band.

:func:`compare` takes two :class:`~analysis.summary.RunSummary` and returns a
:class:`Comparison`. A statistic has *moved* when it changed by at least ``moved_pct`` percent
(default 5 %) or crossed a band edge. For roundtrip, latency and reconnections higher is worse;
chunks only get longer or shorter. The time to an audible reply is compared too, without bands.
Like the report, a comparison is of real-time turns; it says how many fast-paced turns each
run left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.summary import JsonRecord, RunSummary
from voiceharness import bands

COMPARED_STATS = ("p50", "p95", "p99")
MOVED_PCT = 5.0
HIGHER_IS_WORSE = {bands.ROUNDTRIP: True, bands.LATENCY: True, bands.RECONNECTIONS: True, bands.CHUNKS: None}


@dataclass(frozen=True)
class ComparedValue(JsonRecord):
    """One statistic in both runs: the delta (absolute and percent), each value's band, the direction
    (``better``, ``worse``, ``longer``, ``shorter``, ``same``, ``n/a``) and whether it moved."""

    metric: str
    stat: str
    baseline: float | None
    candidate: float | None
    delta: float | None = None
    delta_pct: float | None = None
    baseline_band: str | None = None
    candidate_band: str | None = None
    direction: str = "n/a"
    moved: bool = False


@dataclass(frozen=True)
class BandChange(JsonRecord):
    """A metric's overall band in both runs; ``change`` is ``same``, ``better``, ``worse``... or ``n/a``."""

    metric: str
    baseline: str | None
    candidate: str | None
    change: str


@dataclass(frozen=True)
class ScalarChange(JsonRecord):
    """A fraction (accuracy, failure rate, judge agreement) in both runs."""

    name: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    direction: str
    moved: bool


@dataclass(frozen=True)
class FastLeftOut(JsonRecord):
    baseline: int
    candidate: int


@dataclass(frozen=True)
class Comparison(JsonRecord):
    """What changed from the baseline run to the candidate."""

    baseline: str
    candidate: str
    baseline_prefix: str
    candidate_prefix: str
    moved_pct: float
    rows: tuple[ComparedValue, ...]
    bands: tuple[BandChange, ...]
    scalars: tuple[ScalarChange, ...]
    moved: tuple[str, ...]
    worse: tuple[str, ...]
    exact: bool  # both runs had a turns file
    fast_left_out: FastLeftOut


def _direction(higher_is_worse: bool | None, delta: float) -> str:
    if delta == 0:
        return "same"
    if higher_is_worse is None:
        return "longer" if delta > 0 else "shorter"
    return "worse" if (delta > 0) == higher_is_worse else "better"


# Timings with no documented band, compared like the banded ones (higher is worse).
UNBANDED = {"audible": "audible"}


def compare_values(
    metric: str,
    stat: str,
    baseline: float | None,
    candidate: float | None,
    *,
    moved_pct: float = MOVED_PCT,
) -> ComparedValue:
    """One row: both values, the delta (absolute and percent), each value's band, and whether it moved."""
    if baseline is None or candidate is None:
        return ComparedValue(metric, stat, baseline, candidate)
    delta = candidate - baseline
    delta_pct = (delta / baseline * 100.0) if baseline else (0.0 if delta == 0 else None)
    baseline_band = candidate_band = None
    if metric in bands.BANDS:
        baseline_band = bands.band_of(metric, baseline)
        candidate_band = bands.band_of(metric, candidate)
    big = delta_pct is None or abs(delta_pct) >= moved_pct
    return ComparedValue(
        metric,
        stat,
        baseline,
        candidate,
        delta=delta,
        delta_pct=delta_pct,
        baseline_band=baseline_band,
        candidate_band=candidate_band,
        direction=_direction(HIGHER_IS_WORSE.get(metric, True), delta),
        moved=bool(delta != 0 and (big or baseline_band != candidate_band)),
    )


def compare(baseline: RunSummary, candidate: RunSummary, *, moved_pct: float = MOVED_PCT) -> Comparison:
    """What changed from ``baseline`` to ``candidate`` (two summaries)."""
    rows = []
    overall = []
    for metric, higher_is_worse in HIGHER_IS_WORSE.items():
        old, new = baseline.metrics[metric], candidate.metrics[metric]
        for stat in COMPARED_STATS:
            rows.append(
                compare_values(metric, stat, old.percentiles.stat(stat), new.percentiles.stat(stat), moved_pct=moved_pct)
            )
        if old.band and new.band:
            change = bands.band_rank(metric, new.band) - bands.band_rank(metric, old.band)
            moved = "same" if change == 0 else _direction(higher_is_worse, change)
        else:
            moved = "n/a"
        overall.append(BandChange(metric, old.band, new.band, moved))
    old_audible, new_audible = baseline.audible.percentiles, candidate.audible.percentiles
    if old_audible.p50 is not None or new_audible.p50 is not None:
        for stat in COMPARED_STATS:
            rows.append(
                compare_values("audible", stat, old_audible.stat(stat), new_audible.stat(stat), moved_pct=moved_pct)
            )
    scalars = []
    for name, old_value, new_value, higher_is_worse in (
        ("intent.accuracy", baseline.intent.accuracy, candidate.intent.accuracy, False),
        ("failures.rate", baseline.run.paced.failure_rate, candidate.run.paced.failure_rate, True),
        ("judge.agreement", baseline.judge.agreement, candidate.judge.agreement, False),
    ):
        if name == "judge.agreement" and old_value is None and new_value is None:
            continue
        delta = None if old_value is None or new_value is None else new_value - old_value
        scalars.append(
            ScalarChange(
                name,
                old_value,
                new_value,
                delta,
                "n/a" if delta is None else _direction(higher_is_worse, delta),
                # Fractions: a move of half a percentage point or more is worth a look.
                delta is not None and abs(delta) >= 0.005,
            )
        )
    moved_names = [f"{r.metric}.{r.stat}" for r in rows if r.moved] + [s.name for s in scalars if s.moved]
    worse = [f"{r.metric}.{r.stat}" for r in rows if r.moved and r.direction == "worse"]
    worse += [s.name for s in scalars if s.moved and s.direction == "worse"]
    return Comparison(
        baseline=baseline.run.label,
        candidate=candidate.run.label,
        baseline_prefix=baseline.run.prefix,
        candidate_prefix=candidate.run.prefix,
        moved_pct=moved_pct,
        rows=tuple(rows),
        bands=tuple(overall),
        scalars=tuple(scalars),
        moved=tuple(moved_names),
        worse=tuple(worse),
        exact=bool(baseline.run.by_turns and candidate.run.by_turns),
        fast_left_out=FastLeftOut(baseline.fast.turns or 0, candidate.fast.turns or 0),
    )
