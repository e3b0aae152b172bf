"""The gateway process fails: killed, stopped gracefully, gone for good; the run is cut by Ctrl-C.

Four scenarios run side by side, each with its own reference gateway (``--fast-sink``) and a
schedule of what happens to it:

* ``kill``     SIGKILL mid-utterance (every user has talked, and audio is arriving), back once
               every user has been refused three times: the turns in flight end as
               ``recording_stopped``, users reconnect with jittered backoff, the time to
               recover is a ``recovery`` event, the run goes on.
* ``term``     SIGTERM mid-utterance (the gateway closes every session with 1001), back once
               every user has been refused.
* ``give_up``  SIGKILL once every user has talked, never back: each user gives up after
               maxRetries (``connection_gave_up``) and stops; the run ends at its run time,
               and the analysis gate fails (exit 1).
* ``ctrl_c``   the gateway is fine; Locust gets SIGINT mid-utterance, long before its run
               time: the turns in progress are recorded as ``run_stopped`` and the run is
               marked incomplete.

Each step waits for what the run shows (``fault_runs.users_with`` on the turns file, the
gateway's frame counter), never for a fixed time: on a loaded machine the schedule only runs
later, and the run times leave room for that.

Apart from those, a gateway at its session limit turns one of three users away with HTTP 503:
that user gives up, the other two go on.

Every scenario checks the invariant: the run's independent count of started turns equals the
rows of its turns file, each row a success or a diagnosed failure.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
from conftest import PYTHON, ROOT, Gateway, free_port, wait_until
from fault_runs import check_invariant, failures, finish, start_locust, users_with

pytestmark = pytest.mark.slow

USERS = 4
COMMON = ("--tags", "basic")


def _sigint(process) -> None:
    process.send_signal(signal.SIGINT)


RETIRED: list[subprocess.Popen] = []  # gateways sent SIGTERM and left to exit on their own


def _sigterm(gateway: Gateway, _process) -> None:
    """SIGTERM without waiting for the exit: the gateway stops listening at once (users are
    refused from then on), but may take up to its close timeout (10 s) to exit when a client
    is slow to finish the closing handshake, and the restart need not wait for that."""
    RETIRED.append(gateway.process)
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process = None


def everyone(users: int, **what):
    """A schedule condition: every user has rows like ``what`` (``fault_runs.users_with``)."""
    return lambda turns, _gateway: len(users_with(turns, **what)) == users


def _frames_received(gateway: Gateway) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return float(re.search(r"^voicegw_audio_frames_received_total (\S+)$", text, re.MULTILINE).group(1))


def mid_utterance(users: int):
    """Every user has talked, and audio is arriving right now (the gateway's frame count moves
    within 0.1 s): a fault then lands on turns in flight, not in the users' think time."""

    def condition(turns, gateway: Gateway) -> bool:
        if len(users_with(turns, success=True)) < users:
            return False
        try:
            before = _frames_received(gateway)
            time.sleep(0.1)
            return _frames_received(gateway) > before
        except OSError:  # a slow answer on a loaded machine: ask again
            return False

    return condition


