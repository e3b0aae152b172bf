"""The Locust voice users, run for real (headless, on loopback) against the reference gateway.

Each test reads what a user of the harness would read: the turns file, Locust's CSV files
and the log. Every test also checks the turn invariant: each row is a success or carries a
diagnosis code.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import LOCUST, LOCUSTFILE, ROOT, Gateway, free_port, run_locust
from voiceharness import diagnoses

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
    run = run_locust(tmp_path / "run", f"ws://127.0.0.1:{free_port()}", users=2, run_time="4s")
    rows = read_turns(run.file("_turns.csv"))
    assert rows and set(failures(rows)) <= {"connection_refused", "connection_gave_up"}
    assert "connection_refused" in failures(rows)
    assert "voice-gateway not running" in run.output
    assert "Traceback" not in run.output


def test_users_give_up_after_max_retries(tmp_path):
    run = run_locust(tmp_path / "run", f"ws://127.0.0.1:{free_port()}", "--max-retries", "1",
                     users=2, run_time="8s")
    rows = read_turns(run.file("_turns.csv"))
    counts = failures(rows)
    # one refused attempt, then the retry fails and the user gives up: no more turns after that
    assert counts["connection_gave_up"] == 2
    assert counts["connection_refused"] == 2
    assert "gave up after maxRetries" in run.output


def test_wrong_path_is_http_404(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink")
    run = run_locust(tmp_path / "run", gateway.url, "--ws-path", "/nope", "--max-retries", "0",
                     users=1, run_time="4s")
    rows = read_turns(run.file("_turns.csv"))
    assert failures(rows)["connection_http_404"] == 1
    assert "wrong WebSocket path" in run.output


def test_gateway_closing_mid_stream_is_recording_stopped(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-close-after-frames", "5", "--fault-close-code", "1011")
    run = run_locust(tmp_path / "run", gateway.url, "--tags", "basic", users=2, run_time="6s")
    rows = read_turns(run.file("_turns.csv"))
    stopped = [row for row in rows if row["failure"] == "recording_stopped"]
    assert stopped, failures(rows)
    assert all(row["close_code"] == "1011" for row in stopped)
    assert "Recording stopped unexpectedly" in run.output
    # users reconnect and go on: later turns run on new connections
    assert max(int(row["reconnections"]) for row in rows) >= 1


def test_tts_off_is_no_audio_response(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-no-audio")
    run = run_locust(tmp_path / "run", gateway.url, "--tags", "basic", users=2, run_time="5s")
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

    def outage():
        time.sleep(5)
        gateway.stop(signal.SIGKILL)
        time.sleep(4)
        gateway.start()

    thread = threading.Thread(target=outage)
    thread.start()
    run = run_locust(prefix, gateway.url, "--tags", "recovery", "--max-retries", "10", users=3, run_time="22s")
    thread.join()
    rows = read_turns(run.file("_turns.csv"))
    counts = failures(rows)
    assert counts["connection_refused"] >= 1, counts
    last_failure = max(float(r["timestamp"]) for r in rows if r["success"] != "1" and r["failure"] != "run_stopped")
    assert any(r["success"] == "1" and float(r["timestamp"]) > last_failure - 1 for r in rows), "users recovered"
    stats = {(row["Type"], row["Name"]): row for row in read_stats(f"{prefix}_stats.csv")}
    recovery = stats[("recovery", "time to recover")]
    assert int(recovery["Request Count"]) >= 1
    # the outage lasted about 4 s; recovery cannot be faster than that, nor wildly slower
    assert 3000 <= float(recovery["Average Response Time"]) <= 20000
    assert "Traceback" not in run.output


def test_fifty_users_for_sixty_seconds_against_the_real_gateway(tmp_path, shared_gateway):
    run = run_locust(tmp_path / "load", shared_gateway.url, "--utterances", "kind:clean",
                     "--think-time-ms", "1000-3000",  # people, not a script: the harness's default
                     users=50, spawn_rate=10, run_time="60s", timeout_s=240)
    rows = read_turns(run.file("_turns.csv"))
    judged = [row for row in rows if row["failure"] != "run_stopped"]
    assert len(judged) > 200
    assert failures(judged) == Counter(), failures(judged)
    kinds = {row["Type"] for row in read_stats(run.file("_stats.csv"))}
    assert {"connect", "roundtrip", "intent", "reply", "ping"} <= kinds
    # loopback carries the audio in real time: the kernel had nothing left to send at end of speech
    backlog_ms = sorted(float(row["uplink_backlog_ms"]) for row in judged)
    assert backlog_ms[len(backlog_ms) // 2] == 0.0, backlog_ms[-10:]
    # the load generator kept its real-time schedule: p99 over every frame it sent (run.json)
    status = json.loads(run.file("_run.json").read_text())
    assert status["complete"] and status["turns_started"] == len(rows)
    (lateness,) = status["send_lateness"].values()
    assert lateness["frames"] > 10_000
    assert lateness["p99_ms"] < 5.0, lateness
