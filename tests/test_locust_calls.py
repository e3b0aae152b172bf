"""Calls on their own clock (voiceharness/locust/calls.py), run for real: Locust headless on loopback
against the reference gateway made slow on purpose (``--fault-delay-per-session-ms``: every reply
delayed so many ms for each session open, a gateway that slows down with its load)."""

from __future__ import annotations

import csv
import math
from collections import Counter

import pytest
from conftest import ROOT, master_port_options, run_locust

from analysis.metrics import summarize
from analysis.readers import read_run
from voiceharness import calls, diagnoses

pytestmark = pytest.mark.slow

CALLS_LOCUSTFILE = ROOT / "locustfiles" / "calls.py"


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def check_call_invariants(prefix) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Every offered call has one row with a known outcome; every turn of a call points at it."""
    call_rows = read_csv(f"{prefix}_calls.csv")
    turn_rows = read_csv(f"{prefix}_turns.csv")
    ids = Counter(row["call_id"] for row in call_rows)
    assert ids and max(ids.values()) == 1
    for row in call_rows:
        assert row["outcome"] in calls.OUTCOMES, row
        if row["outcome"] == calls.FAILED:
            assert row["diagnosis"] in diagnoses.DIAGNOSES, row
        if row["outcome"] in calls.STARTED_OUTCOMES:
            assert row["started_at"] and float(row["start_lateness_ms"]) >= 0, row
    turns_of = Counter(row["call_id"] for row in turn_rows)
    assert set(turns_of) <= set(ids)
    planned = {row["call_id"]: int(row["turns_planned"]) for row in call_rows}
    assert all(turns_of[call_id] <= planned[call_id] for call_id in turns_of)
    return call_rows, turn_rows


def test_open_model_calls_start_at_the_poisson_rate_whatever_the_gateway_while_a_closed_loop_offers_less(
        tmp_path, gateway_factory) -> None:
    """A gateway that delays each reply 3 s for every session open. Calls arriving at 3/s for 30 s
    (90 expected) on two load-generator processes: the calls started are within 4 standard deviations
    of the Poisson count, although the replies come too late and the calls fail. Six closed-loop
    users, whose nominal load is the same (a 'hello jarvis' call of ~1.4 s, 0.2-0.6 s think, ~2 s a
    call: 3/s), wait for each reply before the next call: each call lasts at least its speech plus the
    3 s its own session costs, so they cannot start more than 6 x (30 s / 4.6 s + 1) = 45 calls."""
    delay_ms = 3000.0
    gateway = gateway_factory("--fast-sink", "--fault-delay-per-session-ms", f"{delay_ms:g}")
    rate_per_s, run_s = 3.0, 30.0
    common = ("--utterances", "GREETING", "--think-time-ms", "200-600")
    open_run = run_locust(tmp_path / "open", gateway.url, *common, "--call-rate", f"{rate_per_s:g}/s",
                          "--call-turns", "1", "--call-seed", "11", "--processes", "2",
                          # a master port of its own: another test's --processes run binds Locust's default
                          *master_port_options(),
                          users=4, spawn_rate=4, run_time=f"{run_s:g}s", locustfile=CALLS_LOCUSTFILE)
    call_rows, turn_rows = check_call_invariants(open_run.prefix)
    assert "Traceback" not in open_run.output, open_run.output[-3000:]
    outcomes = Counter(row["outcome"] for row in call_rows)
    started = sum(outcomes[o] for o in calls.STARTED_OUTCOMES)
    expected = rate_per_s * run_s
    assert abs(started - expected) <= 4 * math.sqrt(expected), (outcomes, expected)
    assert outcomes[calls.NOT_STARTED_ON_TIME] == outcomes[calls.HARNESS_LIMIT] == 0, outcomes
    assert len({row["worker"] for row in call_rows}) == 2  # both processes offered calls, sharing the rate
    assert outcomes[calls.FAILED] > 0  # the gateway could not keep up: the calls still came

    closed_run = run_locust(tmp_path / "closed", gateway.url, *common, "--turns-per-connection", "1", "BasicUser",
                            users=6, spawn_rate=6, run_time=f"{run_s:g}s")
    closed_calls = len(read_csv(f"{closed_run.prefix}_turns.csv"))  # one turn a call, a connection each
    speech_s = min(float(row["speech_ms"]) for row in turn_rows) / 1000
    closed_bound = 6 * (run_s / (speech_s + delay_ms / 1000 + 0.2) + 1)
    assert 0 < closed_calls <= closed_bound
    assert closed_calls < expected - 4 * math.sqrt(expected) <= started, (closed_calls, started)


def _stepped_run(tmp_path, name: str, gateway_url: str):
    run = run_locust(tmp_path / name, gateway_url, "--utterances", "GREETING", "--call-rate", "1/s:11/s:2/s:8s",
                     "--call-turns", "1", "--call-seed", "5", users=6, spawn_rate=6, run_time="50s",
                     locustfile=CALLS_LOCUSTFILE)
    check_call_invariants(run.prefix)
    return summarize(read_run(str(run.prefix))).calls


def test_a_stepped_run_finds_the_knee_of_a_gateway_that_slows_with_load_in_the_same_step_or_the_next(
        tmp_path, gateway_factory) -> None:
    """Each reply delayed 25 ms per session open; calls of one 'hello jarvis' turn, stepping
    1, 3, 5, 7, 9, 11 calls/s every 8 s. A roundtrip is the utterance's own tail (the ~0.26 s of
    silence its file has after the speech ends: client_tail_ms) plus the gateway's part, which is
    about the delay (the fast sink answers at once). At 1/s, with ~2 calls in progress on average, a
    reply would need 8 sessions open to leave "good": the first step is good. At 11/s every call
    lasts at least its speech (1.4 s), so at least 11 x 1.4 = 15 calls are in progress on average
    (Little's law): replies wait 385 ms on average on top of the tail, beyond good. So the knee is
    found, above 1/s and at 11/s at the latest; run again, it lands in the same step or the next."""
    gateway = gateway_factory("--fast-sink", "--fault-delay-per-session-ms", "25")
    first = _stepped_run(tmp_path, "knee1", gateway.url)
    second = _stepped_run(tmp_path, "knee2", gateway.url)
    rates = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    for summary in (first, second):
        assert [step.offered_rate_per_s for step in summary.steps] == rates
        assert summary.steps[0].band in ("excellent", "good")
        assert summary.knee_rate_per_s is not None and 1.0 < summary.knee_rate_per_s <= 11.0, summary.knee_text
        assert summary.not_started_on_time == summary.harness_limit == 0
        # Little's law at work: more calls in progress at each higher rate, set by the gateway's speed.
        assert summary.steps[-1].concurrent_calls_mean > summary.steps[0].concurrent_calls_mean
    assert abs(rates.index(first.knee_rate_per_s) - rates.index(second.knee_rate_per_s)) <= 1, \
        (first.knee_text, second.knee_text)

