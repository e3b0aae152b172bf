"""The gateway process fails: killed, stopped gracefully, gone for good; the run is cut by Ctrl-C.

Four scenarios run side by side, each with its own reference gateway (``--fast-sink``) and a
schedule of what happens to it:

* ``kill``     SIGKILL mid-utterance at 4 s, back at 7 s: the turns in flight end as
               ``recording_stopped``, users reconnect with jittered backoff, the time to
               recover is a ``recovery`` event, the run goes on.
* ``term``     SIGTERM at 4 s (the gateway closes every session with 1001), back at 6 s.
* ``give_up``  SIGKILL at 3 s, never back: each user gives up after maxRetries
               (``connection_gave_up``) and stops; the run ends at its run time, and the
               analysis gate fails (exit 1).
* ``ctrl_c``   the gateway is fine; Locust gets SIGINT at 5 s of a 30 s run: the turns in
               progress are recorded as ``run_stopped`` and the run is marked incomplete.

Apart from those, a gateway at its session limit turns one of three users away with HTTP 503:
that user gives up, the other two go on.

Every scenario checks the invariant: the run's independent count of started turns equals the
rows of its turns file, each row a success or a diagnosed failure.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import threading
import time

import pytest
from conftest import PYTHON, ROOT, Gateway, free_port
from fault_runs import check_invariant, failures, finish, read_turns, start_locust

pytestmark = pytest.mark.slow

USERS = 4
COMMON = ("--tags", "basic")


def _sigint(process) -> None:
    process.send_signal(signal.SIGINT)


SCENARIOS = {
    # name: (locust options, users, run time, [(at_s, action on the gateway or the locust process)])
    "kill": (("--max-retries", "10"), USERS, "14s",
             [(4.0, lambda g, _p: g.stop(signal.SIGKILL)), (7.0, lambda g, _p: g.start())]),
    # 16 s: a user refused twice waits up to 4 s more (backoff step 2), and must still talk after that
    "term": (("--max-retries", "10"), USERS, "16s",
             [(4.0, lambda g, _p: g.stop(signal.SIGTERM)), (6.0, lambda g, _p: g.start())]),
    "give_up": (("--max-retries", "2"), 2, "10s", [(3.0, lambda g, _p: g.stop(signal.SIGKILL))]),
    "ctrl_c": ((), USERS, "30s", [(3.0, lambda _g, p: _sigint(p))]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway_faults")
    gateways = {name: Gateway(free_port(), ("--fast-sink",), folder / f"{name}-gateway.log").start()
                for name in SCENARIOS}
    processes, threads, events = {}, [], {name: [] for name in SCENARIOS}
    try:
        for name, (options, users, run_time, schedule) in SCENARIOS.items():
            process = start_locust(folder / name, gateways[name].url, *COMMON, *options, users=users,
                                   run_time=run_time)
            processes[name] = process

            def follow(name=name, process=process, schedule=schedule) -> None:
                _wait_for_a_success(folder / f"{name}_turns.csv")  # the schedule counts from the first turn
                began = time.monotonic()
                for at_s, action in schedule:
                    time.sleep(max(0.0, at_s - (time.monotonic() - began)))
                    events[name].append(time.time())  # wall clock, as the turns file's timestamps
                    action(gateways[name], process)

            threads.append(threading.Thread(target=follow, daemon=True))
            threads[-1].start()
        results = {name: finish(process, timeout_s=90) for name, process in processes.items()}
        for thread in threads:
            thread.join(30)
    finally:
        for gateway in gateways.values():
            gateway.stop()
    return results, events, {name: g.log_text() for name, g in gateways.items()}


def _wait_for_a_success(path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and any(row["success"] == "1" for row in read_turns(path)):
            return
        time.sleep(0.05)


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
    recovery = stats(run)[("recovery", "time to recover")]
    assert int(recovery["Request Count"]) == USERS
    outage_ms = (restarted_at - killed_at) * 1000
    assert outage_ms * 0.8 <= float(recovery["Average Response Time"]) <= outage_ms + 8000
    print(f"\nkill: outage {outage_ms:.0f} ms, recovery avg {float(recovery['Average Response Time']):.0f} ms "
          f"max {recovery['Max Response Time']} ms; turns {len(rows)} {dict(counts)}")


def test_reconnect_attempts_are_jittered_not_in_lock_step(runs):
    """All connections drop at the same instant; the retries that follow must spread out."""
    results, _, _ = runs
    rows = check_invariant(results["kill"])
    first_retry_s = []
    for user in range(USERS):
        refused = [float(r["timestamp"]) for r in rows if r["user"] == str(user) and r["failure"] == "connection_refused"]
        assert len(refused) >= 2, refused
        first_retry_s.append(refused[1] - refused[0])
    # after a refused attempt the next one waits the first backoff step, 0.5-1 s (equal jitter over 1 s)
    assert all(0.45 <= gap <= 2.2 for gap in first_retry_s), first_retry_s
    assert max(first_retry_s) - min(first_retry_s) > 0.05, first_retry_s


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
    # gevent reports the KeyboardInterrupt of the greenlet Ctrl-C landed in; nothing else may fail
    run.output = run.output.replace("Traceback (most recent call last):\nKeyboardInterrupt", "KeyboardInterrupt")
    rows = check_invariant(run, complete=False)
    stopped = [r for r in rows if r["failure"] == "run_stopped"]
    assert 1 <= len(stopped) <= USERS, failures(rows)
    assert sum(r["success"] == "1" for r in rows) >= 1
    assert run.wall_s < 20, "the run stopped at Ctrl-C, not at its run time"


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
