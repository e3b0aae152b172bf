"""Calls on their own clock (the open model): the rate schedule, the arrivals, the call record.

A closed-loop user speaks, waits for the reply, thinks and speaks again: when the gateway slows
down, so does the demand it makes. In an open-model run (``--call-rate``) calls *arrive*, as a
Poisson process at the offered rate, whatever the calls already in progress are doing; each is a
dialogue of a few turns that then hangs up. How many calls are in progress at once is then what
the gateway's speed makes it (Little's law: concurrent calls = arrival rate x call duration).

This module is the part without Locust (:mod:`voiceharness.locust.calls` runs the calls):

* :func:`parse_call_rate` -- ``--call-rate`` text into a :class:`CallSchedule`: a constant rate
  (``2/s``, ``120/min``, ``7200/h``) or a stepped ramp ``FROM:TO:STEP:HOLD``
  (``1/s:10/s:1/s:60s``: 1/s for 60 s, then 2/s for 60 s, ... up to 10/s, held to the end);
* :meth:`CallSchedule.next_arrival_s` -- the next arrival of a Poisson process of that schedule's
  rate (times a share of it), drawn from the schedule's own clock, never from when an earlier
  call ended;
* :func:`parse_call_turns` -- ``--call-turns`` (``3``, ``2-5``) into a :class:`CallTurns`;
* :class:`CallRecord` and :class:`CallWriter` -- one row per offered call in ``PREFIX_calls.csv``.

Every offered call ends in exactly one record, with one of the :data:`OUTCOMES`: ``completed``
(every turn succeeded), ``failed`` (``diagnosis`` = the code of its first failed turn, after which
it hung up), ``run_stopped`` (the run ended during the call), or -- counted apart from the
gateway's failures because the harness, not the gateway, is to blame -- ``not_started_on_time``
(the load generator started it later than ``--call-start-tolerance-ms`` after its arrival) and
``harness_limit`` (``--max-concurrent-calls`` calls were already in progress in that process).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import re
from dataclasses import dataclass
from typing import Any

from voiceharness.errors import UsageError
from voiceharness.settings import parse_min_max
from voiceharness.turns import open_run_csv

CALLS_SUFFIX = "_calls.csv"

COMPLETED = "completed"
FAILED = "failed"
RUN_STOPPED = "run_stopped"
NOT_STARTED_ON_TIME = "not_started_on_time"
HARNESS_LIMIT = "harness_limit"
STARTED_OUTCOMES = (COMPLETED, FAILED, RUN_STOPPED)
NOT_STARTED_OUTCOMES = (NOT_STARTED_ON_TIME, HARNESS_LIMIT)
OUTCOMES = STARTED_OUTCOMES + NOT_STARTED_OUTCOMES

_RATE_EXAMPLE = "e.g. 2/s, 120/min, or a stepped ramp FROM:TO:STEP:HOLD such as 1/s:10/s:1/s:60s"
_PER_SECOND = {"s": 1.0, "sec": 1.0, "min": 1 / 60, "m": 1 / 60, "h": 1 / 3600}
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*([a-z]+)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?\s*$")
_DURATION_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class RateStep:
    """``rate_per_s`` calls a second from ``start_s`` (seconds since the run started) on."""

    start_s: float
    rate_per_s: float


@dataclass(frozen=True)
class CallSchedule:
    """The offered call rate over the run: steps, each held until the next starts, the last to the end."""

    steps: tuple[RateStep, ...]
    text: str = ""

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0].start_s != 0:
            raise ValueError("a call schedule starts with a step at 0 s")

    @property
    def stepped(self) -> bool:
        return len(self.steps) > 1

    @property
    def hold_s(self) -> float:
        """How long each step of a ramp is held (0 for a constant rate)."""
        return self.steps[1].start_s - self.steps[0].start_s if self.stepped else 0.0

    def step_index_at(self, time_s: float) -> int:
        index = 0
        for number, step in enumerate(self.steps):
            if step.start_s <= time_s:
                index = number
        return index

    def rate_at(self, time_s: float) -> float:
        """Calls a second offered at ``time_s`` seconds after the run's start."""
        return self.steps[self.step_index_at(time_s)].rate_per_s

    def expected_calls(self, start_s: float, end_s: float) -> float:
        """The Poisson mean: calls expected between two moments (the integral of the rate)."""
        total = 0.0
        for number, step in enumerate(self.steps):
            step_end = self.steps[number + 1].start_s if number + 1 < len(self.steps) else math.inf
            overlap = min(end_s, step_end) - max(start_s, step.start_s)
            if overlap > 0:
                total += overlap * step.rate_per_s
        return total

    def next_arrival_s(self, after_s: float, rng: random.Random, share: float = 1.0) -> float:
        """The next arrival after ``after_s`` of a Poisson process at ``share`` x this schedule's rate.

        A piecewise-constant rate: draw one unit exponential and spend it through the steps (the
        inverse of the integrated rate), so that a gap crossing a step's edge is right on both
        sides. Processes superpose: ``n`` streams each at ``share = 1/n`` make one Poisson process
        at the schedule's rate. Returns ``math.inf`` when no call will ever come (rate 0 to the end).
        """
        budget = rng.expovariate(1.0)
        time_s = after_s
        for number in range(self.step_index_at(after_s), len(self.steps)):
            rate = self.steps[number].rate_per_s * share
            step_end = self.steps[number + 1].start_s if number + 1 < len(self.steps) else math.inf
            if rate > 0:
                needed_s = budget / rate
                if time_s + needed_s <= step_end:
                    return time_s + needed_s
                budget -= (step_end - time_s) * rate
            time_s = step_end
        return math.inf

    def describe(self) -> str:
        if not self.stepped:
            return f"calls arrive at {self.steps[0].rate_per_s:g}/s (Poisson)"
        first, last = self.steps[0].rate_per_s, self.steps[-1].rate_per_s
        return (f"calls arrive at {first:g}/s stepping to {last:g}/s in {len(self.steps)} steps of "
                f"{self.hold_s:g} s (Poisson)")


