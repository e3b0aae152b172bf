"""The open model's calls (``PREFIX_calls.csv``): how many were offered, started, completed and
failed, their setup time, how many were in progress over time, and -- in a stepped run -- the knee.

The calls file has one row per offered call (:mod:`voiceharness.calls`). Its figures:

* **offered** = every row; **started** = completed + failed + run_stopped; **not started** =
  ``not_started_on_time`` + ``harness_limit``: the load generator's own limits, counted apart from
  the gateway's failures;
* **failed by diagnosis**: the code of each failed call's first failed turn;
* **setup time**: the connect time (TCP + TLS + upgrade) of each started call's connection, exact
  percentiles; **start lateness**: how late the harness started calls after their arrivals;
* **concurrent calls over time**: from each started call's start and end (Little's law at work:
  concurrency = arrival rate x call duration, set by the gateway's speed, not by the harness);
* **per step** (every run has at least one): the turns of the calls that arrived in that step
  (the ``offered_rate_per_s`` of the turns file), their roundtrip p95 and its band -- the
  analysis's band rule, a metric's band is its p95's. A turn that failed without reply audio
  counts as slower than any roundtrip (the gateway did not answer it in time at all); turns cut
  by the run's end and harness errors are left out.
* **the knee**: the offered rate of the first step whose roundtrip band is worse than "good"
  (slow or bad); "not reached" with the highest rate offered when every step stayed good.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

import numpy as np

from analysis.readers import Turns
from analysis.stats import Percentiles, percentiles
from analysis.summary import JsonRecord
from voiceharness import bands, calls
from voiceharness.errors import AnalysisError
from voiceharness.live_stats import RUN_STOPPED

REQUIRED_COLUMNS = ("call_id", "scheduled_at", "started_at", "offered_rate_per_s", "rate_step", "setup_ms",
                    "outcome", "diagnosis", "ended_at")
_NUMBER_COLUMNS = ("scheduled_at", "started_at", "start_lateness_ms", "offered_rate_per_s", "rate_step",
                   "turns_planned", "turns_done", "setup_ms", "duration_ms", "ended_at")
GOOD_BAND = "good"
KNEE_DEFINITION = ("the offered call rate of the first step whose roundtrip band (of the p95 of its calls' turns; "
                   "a turn without reply audio counts as slowest) is worse than good")


@dataclass
class Calls:
    """The calls file, one numpy array per column (NaN where a cell was empty)."""

    path: str
    numbers: dict[str, np.ndarray]
    outcome: np.ndarray  # object array of str
    diagnosis: np.ndarray

    def __len__(self) -> int:
        return len(self.outcome)

    @property
    def started(self) -> np.ndarray:
        return np.isin(self.outcome, calls.STARTED_OUTCOMES)


def read_calls(path: str) -> Calls:
    """Read ``PREFIX_calls.csv``; raise AnalysisError naming the file and what is wrong."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise AnalysisError(f"{path}: not a calls file (no column {', '.join(missing)}); it is written by "
                                    "open-model runs (--call-rate) as PREFIX_calls.csv")
            rows = list(reader)
    except OSError as error:
        raise AnalysisError(f"{path}: cannot read the calls file ({error.strerror or error})") from None
    numbers = {}
    for column in _NUMBER_COLUMNS:
        values = np.full(len(rows), np.nan)
        for index, row in enumerate(rows):
            cell = row.get(column) or ""
            if cell:
                try:
                    values[index] = float(cell)
                except ValueError:
                    raise AnalysisError(f"{path}, line {index + 2}: {column} {cell!r} is not a number") from None
        numbers[column] = values
    outcome = np.array([row["outcome"] for row in rows], dtype=object)
    unknown = sorted(set(outcome) - set(calls.OUTCOMES))
    if unknown:
        raise AnalysisError(f"{path}: unknown call outcome(s) {', '.join(unknown)}; expected {', '.join(calls.OUTCOMES)}")
    return Calls(path, numbers, outcome, np.array([row["diagnosis"] for row in rows], dtype=object))


def calls_file_of(prefix: str) -> str | None:
    path = prefix + calls.CALLS_SUFFIX
    return path if os.path.exists(path) else None


@dataclass(frozen=True)
class DiagnosisCount(JsonRecord):
    diagnosis: str
    calls: int


