"""voiceharness.listener_pool: real listener worker processes, in a plain process and under gevent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voiceharness.errors import UsageError
from voiceharness.listener_pool import INDEX_COLUMNS, ListenerPool, judge_saved_replies

ROOT = Path(__file__).resolve().parent.parent
GREETING = "Hello! I am Jarvis. How can I help you?"
UNKNOWN = "Sorry, I did not understand. Please try again."


def espeak(text: str, voice: str = "en-us", rate_wpm: int = 170) -> tuple[np.ndarray, int]:
    """espeak-ng's own 22,050 Hz output, as int16 samples."""
    import io

    done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "--stdout", "--", text],
                          capture_output=True, check=True)
    samples, rate_hz = soundfile.read(io.BytesIO(done.stdout), dtype="int16")
    return samples, rate_hz


class Collector:
    """Callback that records every judgement (and how often it was called)."""

    def __init__(self) -> None:
        self.judgements = []
        self.lock = threading.Lock()

    def __call__(self, judgement) -> None:
        with self.lock:
            self.judgements.append(judgement)


@pytest.fixture(scope="module")
def greeting() -> tuple[np.ndarray, int]:
    return espeak(GREETING)


def test_pool_judges_replies_in_worker_processes(greeting):
    """Each accepted reply is judged once, in a process that is not this one."""
    collected = Collector()
    with ListenerPool("reference", workers=2, max_queue=10) as pool:
        assert pool.wait_ready()
        unknown = espeak(UNKNOWN)
        accepted = [pool.submit(*greeting, "hello jarvis", collected), pool.submit(*unknown, "play music", collected),
                    pool.submit(greeting[0].tobytes(), greeting[1], "hello jarvis", collected)]
        assert accepted == [True, True, True]
        assert pool.drain(120)
        stats = pool.stats()
    assert len(collected.judgements) == 3
    assert all(j.error is None for j in collected.judgements)
    assert sorted(j.heard.intent for j in collected.judgements) == ["GREETING", "GREETING", "UNKNOWN"]
    assert {j.worker_pid for j in collected.judgements}.isdisjoint({os.getpid()})
    assert stats["judged"] == 3 and stats["errors"] == 0 and stats["submitted"] == 3
    assert stats["worker_cpu_s"] > 0
    assert stats["workers_alive"] == 2


def test_full_queue_skips_and_counts_instead_of_waiting(greeting):
    collected = Collector()
    with ListenerPool("reference", workers=1, max_queue=1) as pool:
        assert pool.wait_ready()
        results = [pool.submit(*greeting, "hello jarvis", collected) for _ in range(12)]
        assert pool.drain(300)
        stats = pool.stats()
    skipped = results.count(False)
    assert skipped >= 1  # one slot in the queue, one reply in the worker: 12 cannot all fit
    assert stats["skipped_behind"] == skipped
    assert stats["queue_max"] <= 1
    assert len(collected.judgements) == results.count(True) == stats["judged"] + stats["errors"]


def test_sampling_judges_that_share_evenly(greeting):
    collected = Collector()
    with ListenerPool("reference", workers=1, max_queue=100, sample_fraction=0.25) as pool:
        results = [pool.submit(*greeting, "hello jarvis", collected) for _ in range(8)]
        assert pool.drain(300)
        stats = pool.stats()
    assert results == [False, False, False, True] * 2
    assert stats["skipped_sampling"] == 6 and stats["judged"] == 2


def test_a_killed_worker_resolves_its_reply_as_an_error_and_is_restarted(greeting):
    # A long reply, so that the worker is still decoding when it is killed.
    long_reply = np.tile(greeting[0], 8)
    collected = Collector()
    with ListenerPool("reference", workers=1, max_queue=4) as pool:
        assert pool.wait_ready()
        first_pid = pool.stats()["worker_pids"][0]
        assert pool.submit(long_reply, greeting[1], "hello jarvis", collected)
        deadline = time.monotonic() + 30
        while pool.stats()["queue_now"] and time.monotonic() < deadline:  # taken by the worker
            time.sleep(0.01)
        os.kill(first_pid, signal.SIGKILL)
        assert pool.drain(60)
        assert len(collected.judgements) == 1
        lost = collected.judgements[0]
        assert lost.heard is None and "died" in lost.error and lost.worker_pid == first_pid
        # The restarted worker judges the next reply.
        assert pool.submit(*greeting, "hello jarvis", collected)
        assert pool.drain(120)
        stats = pool.stats()
    after = collected.judgements[1]
    assert after.error is None and after.heard.intent == "GREETING"
    assert after.worker_pid != first_pid
    assert stats["restarts"] == 1 and stats["errors"] == 1 and stats["judged"] == 1