def _rate_per_s(text: str, whole: str) -> float:
    match = _RATE.match(text.lower())
    if not match or match.group(2) not in _PER_SECOND:
        raise UsageError(f"--call-rate {whole!r}: {text!r} is not a rate; give calls per s, min or h, {_RATE_EXAMPLE}")
    return float(match.group(1)) * _PER_SECOND[match.group(2)]


def _duration_s(text: str, whole: str) -> float:
    match = _DURATION.match(text.lower())
    if not match:
        raise UsageError(f"--call-rate {whole!r}: the hold {text!r} is not a duration (60s, 2m, 500ms); {_RATE_EXAMPLE}")
    return float(match.group(1)) * _DURATION_S[match.group(2)]


def parse_call_rate(text: str) -> CallSchedule | None:
    """``--call-rate`` as a schedule; ``""`` -> None (no open-model calls). Raises UsageError."""
    text = str(text or "").strip()
    if not text:
        return None
    parts = text.split(":")
    if len(parts) == 1:
        rate = _rate_per_s(parts[0], text)
        if rate <= 0:
            raise UsageError(f"--call-rate {text!r}: the rate must be above 0; {_RATE_EXAMPLE}")
        return CallSchedule((RateStep(0.0, rate),), text)
    if len(parts) != 4:
        raise UsageError(f"--call-rate {text!r}: a ramp has four parts FROM:TO:STEP:HOLD; {_RATE_EXAMPLE}")
    first, last, step = (_rate_per_s(part, text) for part in parts[:3])
    hold_s = _duration_s(parts[3], text)
    if step <= 0 or hold_s <= 0:
        raise UsageError(f"--call-rate {text!r}: STEP and HOLD must be above 0; {_RATE_EXAMPLE}")
    if first < 0 or last <= 0:
        raise UsageError(f"--call-rate {text!r}: the rates must be above 0; {_RATE_EXAMPLE}")
    count = math.floor(abs(last - first) / step + 1e-9) + 1
    if count > 1000:
        raise UsageError(f"--call-rate {text!r}: {count} steps; use a bigger STEP (at most 1000 steps)")
    direction = 1.0 if last >= first else -1.0
    rates = [first + direction * step * number for number in range(count)]
    if abs(rates[-1] - last) > 1e-9:
        rates.append(last)  # a STEP that does not divide the range: the last step is TO itself
    return CallSchedule(tuple(RateStep(number * hold_s, round(rate, 9)) for number, rate in enumerate(rates)), text)


@dataclass(frozen=True)
class CallTurns:
    """How many turns a call makes: drawn uniformly from ``low``..``high`` (inclusive)."""

    low: int
    high: int

    def draw(self, rng: random.Random) -> int:
        return self.low if self.low == self.high else rng.randint(self.low, self.high)


def parse_call_turns(text: str) -> CallTurns:
    """``--call-turns``: ``3`` or ``2-5`` (uniform). Raises UsageError."""
    return CallTurns(*parse_min_max(text, int, option="--call-turns", minimum=1, example=", e.g. 3 or 2-5",
                                    what="give a number of turns per call, N or MIN-MAX, e.g. 3 or 2-5"))


@dataclass(frozen=True)
class CallRecord:
    """One offered call: when it was due, when (and whether) it started, how it ended."""

    call_id: str = ""  # "worker:stream:number", unique in the run
    worker: str = ""  # "host:pid" of the load generator process
    stream: int = 0  # the arrival stream (caller user) within its worker
    scheduled_at: float = 0.0  # wall-clock s since the epoch: the arrival, on the schedule's clock
    started_at: float = math.nan  # wall-clock s when the harness started it (NaN: not started)
    start_lateness_ms: float = math.nan  # started_at - scheduled_at (the harness's own delay)
    offered_rate_per_s: float = math.nan  # the run's call rate when it arrived
    rate_step: int = 0  # the schedule's step it arrived in (0 for a constant rate)
    turns_planned: int = 0  # the --call-turns draw (the default dialogue says that many; one of your own may not)
    turns_done: int = 0  # turns that ended (their records are in the turns file with this call_id)
    setup_ms: float = math.nan  # connect time of the call's connection (TCP + TLS + upgrade)
    duration_ms: float = math.nan  # started -> hung up
    outcome: str = ""  # one of OUTCOMES
    diagnosis: str = ""  # of a failed call: its first failed turn's code; why it did not start, else
    ended_at: float = math.nan  # wall-clock s when it ended (for a call not started: when it was refused)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord))
_FLOATS = frozenset(f.name for f in dataclasses.fields(CallRecord) if f.type == "float")


def record_row(record: CallRecord) -> dict[str, Any]:
    """The CSV row of a call record (floats rounded, NaN as an empty cell)."""
    row = {}
    for name in COLUMNS:
        value = getattr(record, name)
        if name in _FLOATS:
            value = "" if math.isnan(value) else round(value, 6 if name.endswith("_at") else 3)
        row[name] = value
    return row


class CallWriter:
    """Appends call rows to ``PREFIX_calls.csv`` (the header first)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path, self._file = open_run_csv(path)
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        self._writer.writeheader()
        self._file.flush()
        self.count = 0

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if self._file.closed:
            if rows:
                raise ValueError(f"{len(rows)} call records arrived after {self.path} was closed")
            return
        self._writer.writerows(rows)
        self.count += len(rows)
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def calls_path(csv_prefix: str) -> str:
    return f"{csv_prefix}{CALLS_SUFFIX}"