@dataclass(frozen=True)
class RateStepSummary(JsonRecord):
    """One step of the offered rate: its calls, its turns' roundtrip and band."""

    step: int
    offered_rate_per_s: float
    start_s: float  # since the first call's arrival
    calls_offered: int
    calls_started: int
    turns: int
    no_reply_turns: int  # failed without reply audio: counted as slower than any roundtrip
    roundtrip_p95_ms: float | None  # None when no turn was judged, or the p95 is a turn without reply
    band: str | None  # None: no turn judged in this step
    concurrent_calls_mean: float | None


@dataclass(frozen=True)
class CallsSummary(JsonRecord):
    offered: int
    started: int
    completed: int
    failed: int
    run_stopped: int
    not_started_on_time: int
    harness_limit: int
    failed_by_diagnosis: tuple[DiagnosisCount, ...]
    setup_ms: Percentiles
    start_lateness_ms: Percentiles
    duration_ms: Percentiles
    concurrent_calls_max: int
    concurrent_calls_mean: float | None
    offered_rate_per_s: float | None  # the schedule's rate (its last step's, for a ramp)
    arrival_rate_per_s: float | None  # calls offered / the span of their arrivals, as measured
    steps: tuple[RateStepSummary, ...]
    knee_rate_per_s: float | None  # None: not reached
    knee_text: str
    knee_definition: str = KNEE_DEFINITION


def concurrency_over_time(data: Calls) -> tuple[np.ndarray, np.ndarray]:
    """(wall-clock s, calls in progress from then on): a step function from the started calls'
    starts and ends (a call not ended has no end: it is counted to the last moment)."""
    started = data.started
    starts = data.numbers["started_at"][started]
    ends = data.numbers["ended_at"][started]
    ends = np.where(np.isnan(ends), np.inf, ends)
    times = np.concatenate([starts, ends[np.isfinite(ends)]])
    changes = np.concatenate([np.ones(len(starts)), -np.ones(int(np.isfinite(ends).sum()))])
    order = np.lexsort((changes, times))  # at one moment, an end before a start: no phantom overlap
    return times[order], np.cumsum(changes[order])


def _time_weighted_mean(times: np.ndarray, counts: np.ndarray, start: float, end: float) -> float | None:
    """The mean of the step function (times, counts) over [start, end)."""
    if end <= start or not len(times):
        return None
    before = np.searchsorted(times, start, side="right") - 1
    level = counts[before] if before >= 0 else 0.0
    total, moment = 0.0, start
    for time_s, count in zip(times, counts):
        if time_s <= start:
            continue
        if time_s >= end:
            break
        total += level * (time_s - moment)
        moment, level = time_s, count
    total += level * (end - moment)
    return total / (end - start)


def step_roundtrip_p95_ms(roundtrip_ms: np.ndarray, failed_without_reply: np.ndarray) -> float | None:
    """The p95 of a step's roundtrips (the analysis's linear interpolation), a turn that failed
    without reply audio counted as slower than any roundtrip: inf when the p95 falls on one."""
    values = np.where(failed_without_reply, _NO_REPLY_MS, roundtrip_ms)
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    p95 = float(np.percentile(values, 95))
    return math.inf if p95 > np.max(values, initial=0.0, where=values < _NO_REPLY_MS) else p95


_NO_REPLY_MS = 1e15  # a finite stand-in for "never": linear interpolation with inf gives NaN


def knee(steps: tuple[RateStepSummary, ...]) -> tuple[float | None, str]:
    """The knee: the first step (in the schedule's order) whose band is worse than good."""
    order = bands.BANDS[bands.ROUNDTRIP]
    for step in steps:
        if step.band is not None and order.index(step.band) > order.index(GOOD_BAND):
            p95 = (f"p95 {step.roundtrip_p95_ms:.0f} ms" if step.roundtrip_p95_ms is not None
                   else f"p95 beyond any reply: {step.no_reply_turns} of {step.turns} turns without reply audio")
            return step.offered_rate_per_s, (f"{step.offered_rate_per_s:g} calls/s: the roundtrip leaves good "
                                             f"there ({step.band}, {p95})")
    judged = [step for step in steps if step.band is not None]
    if not judged:
        return None, "not measured (no turn of any call was judged)"
    highest = max(step.offered_rate_per_s for step in judged)
    return None, f"not reached up to {highest:g} calls/s (every step's roundtrip stayed good or better)"


