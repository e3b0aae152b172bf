"""Twice the load the gateway can serve: it sheds sessions with 503, drops and counts frames, and stays flat.

A gateway with ``--max-sessions 20`` and a slow pipeline (``tests/slow_pipeline.py``: 1.5 s
per turn, 2 threads) gets 40 microphones streaming at twice real time for 15 s
(``bench/soak_gateway.py``'s load, which runs the same for 10 minutes). While it is full,
``/readyz`` says 503 "shedding load", extra upgrades get HTTP 503 and the harness's client
classifies them as ``connection_http``; sessions whose turn waits in the pipeline drop their
oldest frames and ``voicegw_queue_dropped_frames_total`` counts them; RSS and file descriptors
stay bounded and come back when the load goes; nothing in the log is a traceback.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.soak_gateway import SLOW_PIPELINE, read_metrics, readyz, run_load, summarize
from voiceharness import protocol
from voiceharness.errors import ConnectionFailed

pytestmark = pytest.mark.slow
MAX_SESSIONS = 20


def _harness_connect(port: int) -> str:
    """The harness's own client opening one more session; its diagnosis code ('' if it got in)."""
    from voiceharness.connection import BlockingTransport, ConnectOptions

    try:
        transport = BlockingTransport(f"ws://127.0.0.1:{port}/ws/audio", protocol.ClientSession(),
                                      ConnectOptions(connect_timeout_s=5))
    except ConnectionFailed as failure:
        return failure.diagnosis
    transport.close()
    return ""


def test_twice_the_sessions_it_serves_is_shed_with_503_counted_and_memory_stays_bounded(gateway_factory, monkeypatch):
    monkeypatch.setenv("VOICEGW_SLOW_PIPELINE_MS", "1500")
    gateway = gateway_factory(
        "--max-sessions", str(MAX_SESSIONS), "--queue-frames", "50",
        "--pipeline", SLOW_PIPELINE, "--executor", "thread", "--workers", "2",
    )
    assert readyz(gateway.port)[0] == 200
    diagnoses: list[str] = []

    def while_loaded(sample: dict) -> None:
        if sample["sessions_active"] >= MAX_SESSIONS and not diagnoses:
            diagnoses.append(_harness_connect(gateway.port))

    result = asyncio.run(
        run_load(gateway.port, gateway.process.pid, users=2 * MAX_SESSIONS, duration_s=15.0,
                 session_s=8.0, sample_s=2.5, on_sample=while_loaded)
    )
    summary = summarize(result, warmup_s=5.0)
    loaded = result["samples"][1:]

    # Shedding: never more than the limit, /readyz 503 while full, 503 at the upgrade, and the
    # harness names it.
    assert summary["sessions_active_max"] <= MAX_SESSIONS
    full = [s for s in loaded if s["readyz"] == 503]
    assert full, loaded
    assert all("shedding load" in s["readyz_body"] for s in full)
    assert summary["upgrades_refused_503"] > 0 and result["load"]["upgrades_shed_503"] > 0
    assert diagnoses == ["connection_http"]
    # Bounded queues drop the oldest frames and count them.
    assert summary["dropped_frames_total"] > 0
    assert summary["turns_total"] > 0
    # Once the load is gone: ready again, descriptors back, memory bounded.
    assert summary["readyz_after_load"] == 200
    assert summary["fds_after_load"] <= summary["fds_start"] + 2
    assert summary["rss_mb_max"] - summary["rss_mb_first_loaded"] < 20, summary
    metrics = read_metrics(gateway.port)
    assert metrics["voicegw_sessions_active"] == 0
    log = gateway.log_text()
    assert "Traceback" not in log and "level=error" not in log
    assert "event=queue_drop" in log
