"""The verdict on a run: one level (ok, warning, problem), why, and the line that says it.

A pure function of a run's figures, apart from the rest of the analysis so that whatever has the
figures can give the verdict the analysis would give: the analysis of a run's files
(:func:`analysis.metrics.summary_verdict`) and the web UI's Voice quality tab while the run goes
on (:mod:`voiceharness.live_stats`). It imports nothing heavier than numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from analysis.stats import Percentiles
from analysis.summary import Diagnosis, FastTurns, PaceCounts, UplinkBacklog, Verdict
from voiceharness import bands

# Send lateness (actual - due send time of a frame): above WARN the generator was busy and its
# timings are inflated by about that much; above BOTTLENECK it could not keep real time.
LATENESS_WARN_MS = 10.0
LATENESS_BOTTLENECK_MS = 50.0


def lateness_status(p99_ms: float) -> str:
    """``kept up``, ``strained`` or ``bottleneck``: what a load generator's p99 send lateness says."""
    if p99_ms > LATENESS_BOTTLENECK_MS:
        return "bottleneck"
    return "strained" if p99_ms > LATENESS_WARN_MS else "kept up"


class Banded(Protocol):
    """What the verdict reads of a documented metric (:class:`analysis.summary.MetricSummary` has it)."""

    unit: str
    percentiles: Percentiles
    band: str | None
    band_basis: str


_BAD_BANDS = {
    bands.ROUNDTRIP: {"bad"},
    bands.LATENCY: {"slow"},
    bands.RECONNECTIONS: {"network problems", "critical"},
}
_WARN_BANDS = {bands.ROUNDTRIP: {"slow"}, bands.LATENCY: {"average"}, bands.RECONNECTIONS: {"minor problems"}}
FAILURE_RATE_PROBLEM = 0.05
ACCURACY_PROBLEM = 0.90
ACCURACY_WARN = 0.98


def verdict(
    metrics: Mapping[str, Banded],
    paced: PaceCounts,
    *,
    diagnoses: Sequence[Diagnosis] = (),
    accuracy: float | None = None,
    lateness: str = "unknown",
    uplink: UplinkBacklog | None = None,
    exceptions: int = 0,
    harness_errors: int = 0,
    fast: FastTurns | None = None,
) -> Verdict:
    """One line for the whole run: ``ok``, ``warning`` or ``problem``, and why.

    problem: roundtrip p95 bad, latency p95 slow, reconnections at network problems or worse,
    more than 5 % of turns failed, or intent accuracy below 90 %. warning: the band just above
    those, any failure, accuracy below 98 %, a load generator that fell behind (``lateness``),
    a backlogged uplink, exceptions in user code, harness errors, or no real-time turn at all.
    Otherwise ok.

    Everything is judged on real-time turns (``paced``: their counts, the whole run's for a
    Locust-only run); the line ends by saying how many fast-paced turns it left out (and how
    many of those failed), which are shown apart.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for metric, bad in _BAD_BANDS.items():
        entry = metrics[metric]
        band, basis = entry.band, entry.band_basis
        value = entry.percentiles.stat(basis)
        described = f"{metric} {band} ({basis} {_short(value)}{entry.unit and ' ' + entry.unit})"
        if band in bad:
            problems.append(described)
        elif band in _WARN_BANDS[metric]:
            warnings.append(described)
    rate, failed = paced.failure_rate, paced.failed or 0
    if failed:
        top = diagnoses[0].code if diagnoses else None
        text = f"{failed} failed ({rate:.1%}{', mostly ' + top if top else ''})"
        (problems if rate is not None and rate > FAILURE_RATE_PROBLEM else warnings).append(text)
    if accuracy is not None:
        if accuracy < ACCURACY_PROBLEM:
            problems.append(f"intent accuracy {accuracy:.1%}")
        elif accuracy < ACCURACY_WARN:
            warnings.append(f"intent accuracy {accuracy:.1%}")
    if lateness in ("strained", "bottleneck"):
        warnings.append(
            f"load generator {'was the bottleneck' if lateness == 'bottleneck' else 'fell behind'}"
        )
    if uplink is not None and uplink.status == "backlogged":
        warnings.append(f"uplink slower than real time (median {_short(uplink.p50_ms)} ms of audio queued at end of speech)")
    if exceptions:
        warnings.append(f"{exceptions} exception(s) in user code")
    if paced.turns == 0:
        warnings.append("no real-time turn to band (every turn was fast-paced)")
    if harness_errors:
        warnings.append(f"{harness_errors} harness error(s): bugs in the harness, not the gateway; read the logged traceback")
    level = "problem" if problems else "warning" if warnings else "ok"
    good = []
    for metric in (bands.ROUNDTRIP, bands.LATENCY):
        entry = metrics[metric]
        if entry.band and not any(text.startswith(metric) for text in problems + warnings):
            good.append(f"{metric} {entry.band} (p95 {_short(entry.percentiles.p95)} ms)")
    if accuracy is not None and accuracy >= ACCURACY_WARN:
        good.append(f"intent accuracy {accuracy:.1%}")
    if lateness == "kept up":
        good.append("load generator kept up")
    parts = problems + warnings if level != "ok" else good
    text = f"{level.upper()}: " + ("; ".join(parts) if parts else "nothing measured")
    left_out = fast.turns if fast is not None else 0
    if left_out:
        failed_fast = f", {fast.failed} of them failed" if fast is not None and fast.failed else ""
        text += f" (on real-time turns; {left_out} fast-paced turn(s) left out{failed_fast}: shown apart)"
    return Verdict(level, tuple(problems), tuple(warnings), left_out, text)


def _short(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() or abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"