def summarize_calls(data: Calls, turns: Turns | None) -> CallsSummary:
    outcome = data.outcome
    count = {name: int((outcome == name).sum()) for name in calls.OUTCOMES}
    started = data.started
    failed = outcome == calls.FAILED
    diagnoses: dict[str, int] = {}
    for code in data.diagnosis[failed]:
        diagnoses[str(code) or "unclassified"] = diagnoses.get(str(code) or "unclassified", 0) + 1
    times, levels = concurrency_over_time(data)
    scheduled = data.numbers["scheduled_at"]
    first = float(np.nanmin(scheduled)) if len(data) else math.nan
    last_end = float(np.nanmax(data.numbers["ended_at"])) if len(data) else math.nan
    steps = _steps(data, turns, times, levels, first, last_end)
    knee_rate, knee_text = knee(steps)
    span_s = float(np.nanmax(scheduled) - first) if len(data) > 1 else 0.0
    return CallsSummary(
        offered=len(data),
        started=int(started.sum()),
        completed=count[calls.COMPLETED],
        failed=count[calls.FAILED],
        run_stopped=count[calls.RUN_STOPPED],
        not_started_on_time=count[calls.NOT_STARTED_ON_TIME],
        harness_limit=count[calls.HARNESS_LIMIT],
        failed_by_diagnosis=tuple(DiagnosisCount(code, n) for code, n in
                                  sorted(diagnoses.items(), key=lambda item: (-item[1], item[0]))),
        setup_ms=percentiles(data.numbers["setup_ms"][started]),
        start_lateness_ms=percentiles(data.numbers["start_lateness_ms"][started]),
        duration_ms=percentiles(data.numbers["duration_ms"][outcome == calls.COMPLETED]),
        concurrent_calls_max=int(levels.max()) if len(levels) else 0,
        concurrent_calls_mean=_time_weighted_mean(times, levels, first, last_end) if len(data) else None,
        offered_rate_per_s=steps[-1].offered_rate_per_s if steps else None,
        arrival_rate_per_s=(len(data) - 1) / span_s if span_s > 0 else None,
        steps=steps,
        knee_rate_per_s=knee_rate,
        knee_text=knee_text,
    )


def _steps(data: Calls, turns: Turns | None, times: np.ndarray, levels: np.ndarray, first: float,
           last_end: float) -> tuple[RateStepSummary, ...]:
    step_of = data.numbers["rate_step"]
    rate_of = data.numbers["offered_rate_per_s"]
    numbers = sorted({int(s) for s in step_of if not math.isnan(s)})
    turn_rate = turns.numbers.get("offered_rate_per_s") if turns is not None else None
    out = []
    for position, number in enumerate(numbers):
        in_step = step_of == number
        rate = float(np.nanmax(rate_of[in_step]))
        start = float(np.nanmin(data.numbers["scheduled_at"][in_step]))
        end = (float(np.nanmin(data.numbers["scheduled_at"][step_of == numbers[position + 1]]))
               if position + 1 < len(numbers) else last_end)
        p95, band, n_turns, n_no_reply = None, None, 0, 0
        if turn_rate is not None:
            mine = np.isclose(turn_rate, rate) & ~turns.failure_is(RUN_STOPPED) & ~turns.failure_is("harness_error")
            roundtrip = turns.numbers["roundtrip_ms"][mine]
            no_reply = (turns.numbers["success"][mine] < 1) & np.isnan(roundtrip)
            n_turns, n_no_reply = int(mine.sum()), int(no_reply.sum())
            p95 = step_roundtrip_p95_ms(roundtrip, no_reply)
            band = None if p95 is None else bands.band_of(bands.ROUNDTRIP, p95)
            if p95 is not None and math.isinf(p95):
                p95 = None  # JSON has no infinity; the band (bad) and no_reply_turns say it
        out.append(RateStepSummary(
            step=number, offered_rate_per_s=rate, start_s=start - first, calls_offered=int(in_step.sum()),
            calls_started=int((in_step & data.started).sum()), turns=n_turns, no_reply_turns=n_no_reply,
            roundtrip_p95_ms=p95, band=band,
            concurrent_calls_mean=_time_weighted_mean(times, levels, start, end)))
    return tuple(out)