CTRL_C_RUN_S = 120  # never reached: Ctrl-C ends the run long before
SCENARIOS = {
    # name: (locust options, users, run time, [(condition on the turns file and the gateway, action
    # on the gateway or the locust process)]). The restarts are prepared (Gateway.prepare_restart):
    # a gateway listens a moment after restart(), so users wait out one more backoff step (at most
    # 4 s after three refusals) and talk again; the run times leave room for a slow machine.
    "kill": (("--max-retries", "10"), USERS, "24s",
             [(mid_utterance(USERS), lambda g, _p: g.stop(signal.SIGKILL, standby=False)),
              (everyone(USERS, failure="connection_refused", at_least=3), lambda g, _p: g.restart())]),
    "term": (("--max-retries", "10"), USERS, "20s",
             [(mid_utterance(USERS), _sigterm),
              (everyone(USERS, failure="connection_refused"), lambda g, _p: g.restart())]),
    "give_up": (("--max-retries", "2"), 2, "16s", [(everyone(2, success=True), lambda g, _p: g.stop(signal.SIGKILL))]),
    "ctrl_c": ((), USERS, f"{CTRL_C_RUN_S}s", [(mid_utterance(USERS), lambda _g, p: _sigint(p))]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway_faults")
    gateways = {name: Gateway(free_port(), ("--fast-sink",), folder / f"{name}-gateway.log").start()
                for name in SCENARIOS}
    for name in ("kill", "term"):
        gateways[name].prepare_restart()
    processes, threads, events = {}, [], {name: [] for name in SCENARIOS}
    schedule_errors: dict[str, str] = {}
    try:
        for name, (options, users, run_time, schedule) in SCENARIOS.items():
            process = start_locust(folder / name, gateways[name].url, *COMMON, *options, users=users,
                                   run_time=run_time)
            processes[name] = process

            def follow(name=name, process=process, schedule=schedule) -> None:
                turns = folder / f"{name}_turns.csv"
                try:
                    for step, (condition, action) in enumerate(schedule):
                        wait_until(lambda condition=condition: condition(turns, gateways[name]), 60,
                                   f"{name}: step {step}'s condition")
                        events[name].append(time.time())  # wall clock, as the turns file's timestamps
                        action(gateways[name], process)
                except BaseException as error:  # noqa: BLE001 (said by the tests: a thread's error is lost)
                    schedule_errors[name] = f"{type(error).__name__}: {error}"

            threads.append(threading.Thread(target=follow, daemon=True))
            threads[-1].start()
        results = {name: finish(process, timeout_s=90) for name, process in processes.items()}
        for thread in threads:
            thread.join(30)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        for process in RETIRED:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    for name, (_options, _users, _run_time, schedule) in SCENARIOS.items():
        assert len(events[name]) == len(schedule), f"{name}: the schedule stopped: {schedule_errors.get(name)}"
    return results, events, {name: g.log_text() for name, g in gateways.items()}


def stats(run) -> dict:
    with open(run.file("_stats.csv"), newline="", encoding="utf-8") as file:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}


def test_sigkill_mid_utterance_ends_the_turn_as_recording_stopped_and_users_recover(runs):
    results, events, _ = runs
    run = results["kill"]
    rows = check_invariant(run)
    killed_at, restarted_at = events["kill"]
    counts = failures(rows)
    interrupted = [r for r in rows if r["failure"] in ("recording_stopped", "incomplete_reply")]
    assert interrupted, counts
    assert all(r["close_code"] == "" for r in interrupted)  # no close frame: the TCP link dropped
    assert counts["connection_refused"] >= USERS, counts
    # every user talks again after the restart, on a new connection
    after = [r for r in rows if r["success"] == "1" and float(r["timestamp"]) > restarted_at]
    assert {r["user"] for r in after} == {str(u) for u in range(USERS)}
    assert all(int(r["reconnections"]) >= 1 for r in after)
    # nothing succeeded while the gateway was down
    assert not [r for r in rows if r["success"] == "1" and killed_at < float(r["timestamp"]) < restarted_at]
    recovery = stats(run)[("recovery", "time to recover")]
    assert int(recovery["Request Count"]) == USERS
    # A user's outage begins at its first failure, before its second refused turn started, and
    # ends when the restarted gateway accepts it; so no recovery is shorter than the gap from a
    # second refusal to the restart, and none longer than from the kill to the end of the run.
    refused: dict[str, list[float]] = {}
    for r in rows:
        if r["failure"] == "connection_refused":
            refused.setdefault(r["user"], []).append(float(r["timestamp"]))
    shortest_ms = min(restarted_at - times[1] for times in refused.values()) * 1000
    longest_ms = (run.ended_at - killed_at) * 1000
    assert shortest_ms - 1 <= float(recovery["Min Response Time"]), (shortest_ms, recovery)  # CSV rounds to 1 ms
    assert float(recovery["Max Response Time"]) <= longest_ms + 1, (longest_ms, recovery)
    outage_ms = (restarted_at - killed_at) * 1000
    print(f"\nkill: outage {outage_ms:.0f} ms, recovery avg {float(recovery['Average Response Time']):.0f} ms "
          f"max {recovery['Max Response Time']} ms; turns {len(rows)} {dict(counts)}")


def test_reconnect_attempts_are_jittered_not_in_lock_step(runs):
    """All connections drop at the same instant; the retries that follow must spread out."""
    results, _, _ = runs
    rows = check_invariant(results["kill"])
    first_retry_s, refused_times = [], {}
    for user in range(USERS):
        refused = [float(r["timestamp"]) for r in rows if r["user"] == str(user) and r["failure"] == "connection_refused"]
        assert len(refused) >= 3, refused  # the restart waited for three
        first_retry_s.append(refused[1] - refused[0])
        refused_times[user] = refused
    # After a refused attempt the next one waits the first backoff step, 0.5-1 s (equal jitter):
    # never less (a loaded machine can only add). The upper bound is generous, against a wait
    # that is grossly wrong, not a timing figure.
    assert all(0.45 <= gap <= 4.0 for gap in first_retry_s), first_retry_s
    # Not in lock step: the first two backoff waits (0.5-1 s, then 1-2 s) of the four users are
    # not all within 50 ms of each other. Independent jitter fails this with a chance of about 2e-6
    # (range of 4 uniform draws under 10 % and 5 % of their spans); users without jitter always do.
    second_retry_s = [times[2] - times[1] for times in refused_times.values()]
    assert max(first_retry_s) - min(first_retry_s) > 0.05 or max(second_retry_s) - min(second_retry_s) > 0.05, (
        first_retry_s, second_retry_s)


def test_graceful_gateway_stop_closes_sessions_with_1001_and_users_recover(runs):
    results, events, gateway_logs = runs
    run = results["term"]
    rows = check_invariant(run)
    stopped = [r for r in rows if r["failure"] in ("recording_stopped", "incomplete_reply")]
    assert stopped and all(r["close_code"] == "1001" for r in stopped), failures(rows)
    restarted_at = events["term"][1]
    after = [r for r in rows if r["success"] == "1" and float(r["timestamp"]) > restarted_at]
    assert {r["user"] for r in after} == {str(u) for u in range(USERS)}
    assert int(stats(run)[("recovery", "time to recover")]["Request Count"]) >= 1
    assert "shutdown" in gateway_logs["term"]


def test_a_gateway_gone_longer_than_max_retries_makes_each_user_give_up(runs):
    results, _, _ = runs
    run = results["give_up"]
    rows = check_invariant(run)
    counts = failures(rows)
    assert counts["connection_gave_up"] == 2, counts
    assert counts["connection_refused"] == 2 * 2, counts  # maxRetries 2: two refused, the third gives up
    for user in ("0", "1"):  # giving up is the user's last turn
        assert [r for r in rows if r["user"] == user][-1]["failure"] == "connection_gave_up"
    assert "gave up after maxRetries" in run.output
    assert run.returncode == 1  # Locust's own: there were failures


def test_the_analysis_gate_fails_a_run_whose_users_gave_up(runs):
    results, _, _ = runs
    run = results["give_up"]
    gate = subprocess.run(
        # Intent accuracy counts judged turns only (a turn with no reply is not a wrong intent):
        # the gave-up turns fail the run through the failure rate.
        [PYTHON, "-m", "analysis", str(run.prefix), "--gate", "intent.accuracy>=0.98,failures.rate<0.05",
         "--no-files", "--quiet", "--progress", "never"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "gate failed: failures.rate<0.05" in gate.stderr and "gate failed: intent.accuracy" not in gate.stderr
    assert "Traceback" not in gate.stdout + gate.stderr


def test_ctrl_c_records_the_turns_in_progress_and_marks_the_run_incomplete(runs):
    results, _, _ = runs
    run = results["ctrl_c"]
    # gevent reports the KeyboardInterrupt of the greenlet Ctrl-C landed in, with a traceback as
    # long as the code it interrupted (none in a C wait, a few frames in Python); nothing else may fail
    run.output = re.sub(r"Traceback \(most recent call last\):\n(?:[ \t][^\n]*\n|\n)*?KeyboardInterrupt\n",
                        "KeyboardInterrupt\n", run.output)
    rows = check_invariant(run, complete=False)
    stopped = [r for r in rows if r["failure"] == "run_stopped"]
    assert 1 <= len(stopped) <= USERS, failures(rows)
    assert sum(r["success"] == "1" for r in rows) >= 1
    # Ctrl-C came once every user had talked; a run that ignored it would last its full run time.
    # The run's own record of when it began and ended (wall_s counts until this test looked).
    status = json.loads(run.file("_run.json").read_text())
    lasted_s = (dt.datetime.fromisoformat(status["written_at"]) - dt.datetime.fromisoformat(status["began_at"]))
    assert lasted_s.total_seconds() < CTRL_C_RUN_S / 2, "the run stopped at Ctrl-C, not at its run time"


def test_one_user_turned_away_gives_up_while_the_others_go_on(tmp_path, gateway_factory):
    """A gateway at its session limit answers a third user's upgrade with HTTP 503 every time:
    that user gives up after maxRetries with its diagnosis; the two connected users never notice."""
    gateway = gateway_factory("--fast-sink", "--max-sessions", "2")
    process = start_locust(tmp_path / "full", gateway.url, *COMMON, "--max-retries", "2", users=3,
                           spawn_rate=3, run_time="10s")
    run = finish(process, timeout_s=60)
    rows = check_invariant(run)
    turned_away = {r["user"] for r in rows if r["failure"].startswith("connection")}
    assert len(turned_away) == 1, failures(rows)
    (loser,) = turned_away
    mine = [r for r in rows if r["user"] == loser]
    assert [r["failure"] for r in mine] == ["connection_http", "connection_http", "connection_gave_up"], mine
    assert "503" in mine[-1]["failure_detail"]
    gave_up_at = float(mine[-1]["timestamp"])
    others = [r for r in rows if r["user"] != loser and r["failure"] != "run_stopped"]
    assert others and all(r["success"] == "1" for r in others), failures(others)
    for user in {r["user"] for r in others}:  # each goes on talking after the give-up
        assert any(float(r["timestamp"]) > gave_up_at for r in others if r["user"] == user)
    assert run.returncode == 1  # Locust's own: there were failures
