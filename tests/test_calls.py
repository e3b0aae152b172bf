"""The open model's schedule, Poisson arrivals and call records (voiceharness/calls.py), without Locust."""

from __future__ import annotations

import csv
import itertools
import math
import random

import pytest

from voiceharness import calls
from voiceharness.calls import (
    CallRecord,
    CallSchedule,
    CallWriter,
    RateStep,
    parse_call_rate,
    parse_call_turns,
)
from voiceharness.errors import UsageError


def test_a_constant_rate_in_any_unit_is_calls_per_second() -> None:
    assert parse_call_rate("2/s").steps == (RateStep(0.0, 2.0),)
    assert parse_call_rate("120/min").steps == (RateStep(0.0, 2.0),)
    assert parse_call_rate("7200/h").rate_at(1e6) == pytest.approx(2.0)
    assert parse_call_rate("0.5/s").rate_at(0) == 0.5
    assert parse_call_rate("") is None


def test_a_ramp_steps_from_its_first_rate_to_its_last_each_held_its_time() -> None:
    schedule = parse_call_rate("1/s:10/s:1/s:60s")
    assert [step.rate_per_s for step in schedule.steps] == [float(n) for n in range(1, 11)]
    assert [step.start_s for step in schedule.steps] == [60.0 * n for n in range(10)]
    assert schedule.rate_at(59.9) == 1 and schedule.rate_at(60) == 2 and schedule.rate_at(10_000) == 10
    assert schedule.hold_s == 60 and schedule.stepped
    # A STEP that does not divide the range ends on TO itself; a ramp may go down.
    assert [s.rate_per_s for s in parse_call_rate("1/s:4/s:2/s:10s").steps] == [1.0, 3.0, 4.0]
    assert [s.rate_per_s for s in parse_call_rate("3/s:1/s:1/s:2m").steps] == [3.0, 2.0, 1.0]
    assert parse_call_rate("3/s:1/s:1/s:2m").hold_s == 120


@pytest.mark.parametrize("text", ["2", "2/day", "fast", "0/s", "1/s:10/s", "1/s:10/s:0/s:60s", "1/s:10/s:1/s:soon",
                                  "1/s:10/s:1/s:0s", "-1/s"])
def test_bad_call_rate_text_is_a_usage_error_naming_the_option_and_an_example(text: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_call_rate(text)
    assert "--call-rate" in str(error.value) and "1/s:10/s:1/s:60s" in str(error.value)


def test_call_turns_are_a_number_or_a_range_drawn_uniformly() -> None:
    assert parse_call_turns("3").draw(random.Random(1)) == 3
    turns = parse_call_turns("2-5")
    drawn = {turns.draw(random.Random(seed)) for seed in range(200)}
    assert drawn == {2, 3, 4, 5}
    for bad in ("0", "5-2", "many", ""):
        with pytest.raises(UsageError, match="--call-turns"):
            parse_call_turns(bad)


def _arrivals(schedule: CallSchedule, end_s: float, rng: random.Random, share: float = 1.0) -> list[float]:
    times, time_s = [], 0.0
    while True:
        time_s = schedule.next_arrival_s(time_s, rng, share)
        if time_s > end_s:
            return times
        times.append(time_s)


def test_streams_sharing_a_rate_superpose_into_one_poisson_process_at_that_rate() -> None:
    """4 streams at a quarter of 2/s over 2,000 s: 4,000 calls expected, the count within 4 standard
    deviations (a fixed seed: the same count every time), the gaps exponential (mean = sd = 1/rate)."""
    schedule = parse_call_rate("2/s")
    merged = sorted(t for stream in range(4) for t in _arrivals(schedule, 2000, random.Random(stream), share=0.25))
    expected = schedule.expected_calls(0, 2000)
    assert expected == 4000
    assert abs(len(merged) - expected) < 4 * math.sqrt(expected)
    gaps = [b - a for a, b in itertools.pairwise(merged)]
    mean = sum(gaps) / len(gaps)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert mean == pytest.approx(0.5, rel=0.05) and sd == pytest.approx(0.5, rel=0.08)
    # Counts in 10 s windows: Poisson, so their variance is their mean (a regular clock would have none).
    windows = [0] * 200
    for t in merged:
        windows[min(199, int(t // 10))] += 1
    window_mean = sum(windows) / len(windows)
    variance = sum((w - window_mean) ** 2 for w in windows) / len(windows)
    assert 0.7 < variance / window_mean < 1.3


def test_arrivals_follow_each_step_of_a_ramp_even_across_its_edges() -> None:
    schedule = parse_call_rate("1/s:5/s:2/s:200s")  # 1/s, 3/s, 5/s
    times = _arrivals(schedule, 600, random.Random(7))
    for number, step in enumerate(schedule.steps):
        in_step = [t for t in times if step.start_s <= t < step.start_s + 200]
        expected = step.rate_per_s * 200
        assert abs(len(in_step) - expected) < 4 * math.sqrt(expected), (number, len(in_step), expected)
    assert schedule.expected_calls(100, 300) == pytest.approx(100 * 1 + 100 * 3)


def test_the_same_seed_offers_the_same_calls() -> None:
    schedule = parse_call_rate("3/s")
    assert _arrivals(schedule, 60, random.Random("7:0:1")) == _arrivals(schedule, 60, random.Random("7:0:1"))
    assert _arrivals(schedule, 60, random.Random("7:0:1")) != _arrivals(schedule, 60, random.Random("7:0:2"))


def test_the_calls_file_has_a_row_per_call_with_empty_cells_for_what_did_not_happen(tmp_path) -> None:
    writer = CallWriter(tmp_path / "run_calls.csv")
    writer.write_rows([calls.record_row(CallRecord(call_id="w:0:0", scheduled_at=1.25, outcome=calls.HARNESS_LIMIT,
                                                   diagnosis="10 calls already in progress")),
                       calls.record_row(CallRecord(call_id="w:0:1", scheduled_at=2.0, started_at=2.0004,
                                                   start_lateness_ms=0.4, setup_ms=3.21, outcome=calls.COMPLETED))])
    writer.close()
    with open(tmp_path / "run_calls.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(calls.COLUMNS)
    assert rows[0]["started_at"] == "" and rows[0]["outcome"] == "harness_limit"
    assert float(rows[1]["started_at"]) == 2.0004 and rows[1]["setup_ms"] == "3.21"