def wait_for_new_worker(pool: ListenerPool, old_pid: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = pool.stats()["worker_pids"]
        if pids and pids[0] != old_pid:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("the worker was not restarted")


def test_a_worker_that_dies_twice_is_given_up_and_replies_still_resolve(greeting):
    collected = Collector()
    with ListenerPool("reference", workers=1, max_queue=4, max_restarts=1) as pool:
        assert pool.wait_ready()
        first = pool.stats()["worker_pids"][0]
        os.kill(first, signal.SIGKILL)
        assert pool.submit(*greeting, "hello jarvis", collected)  # finds the worker dead
        assert pool.drain(60)
        second = wait_for_new_worker(pool, first)
        os.kill(second, signal.SIGKILL)
        assert pool.submit(*greeting, "hello jarvis", collected)  # dead again: no restart left
        assert pool.drain(60)
        # No worker is left: a reply submitted now resolves as an error, it does not vanish.
        assert pool.submit(*greeting, "hello jarvis", collected)
        assert pool.drain(30)
        stats = pool.stats()
    assert [j.error is not None for j in collected.judgements] == [True, True, True]
    assert "no listener worker" in collected.judgements[-1].error
    assert stats["workers_alive"] == 0 and stats["restarts"] == 1 and stats["errors"] == 3


def test_bad_expectations_fail_before_any_worker_starts(tmp_path):
    bad = tmp_path / "mine.json"
    bad.write_text('{"intents": {"GREETING": {"phrase": ["hi"]}}}')
    with pytest.raises(UsageError, match=r"mine\.json.*intents\.GREETING\.phrase"):
        ListenerPool(bad)
    with pytest.raises(UsageError, match="--judge-sample"):
        ListenerPool("reference", sample_fraction=1.5)


GEVENT_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()
import json, sys, io, subprocess, gevent, soundfile
from voiceharness.listener_pool import ListenerPool

def speak(text):
    out = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "--stdout", "--", text], capture_output=True, check=True).stdout
    return soundfile.read(io.BytesIO(out), dtype="int16")

ticks = []
def ticker():  # the event loop must keep running while replies are judged
    while True:
        ticks.append(1)
        gevent.sleep(0.01)

results = []
gevent.spawn(ticker)
pool = ListenerPool("reference", workers=1, max_queue=4)
assert pool.wait_ready()
ticks_before = len(ticks)
for text, request in ((sys.argv[1], "hello jarvis"), (sys.argv[2], "echo hello world")):
    samples, rate = speak(text)
    assert pool.submit(samples, rate, request, results.append)
assert pool.drain(120)
print(json.dumps({"intents": [r.heard.intent if r.heard else r.error for r in results],
                  "ticks_while_judging": len(ticks) - ticks_before, "stats": pool.stats()}))
