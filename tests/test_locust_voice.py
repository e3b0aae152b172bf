"""The Locust voice users, run for real (headless, on loopback) against the reference gateway.

Each test reads what a user of the harness would read: the turns file, Locust's CSV files
and the log. Every test also checks the turn invariant: each row is a success or carries a
diagnosis code.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import LOCUST, LOCUSTFILE, ROOT, Gateway, free_port, run_locust, wait_until
from fault_runs import users_with

from voiceharness import diagnoses, guide

pytestmark = pytest.mark.slow


def read_turns(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row in rows:  # every turn ends as a success or a classified failure
        if row["success"] == "1":
            assert row["failure"] == "", row
        else:
            assert row["failure"] in diagnoses.DIAGNOSES, row
    return rows


def read_stats(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def failures(rows) -> Counter:
    return Counter(row["failure"] for row in rows if row["success"] != "1")


def test_wrong_port_is_diagnosed_as_refused_without_traceback(tmp_path):
    run = run_locust(tmp_path / "run", f"ws://127.0.0.1:{free_port()}", users=2, run_time="60s",
                     stop_after_turns=2)
    rows = read_turns(run.file("_turns.csv"))
    assert rows and set(failures(rows)) <= {"connection_refused", "connection_gave_up"}
    assert "connection_refused" in failures(rows)
    assert "voice-gateway not running" in run.output
    assert "Traceback" not in run.output


def test_users_give_up_after_max_retries(tmp_path):
    # both users refused, retried once and given up: four turns, and none after them
    run = run_locust(tmp_path / "run", f"ws://127.0.0.1:{free_port()}", "--max-retries", "1",
                     users=2, run_time="60s", stop_after_turns=4)
    rows = read_turns(run.file("_turns.csv"))
    counts = failures(rows)
    # one refused attempt, then the retry fails and the user gives up: no more turns after that
    assert counts["connection_gave_up"] == 2
    assert counts["connection_refused"] == 2
    assert "gave up after maxRetries" in run.output
    assert "User 0 stops:" in run.output and "User 1 stops:" in run.output  # StopUser: no turn after that


def test_wrong_path_is_http_404(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink")
    run = run_locust(tmp_path / "run", gateway.url, "--ws-path", "/nope", "--max-retries", "0",
                     users=1, run_time="60s", stop_after_turns=1)
    rows = read_turns(run.file("_turns.csv"))
    assert failures(rows)["connection_http_404"] == 1
    assert "wrong WebSocket path" in run.output


def test_gateway_closing_mid_stream_is_recording_stopped(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-close-after-frames", "5", "--fault-close-code", "1011")
    # three turns of two users: one user's second, on the connection it reopened, is among them
    run = run_locust(tmp_path / "run", gateway.url, "--tags", "basic", users=2, run_time="90s", stop_after_turns=3)
    rows = read_turns(run.file("_turns.csv"))
    stopped = [row for row in rows if row["failure"] == "recording_stopped"]
    assert stopped, failures(rows)
    assert all(row["close_code"] == "1011" for row in stopped)
    assert "Recording stopped unexpectedly" in run.output
    # users reconnect and go on: later turns run on new connections
    assert max(int(row["reconnections"]) for row in rows) >= 1


def test_tts_off_is_no_audio_response(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-no-audio")
    run = run_locust(tmp_path / "run", gateway.url, "--tags", "basic", users=2, run_time="60s", stop_after_turns=2)
    rows = read_turns(run.file("_turns.csv"))
    judged = [row for row in rows if row["failure"] != "run_stopped"]
    assert judged and all(row["failure"] == "no_audio_tts" for row in judged)
    assert all(row["intent"] == "GREETING" for row in judged)
    assert "intent received but no reply audio" in run.output


def test_distributed_master_and_two_workers_record_every_turn(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-delay-ms", "20")
    prefix = tmp_path / "dist"
    port = free_port()
    common = ["-f", LOCUSTFILE, "--host", gateway.url]
    master = subprocess.Popen(
        [LOCUST, *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
         "--headless", "-u", "6", "-r", "6", "-t", "12s", "--expect-workers", "2", "--csv", str(prefix),
         "--only-summary", "--tags", "basic", "corpus"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    workers = [
        subprocess.Popen([LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    output, _ = master.communicate(timeout=120)
    for worker in workers:
        worker.wait(30)
    rows = read_turns(f"{prefix}_turns.csv")
    assert len({row["worker"] for row in rows}) == 2, "records from both workers reach the master"
    completed = [row for row in rows if row["failure"] != "run_stopped"]
    stats = {(row["Type"], row["Name"]): row for row in read_stats(f"{prefix}_stats.csv")}
    # every completed (connected) turn fired exactly one intent event, aggregated by the master
    intent_events = sum(int(row["Request Count"]) for (kind, _name), row in stats.items() if kind == "intent")
    assert intent_events == len(completed) > 10, output[-3000:]


def test_recovery_scenario_reports_time_to_recover(tmp_path, gateway_factory):
    gateway: Gateway = gateway_factory("--fast-sink")
    prefix = tmp_path / "recovery"
    users = 3
    moments: dict[str, float] = {}

    def outage():
        # Driven by what the run records, not by the clock: kill once every user has talked,
        # restart once every user has been refused twice (it noticed, and is backing off).
        turns = Path(f"{prefix}_turns.csv")
        wait_until(lambda: len(users_with(turns, success=True)) == users, 60, "every user's first turn")
        moments["killed"] = time.time()  # wall clock, as the turns file's timestamps
        gateway.stop(signal.SIGKILL, standby=False)
        wait_until(lambda: len(users_with(turns, failure="connection_refused", at_least=2)) == users, 60,
                   "every user to be refused twice")
        moments["restarted"] = time.time()
        gateway.restart()

    gateway.prepare_restart()  # its imports done before the outage, so the restart is immediate
    thread = threading.Thread(target=outage)
    thread.start()
    run = run_locust(prefix, gateway.url, "--tags", "recovery", "--max-retries", "10", users=users,
                     run_time="25s")
    thread.join()
    assert set(moments) == {"killed", "restarted"}, "the outage happened within the run"
    rows = read_turns(run.file("_turns.csv"))
    # recovery happens after the gateway is back: nothing succeeded while it was down, every user talked after
    during = [r for r in rows if r["success"] == "1" and moments["killed"] < float(r["timestamp"]) < moments["restarted"]]
    assert during == [], during
    after = {r["user"] for r in rows if r["success"] == "1" and float(r["timestamp"]) > moments["restarted"]}
    assert after == {str(user) for user in range(users)}, failures(rows)
    stats = {(row["Type"], row["Name"]): row for row in read_stats(f"{prefix}_stats.csv")}
    recovery = stats[("recovery", "time to recover")]
    assert int(recovery["Request Count"]) == users
    # Each user's outage began at its first failure, before its second refused turn started, and
    # ended at a connection the restarted gateway accepted: no recovery is shorter than the gap
    # from that second refusal to the restart, nor longer than from the kill to the run's end.
    second_refusal = {}
    for row in rows:
        if row["failure"] == "connection_refused":
            second_refusal.setdefault(row["user"], []).append(float(row["timestamp"]))
    shortest_ms = min(moments["restarted"] - times[1] for times in second_refusal.values()) * 1000
    longest_ms = (time.time() - moments["killed"]) * 1000
    # (1 ms: Locust's CSV rounds response times)
    assert shortest_ms - 1 <= float(recovery["Min Response Time"]), (shortest_ms, recovery)
    assert float(recovery["Max Response Time"]) <= longest_ms + 1, (longest_ms, recovery)
    assert "Traceback" not in run.output


@pytest.mark.exclusive  # 50 real-time voices: the gateway must have the CPU to keep up
def test_fifty_users_for_sixty_seconds_against_the_real_gateway(tmp_path, shared_gateway):
    run = run_locust(tmp_path / "load", shared_gateway.url, "--utterances", "kind:clean",
                     "--think-time-ms", "1000-3000",  # people, not a script: the harness's default
                     users=50, spawn_rate=10, run_time="60s", timeout_s=240)
    rows = read_turns(run.file("_turns.csv"))
    judged = [row for row in rows if row["failure"] != "run_stopped"]
    # Counts checked against what was started, not against a throughput: all 50 users took turns,
    # and the run's end cut at most the one turn each user had in progress.
    assert len({row["user"] for row in rows}) == 50
    assert judged and len(rows) - len(judged) <= 50
    assert failures(judged) == Counter(), failures(judged)
    kinds = {row["Type"] for row in read_stats(run.file("_stats.csv"))}
    assert {"connect", "roundtrip", "intent", "reply", "ping"} <= kinds
    # loopback carries the audio in real time: the kernel had nothing left to send at end of speech
    backlog_ms = sorted(float(row["uplink_backlog_ms"]) for row in judged)
    assert backlog_ms[len(backlog_ms) // 2] == 0.0, backlog_ms[-10:]
    # every frame of every utterance was sent (in order: each intent was recognised right, above)
    short = [row for row in judged
             if int(row["chunks_sent"]) != math.ceil(float(row["speech_ms"]) / guide.CHUNK_MS)]
    assert short == [], short[:3]
    status = json.loads(run.file("_run.json").read_text())
    assert status["complete"] and status["turns_started"] == len(rows)
    (lateness,) = status["send_lateness"].values()
    # Every frame the pacer sent belongs to a recorded real-time turn (fast-paced turns do not go
    # through it): all of a judged turn's frames, and of a turn the run's end cut, no more than
    # its utterance has (the reference dialect streams no trailing silence; a turn cut mid-stream
    # records no count of its own).
    paced = [row for row in rows if row["pace"] == "realtime"]
    planned = sum(max(int(row["chunks_sent"]), math.ceil(float(row["speech_ms"]) / guide.CHUNK_MS)) for row in paced)
    assert sum(int(row["chunks_sent"]) for row in paced) <= lateness["frames"] <= planned, (lateness, planned)
    # How late frames left (p99 under 5 ms is the goal) is a speed figure, measured by the
    # capacity benchmark in bench/ against a baseline; on a loaded CI machine it says more about
    # the machine than the harness. Printed here for the record only.
    print(f"\n50 users: {lateness['frames']} frames, send lateness p99 {lateness['p99_ms']} ms")
