"""An open-model run's calls in the analysis (analysis/calls.py): counts, setup, concurrency, the knee."""

from __future__ import annotations

import math

import pytest

from analysis.calls import concurrency_over_time, read_calls, summarize_calls
from analysis.readers import read_run, read_turns
from voiceharness import calls
from voiceharness.calls import CallRecord, CallWriter
from voiceharness.errors import AnalysisError
from voiceharness.turns import TurnRecord, TurnWriter

T0 = 1_800_000_000.0


def _write_run(prefix, steps: list[tuple[float, list[float]]], *, hold_s: float = 10.0) -> None:
    """A stepped run: per step (rate, the roundtrips of its calls' turns; NaN = failed without reply)."""
    call_writer = CallWriter(f"{prefix}_calls.csv")
    turn_writer = TurnWriter(f"{prefix}_turns.csv")
    number = 0
    for step, (rate, roundtrips) in enumerate(steps):
        for index, roundtrip in enumerate(roundtrips):
            start = T0 + step * hold_s + index * hold_s / len(roundtrips)
            call_id = f"w:0:{number}"
            number += 1
            failed = math.isnan(roundtrip)
            call_writer.write_rows([calls.record_row(CallRecord(
                call_id=call_id, worker="w", scheduled_at=start, started_at=start, start_lateness_ms=0.5,
                offered_rate_per_s=rate, rate_step=step, turns_planned=1, turns_done=1, setup_ms=2.0 + step,
                duration_ms=2000.0, outcome=calls.FAILED if failed else calls.COMPLETED,
                diagnosis="no_audio_tts" if failed else "", ended_at=start + 2.0))])
            turn_writer.write(TurnRecord(timestamp=start, worker="w", user=number, success=not failed,
                                         failure="no_audio_tts" if failed else "", roundtrip_ms=roundtrip,
                                         call_id=call_id, offered_rate_per_s=rate))
    call_writer.write_rows([calls.record_row(CallRecord(call_id="w:0:late", worker="w", scheduled_at=T0 + 1,
                                                        offered_rate_per_s=steps[0][0],
                                                        outcome=calls.NOT_STARTED_ON_TIME, ended_at=T0 + 2.5))])
    call_writer.close()
    turn_writer.close()


def _summary(prefix):
    return summarize_calls(read_calls(f"{prefix}_calls.csv"), read_turns(f"{prefix}_turns.csv"))


def test_the_knee_is_the_first_steps_rate_whose_roundtrip_band_is_worse_than_good(tmp_path) -> None:
    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [200.0] * 20), (2.0, [300.0] * 19 + [480.0]), (3.0, [400.0] * 18 + [700.0, 900.0]),
                        (4.0, [1500.0] * 20)])
    summary = _summary(prefix)
    assert [step.band for step in summary.steps] == ["good", "good", "slow", "bad"]
    assert summary.knee_rate_per_s == 3.0
    assert "3 calls/s" in summary.knee_text and "slow" in summary.knee_text
    assert summary.steps[2].roundtrip_p95_ms == pytest.approx(710.0)  # p95 of 20 values, linear as the analysis


def test_turns_without_reply_count_as_slowest_so_a_failing_step_is_a_knee(tmp_path) -> None:
    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [200.0] * 20), (2.0, [250.0] * 10 + [math.nan] * 10)])
    summary = _summary(prefix)
    assert summary.steps[1].band == "bad" and summary.steps[1].roundtrip_p95_ms is None
    assert summary.steps[1].no_reply_turns == 10
    assert summary.knee_rate_per_s == 2.0
    assert summary.failed == 10 and [(d.diagnosis, d.calls) for d in summary.failed_by_diagnosis] == [("no_audio_tts", 10)]


def test_a_run_that_stays_good_says_the_knee_was_not_reached_up_to_its_highest_rate(tmp_path) -> None:
    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [90.0] * 10), (2.0, [200.0] * 10), (3.0, [499.0] * 10)])
    summary = _summary(prefix)
    assert summary.knee_rate_per_s is None
    assert summary.knee_text.startswith("not reached up to 3 calls/s")


def test_counts_setup_and_concurrency_of_the_calls_file(tmp_path) -> None:
    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [200.0] * 10), (2.0, [200.0] * 20)])
    summary = _summary(prefix)
    assert (summary.offered, summary.started, summary.completed, summary.not_started_on_time) == (31, 30, 30, 1)
    assert summary.setup_ms.p50 == 3.0 and summary.setup_ms.min == 2.0  # step 0: 2 ms, step 1: 3 ms
    # Calls of 2 s: 1 every 1 s in step 0 -> 2 in progress, 1 every 0.5 s in step 1 -> 4 (Little's law).
    assert summary.concurrent_calls_max == 4
    assert summary.steps[0].concurrent_calls_mean == pytest.approx(2.0, abs=0.15)
    assert summary.steps[1].concurrent_calls_mean == pytest.approx(4.0, abs=0.5)
    _times, levels = concurrency_over_time(read_calls(f"{prefix}_calls.csv"))
    assert levels[-1] == 0 and levels.min() >= 0


def test_the_run_reader_finds_the_calls_file_and_a_broken_one_is_named(tmp_path) -> None:
    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [200.0] * 5)])
    run = read_run(str(prefix) + "_calls.csv")
    assert run.calls is not None and len(run.calls) == 6 and "calls" in run.files
    (tmp_path / "bad_calls.csv").write_text("call_id,outcome\nx,completed\n")
    with pytest.raises(AnalysisError, match="bad_calls.csv: not a calls file"):
        read_calls(str(tmp_path / "bad_calls.csv"))


def test_the_gate_checks_the_knee_and_the_calls_of_an_open_model_run(tmp_path) -> None:
    from analysis import gate
    from analysis.metrics import summarize

    prefix = tmp_path / "run"
    _write_run(prefix, [(1.0, [200.0] * 20), (2.0, [300.0] * 20), (3.0, [900.0] * 20)])
    summary = summarize(read_run(str(prefix)))
    checks = gate.evaluate(gate.parse_all(["calls.knee>=3", "calls.knee>=4", "calls.not_started<=0",
                                           "calls.started==60", "calls.setup.p95<10"]), summary)
    assert [check.passed for check in checks] == [True, False, False, True, True]
    assert "measured calls.knee = 3 calls/s" in checks[1].message
    _write_run(tmp_path / "good", [(1.0, [200.0] * 20), (2.0, [300.0] * 20)])
    (check,) = gate.evaluate(gate.parse_all(["calls.knee>=100"]), summarize(read_run(str(tmp_path / "good"))))
    assert check.passed and check.measured == math.inf  # not reached: above every rate offered