pool.close()
"""


def test_pool_works_under_gevent_monkey_patching():
    """In a process patched as Locust patches it, the pool judges and the loop keeps running."""
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, GREETING, "hello world"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["intents"] == ["GREETING", "ECHO"]
    assert result["ticks_while_judging"] > 0
    assert result["stats"]["judged"] == 2


def test_judge_saved_replies_reads_the_index_and_wavs(tmp_path, greeting):
    soundfile.write(tmp_path / "a.wav", greeting[0], greeting[1])
    samples, rate = espeak("hello world")
    soundfile.write(tmp_path / "b.wav", samples, rate)
    (tmp_path / "index.csv").write_text(
        ",".join(INDEX_COLUMNS) + "\n"
        "u1-1,hello_jarvis,GREETING,hello jarvis,a.wav\n"
        "u1-2,echo_hello_world,ECHO,echo hello world,b.wav\n"
        "u1-3,echo_hello_world,ECHO,echo hello world,missing.wav\n"
    )
    rows = judge_saved_replies(tmp_path, "reference")
    assert [r["heard_intent"] for r in rows] == ["GREETING", "ECHO", ""]
    assert [r["correct"] for r in rows[:2]] == [True, True]
    assert rows[2]["error"].startswith("cannot read") and "missing.wav" in rows[2]["error"]
    assert rows[0]["turn_key"] == "u1-1" and rows[0]["transcript"]


def test_judge_saved_replies_rejects_an_index_without_its_columns(tmp_path):
    (tmp_path / "index.csv").write_text("turn_key,path\nx,a.wav\n")
    with pytest.raises(UsageError, match="missing column"):
        judge_saved_replies(tmp_path, "reference")
    with pytest.raises(UsageError, match="no such file"):
        judge_saved_replies(tmp_path / "nowhere", "reference")


def test_workers_start_loading_their_model_in_the_constructor_and_say_when_ready():
    """The judge is loading before the caller does anything else (a Locust run ramps up users
    meanwhile), and says once how long it took."""
    import psutil

    messages = []
    pool = ListenerPool("smartjarvis", workers=2, on_ready=messages.append)
    try:
        children = psutil.Process().children()
        commands = [" ".join(child.cmdline()) for child in children]
        # Already running, before any wait: started by the constructor itself.
        assert sum("voiceharness.listener_worker" in c for c in commands) == 2, commands
        assert pool.wait_ready()
        deadline = time.monotonic() + 10
        while not messages and time.monotonic() < deadline:  # the callback follows the ready flags
            time.sleep(0.05)
        assert len(messages) == 1
        assert messages[0].startswith("Reply judge ready: 2 listener process(es) loaded the speech model (hybrid) in ")
        assert pool.stats()["ready_s"] > 0
    finally:
        pool.close()
    assert len(messages) == 1


def test_a_worker_that_cannot_start_is_said_so_once(tmp_path):
    messages = []
    with ListenerPool("reference", workers=1, method="no-such-method", on_ready=messages.append) as pool:
        assert not pool.wait_ready()
        deadline = time.monotonic() + 10
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(messages) == 1 and "1 of 1 listener process(es) failed to start" in messages[0]
    assert "no-such-method" in messages[0]


def test_a_reply_that_waited_too_long_for_a_worker_is_resolved_unheard_and_counted(greeting):
    """Workers starved of CPU: a reply queued longer than max_wait_s is not heard (its turn goes
    on unjudged, never a harness error), and the worker moves on to the replies coming in now."""
    collected = Collector()
    with ListenerPool("reference", workers=1, max_queue=10, max_wait_s=0.0) as pool:
        assert pool.wait_ready()
        time.sleep(0.01)  # any wait is longer than 0 s
        assert pool.submit(*greeting, "hello jarvis", collected)
        assert pool.drain(120)
        stats = pool.stats()
    (judgement,) = collected.judgements
    assert judgement.heard is None and judgement.error is None
    assert stats["skipped_stale"] == 1 and stats["judged"] == 0 and stats["errors"] == 0


def test_a_pool_closed_while_its_workers_load_stops_cleanly():
    """The run ended before the judge was ready (close without waiting: the process is killed
    microseconds after it started, long before its model loads): no exception in the driver
    thread, the start error says so, and no process is left."""
    import psutil

    raised = []
    previous_hook = threading.excepthook
    threading.excepthook = raised.append
    messages = []
    try:
        pool = ListenerPool("smartjarvis", workers=1, method="hybrid", on_ready=messages.append)
        pool.close(timeout_s=0)
        assert pool.wait_ready(60) is False
        deadline = time.monotonic() + 30
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        threading.excepthook = previous_hook
    assert not raised, [str(r.exc_value) for r in raised]
    assert len(messages) == 1 and "failed to start (stopped before it was ready)" in messages[0], messages
    assert not [c for c in psutil.Process().children() if "listener_worker" in " ".join(c.cmdline())]
