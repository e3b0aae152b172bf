"""The reference gateway's I/O over real sockets: upgrades, probes, sessions, replies, faults.

Most tests run a :class:`gateway.server.Gateway` on port 0 in a background event loop with
a stand-in pipeline (:class:`StandInPipeline`); the subprocess tests run ``python -m gateway``
as the README does; the slow test drives 50 real-time sessions through the real pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway.config import GatewayConfig, parse_args
from gateway.faults import Faults
from gateway.pipeline import TurnResult
from gateway.server import Gateway
from voiceharness import guide
from voiceharness.judge import Expectation, judge_turn
from voiceharness.protocol import (
    ClientSession,
    ReplyAudio,
    end_marker_message,
    is_wav,
    riff_declared_bytes,
)
from voiceharness.turn import ReplyRecording, StreamReport, TurnMeter
from voiceharness.turns import TurnContext, TurnRecord

REPO = Path(__file__).resolve().parents[1]
RATE = guide.SAMPLE_RATE_HZ
CHUNK = guide.CHUNK_BYTES


# ----------------------------------------------------------------------------- audio


def tone(ms: float, level_dbfs: float = -20.0, hz: float = 300.0) -> bytes:
    """A voiced-sounding burst: a tone with a 4 Hz syllable-like envelope that never reaches zero."""
    t = np.arange(int(RATE * ms / 1000)) / RATE
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (32767 * 10 ** (level_dbfs / 20) * envelope * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def silence(ms: float, level_dbfs: float | None = -65.0, seed: int = 0) -> bytes:
    count = int(RATE * ms / 1000)
    if level_dbfs is None:
        return bytes(2 * count)
    noise = np.random.default_rng(seed).normal(0, 32767 * 10 ** (level_dbfs / 20), count)
    return noise.astype("<i2").tobytes()


def chunks(pcm: bytes, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def espeak_pcm(text: str) -> bytes:
    """``text`` spoken by espeak-ng, as PCM16 mono 16 kHz."""
    wav_bytes = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(__import__("io").BytesIO(wav_bytes)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    if rate != RATE:
        times = np.arange(0, len(samples) / rate, 1 / RATE)
        samples = np.interp(times, np.arange(len(samples)) / rate, samples)
    return samples.astype("<i2").tobytes()


# ----------------------------------------------------------------------------- stand-in pipeline


class WorkerPidPipeline:
    """Answers GREETING with the worker's process id as the transcript (for the process-pool test)."""

    def process(
        self, pcm: bytes, sample_rate_hz: int = 16000, *, forced_intent=None, tts_enabled: bool = True
    ):
        return TurnResult("GREETING", 1.0, str(os.getpid()), {}, "", tone(100), 0.0, 0.0, 0.0)


class StandInPipeline:
    """Answers every utterance with ``intent`` and ``reply_ms`` of tone, after ``delay_s`` (or,
    with ``held=True``, once the test sets ``release``: busy for as long as the test needs)."""

    def __init__(self, intent: str = "GREETING", delay_s: float = 0.0, reply_ms: float = 300.0,
                 held: bool = False) -> None:
        self.intent = intent
        self.delay_s = delay_s
        self.reply_pcm = tone(reply_ms, hz=440.0)
        self.calls: list[dict[str, Any]] = []
        self.started = threading.Event()  # set when a call begins: a test can wait for a busy pipeline
        self.release = threading.Event()
        if not held:
            self.release.set()

    def process(
        self,
        pcm: bytes,
        sample_rate_hz: int = 16000,
        *,
        forced_intent: str | None = None,
        tts_enabled: bool = True,
    ):
        self.calls.append(
            {
                "audio_ms": len(pcm) / 2 / sample_rate_hz * 1000,
                "forced_intent": forced_intent,
                "tts": tts_enabled,
                "thread": threading.get_ident(),
            }
        )
        self.started.set()
        self.release.wait(60)  # a guard: a held pipeline is released by its test
        if self.delay_s:
            time.sleep(self.delay_s)
        return TurnResult(
            intent=forced_intent or self.intent,
            confidence=0.9,
            transcript="hello jarvis",
            slots={},
            reply_text="Hello!",
            audio_pcm=self.reply_pcm if tts_enabled else b"",
            recognize_ms=5.0,
            nlu_ms=1.0,
            synth_ms=3.0,
        )


# ----------------------------------------------------------------------------- running a gateway


class RunningGateway:
    """A Gateway on port 0 in its own event loop thread."""

    def __init__(self, config: GatewayConfig, pipeline: Any, *, wait_ready: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(config, pipeline=pipeline)
        self._wait_ready = wait_ready
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # Generous: a process pool spawns its workers before it is ready (seconds on a loaded machine)
        assert self._started.wait(60), "gateway did not start"
        self.port = self.gateway.port

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.gateway.start())
        if self._wait_ready:
            self.loop.run_until_complete(asyncio.wait_for(self.gateway.wait_ready(), 50))
        self._started.set()
        self.loop.run_until_complete(self.gateway.wait_closed())

    def url(self, path: str = "/ws/audio") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> tuple[int, str, dict[str, str]]:
        return http_get(self.port, path)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.gateway.close)
        self._thread.join(10)


def http_get(port: int, path: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


@pytest.fixture
def start_gateway(caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    running: list[RunningGateway] = []

    def start(stand_in: Any = None, **overrides: Any) -> RunningGateway:
        config = dataclasses.replace(GatewayConfig(port=0, workers=2), **overrides)
        if stand_in is None and not config.fast_sink and config.pipeline == GatewayConfig.pipeline:
            stand_in = StandInPipeline()
        gw = RunningGateway(config, stand_in)
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.stop()
    failures = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("websockets")
    ]
    assert not failures, f"the gateway's connection handler failed: {failures}"


def header(**fields: Any) -> str:
    data = {"sessionId": "s-1", "correlationId": "c-1", "sampleRate": 16000, "protocolVersion": 1}
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def send_audio(ws: ClientConnection, pcm: bytes, pace_s: float = 0.0) -> None:
    for frame in chunks(pcm):
        ws.send(frame)
        if pace_s:
            time.sleep(pace_s)


def as_json(message: bytes | str) -> dict[str, Any] | None:
    """The JSON object a frame holds, or None for audio (which may well start with a '{' byte)."""
    try:
        data = json.loads(message)
    except ValueError:  # UnicodeDecodeError included
        if isinstance(message, str):
            raise
        return None
    return data if isinstance(data, dict) else None


def collect_reply(ws: ClientConnection, timeout_s: float = 5.0, gap_s: float | None = None) -> dict[str, Any]:
    """Messages of one reply: metadata, audio frames, reply_end (or an inactivity gap if ``gap_s``)."""
    reply: dict[str, Any] = {"metadata": None, "audio": [], "end": False, "json_frames": []}
    deadline = time.monotonic() + timeout_s
    while True:
        wait = deadline - time.monotonic()
        if reply["metadata"] is not None and gap_s is not None:
            wait = min(wait, gap_s)
        if wait <= 0:
            return reply
        try:
            message = ws.recv(timeout=wait)
        except TimeoutError:
            return reply
        data = as_json(message)
        if data is not None:
            reply["json_frames"].append("text" if isinstance(message, str) else "binary")
        if data is None:
            reply["audio"].append(message)
        elif data.get("type") == "reply_end":
            reply["end"] = True
            return reply
        else:
            reply["metadata"] = data


UTTERANCE = silence(200) + tone(700) + silence(200)


# ----------------------------------------------------------------------------- upgrade and HTTP


def test_healthz_readyz_and_metrics_answer_over_http(start_gateway):
    gw = start_gateway()
    status, body, _ = gw.http("/healthz")
    assert (status, body.strip()) == (200, "ok")
    status, body, _ = gw.http("/readyz")
    assert status == 200, body
    status, body, headers = gw.http("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    for name in (
        "voicegw_sessions_active",
        "voicegw_sessions_total",
        "voicegw_queue_dropped_frames_total",
        'voicegw_stage_seconds_bucket{le="0.1",stage="recognize"}',
        'stage="nlu"',
        'stage="synth"',
        'stage="total"',
        "voicegw_event_loop_lag_seconds_bucket",
        "voicegw_event_loop_lag_max_seconds",
        "process_cpu_seconds_total",
    ):
        assert name in body, name


def test_readyz_is_503_with_a_reason_while_the_model_loads_and_when_shedding_load(start_gateway):
    gw = start_gateway(max_sessions=1)
    # Pretend the model is still loading: the gateway is ready only after start() returns.
    gw.gateway._ready.clear()
    gw.gateway._not_ready_reason = "model loading"
    status, body, _ = gw.http("/readyz")
    assert status == 503 and "model loading" in body
    gw.gateway._not_ready_reason = ""
    gw.loop.call_soon_threadsafe(gw.gateway._ready.set)
    with connect(gw.url()) as ws:
        ws.send(header())

        def shedding_load() -> bool:
            status, body, _ = gw.http("/readyz")
            return status == 503 and "shedding load" in body

        # the session counts once the gateway has read the header: wait for that, not a fixed time
        wait_until(shedding_load, 10, "/readyz to say 'shedding load' with the one session allowed open")
        with pytest.raises(InvalidStatus) as refused:
            connect(gw.url(), open_timeout=5)
        assert refused.value.response.status_code == 503


def test_an_unknown_path_is_refused_with_404_at_the_upgrade(start_gateway):
    gw = start_gateway()
    with pytest.raises(InvalidStatus) as refused:
        connect(gw.url("/audio"))
    assert refused.value.response.status_code == 404
    assert b"/ws/audio" in refused.value.response.body


@pytest.mark.parametrize("path", ["/ws/audio", "/ws"])
def test_both_documented_paths_accept_websockets(start_gateway, path):
    gw = start_gateway()
    with connect(gw.url(path)) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        assert collect_reply(ws)["metadata"]["intent"] == "GREETING"


def test_refuse_status_fault_refuses_the_upgrade_with_that_status(start_gateway):
    gw = start_gateway(faults=Faults(refuse_status=503))
    with pytest.raises(InvalidStatus) as refused:
        connect(gw.url())
    assert refused.value.response.status_code == 503
    assert gw.http("/healthz")[0] == 200  # probes still answer


def test_auth_token_is_401_without_it_and_accepted_as_bearer_header_or_query(start_gateway):
    gw = start_gateway(auth_token="s3cret")
    for url, headers in (
        (gw.url(), None),
        (gw.url(), {"Authorization": "Bearer wrong"}),
        (gw.url() + "?token=wrong", None),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers)
        assert refused.value.response.status_code == 401
    for url, headers in ((gw.url(), {"Authorization": "Bearer s3cret"}), (gw.url() + "?token=s3cret", None)):
        with connect(url, additional_headers=headers) as ws:
            ws.send(header())
            ws.send(json.dumps({"type": "end"}))  # no audio: nothing to answer, but the session is open
            ws.ping().wait(2)


def test_the_server_turns_permessage_deflate_off(start_gateway):
    gw = start_gateway()
    with connect(gw.url()) as ws:  # the client offers permessage-deflate by default
        assert ws.protocol.extensions == []
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


# ----------------------------------------------------------------------------- header


@pytest.mark.parametrize(
    "first, reason",
    [
        ("not json", "not JSON"),
        (header(sessionId=None), "sessionId"),
        (header(correlationId=None), "correlationId"),
        (header(sampleRate=8000), "sampleRate must be 16000"),
        (b"\x00\x01\x02\x03", "not"),
    ],
)
def test_a_bad_header_closes_with_1008_and_a_reason(start_gateway, first, reason):
    gw = start_gateway()
    with connect(gw.url()) as ws:
        ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1008
    assert reason in closed.value.rcvd.reason


@pytest.mark.parametrize("as_binary", [False, True], ids=["text", "binary"])
def test_the_header_is_accepted_as_a_text_or_a_binary_frame(start_gateway, as_binary):
    gw = start_gateway()
    with connect(gw.url()) as ws:
        ws.send(header().encode() if as_binary else header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        reply = collect_reply(ws)
    assert reply["metadata"]["intent"] == "GREETING"
    assert reply["metadata"]["correlationId"] == "c-1"


def test_an_odd_byte_count_audio_frame_closes_with_1007(start_gateway):
    gw = start_gateway()
    with connect(gw.url()) as ws:
        ws.send(header())
        ws.send(b"\x00\x01\x02")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1007


# ----------------------------------------------------------------------------- turns


def test_a_reply_is_metadata_in_a_binary_frame_then_pcm_frames_then_reply_end(start_gateway):
    pipeline = StandInPipeline(reply_ms=300)
    gw = start_gateway(pipeline)
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        reply = collect_reply(ws)
    meta = reply["metadata"]
    assert {k: meta[k] for k in ("intent", "confidence", "text", "slots", "reply")} == {
        "intent": "GREETING",
        "confidence": 0.9,
        "text": "hello jarvis",
        "slots": {},
        "reply": "Hello!",
    }
    assert reply["json_frames"] == ["binary", "binary"] and reply["end"]
    assert sum(map(len, reply["audio"])) == len(pipeline.reply_pcm)
    assert max(map(len, reply["audio"])) == CHUNK
    assert pipeline.calls[0]["audio_ms"] == pytest.approx(len(UTTERANCE) / 32, abs=1)


def test_reply_options_wav_text_json_and_no_reply_end(start_gateway):
    pipeline = StandInPipeline(reply_ms=300)
    gw = start_gateway(pipeline, reply_wav=True, json_text_frames=True, reply_end=False)
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        reply = collect_reply(ws, gap_s=0.5)
    assert reply["metadata"]["intent"] == "GREETING"
    assert reply["json_frames"] == ["text"] and not reply["end"]
    assert len(reply["audio"]) == 1 and is_wav(reply["audio"][0])
    wav = reply["audio"][0]
    assert riff_declared_bytes(wav) == len(wav)  # the whole file, as its RIFF chunk says
    audio = ReplyRecording()
    audio.add(ReplyAudio(0.0, wav, "wav", new_file=True))
    assert audio.audio_bytes == len(pipeline.reply_pcm)


def test_silence_ends_an_utterance_without_an_end_marker(start_gateway):
    gw = start_gateway(vad_silence_ms=400)
    with connect(gw.url()) as ws:
        ws.send(header().encode())
        send_audio(ws, silence(300) + tone(600) + silence(600))  # no marker, as the browser tester
        reply = collect_reply(ws)
    assert reply["metadata"]["intent"] == "GREETING" and reply["end"]


def test_a_silent_stream_gets_no_reply_and_the_session_stays_healthy(start_gateway):
    pipeline = StandInPipeline()
    gw = start_gateway(pipeline)
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, silence(3000, level_dbfs=-45) + silence(2000, level_dbfs=None))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
        ws.ping().wait(2)
        # and it still answers speech afterwards
        send_audio(ws, UTTERANCE + silence(700))
        assert collect_reply(ws)["metadata"]["intent"] == "GREETING"
    assert len(pipeline.calls) == 1
    assert gw.http("/healthz")[0] == 200


def test_several_utterances_on_one_connection_each_get_one_reply(start_gateway):
    pipeline = StandInPipeline()
    gw = start_gateway(pipeline)
    with connect(gw.url()) as ws:
        ws.send(header())
        for _ in range(3):  # marker turns, where trailing silence also reaches the VAD's 500 ms
            send_audio(ws, silence(100) + tone(600) + silence(700))
            ws.send(json.dumps({"type": "end"}))
            reply = collect_reply(ws)
            assert reply["metadata"]["intent"] == "GREETING" and reply["end"]
        for _ in range(2):  # silence-only turns
            send_audio(ws, tone(500) + silence(800))
            assert collect_reply(ws)["end"]
        with pytest.raises(TimeoutError):  # the late markers of the first turns were not answered twice
            ws.recv(timeout=0.5)
    assert len(pipeline.calls) == 5


def test_the_harness_client_session_scores_a_turn_against_the_gateway(start_gateway):
    """voiceharness.protocol.ClientSession on one side, the gateway on the other, real socket;
    the session's events measured by the turn's meter and judged."""
    gw = start_gateway(StandInPipeline(intent="TIME_NOW"))
    client = ClientSession(reply_timeout_s=5.0)
    meter = TurnMeter()
    frames = chunks(UTTERANCE)
    with connect(gw.url()) as ws:
        ws.send(client.header_message())
        client.begin_turn(time.monotonic())
        for index, frame in enumerate(frames):
            ws.send(frame)
            if index == len(frames) - 2:
                client.speech_ended(time.monotonic())
        ws.send(end_marker_message())
        for event in client.close_mic(time.monotonic()):
            meter.fold(event)
        while meter.ended is None:
            for event in client.receive(ws.recv(timeout=5), time.monotonic()):
                meter.fold(event)
    verdict = judge_turn(meter.ended, meter.audio, meter.metadata, Expectation(intent="TIME_NOW"))
    record = TurnRecord.build(TurnContext(), meter.timings(client, StreamReport(len(frames))), verdict)
    assert record.success, record.failure_detail
    assert record.intent == "TIME_NOW" and record.reply_complete and record.roundtrip_ms > 0


def test_queue_drops_are_counted_when_the_pipeline_is_slow(start_gateway):
    # The pipeline is held busy until all 120 frames are in (it slept 1.5 s, which a slow machine
    # could spend sending them): 50 fit the queue, the other 70 are dropped, oldest first.
    pipeline = StandInPipeline(held=True)
    gw = start_gateway(pipeline, queue_frames=50)
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        assert pipeline.started.wait(30), "the turn never reached the pipeline"  # the assembler is busy now
        send_audio(ws, silence(120 * 64))  # 120 frames while it is busy
        wait_until(lambda: _dropped_frames(gw) >= 70, 30, "the frames beyond the queue's 50 to be dropped")
        pipeline.release.set()
        assert collect_reply(ws)["metadata"]["intent"] == "GREETING"
    assert _dropped_frames(gw) == 120 - 50


def _dropped_frames(gw) -> float:
    _, body, _ = gw.http("/metrics")
    return float(re.search(r"^voicegw_queue_dropped_frames_total (\S+)$", body, re.MULTILINE).group(1))


def test_the_fault_switches_shape_the_reply(start_gateway):
    pipeline = StandInPipeline()
    gw = start_gateway(pipeline, faults=Faults(delay_ms=400, no_audio=True, wrong_intent=True))
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        started = time.monotonic()
        ws.send(json.dumps({"type": "end"}))
        reply = collect_reply(ws)
        elapsed = time.monotonic() - started
    assert reply["metadata"]["intent"] == "ECHO"  # the one after GREETING
    assert reply["audio"] == [] and reply["end"]
    assert elapsed >= 0.4
    assert pipeline.calls[0]["tts"] is False


def test_wrong_intent_fault_with_an_intent_forces_it_on_the_pipeline(start_gateway):
    pipeline = StandInPipeline()
    gw = start_gateway(pipeline, faults=Faults(wrong_intent=True, wrong_intent_forced="WEATHER_SIMPLE"))
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        assert collect_reply(ws)["metadata"]["intent"] == "WEATHER_SIMPLE"
    assert pipeline.calls[0]["forced_intent"] == "WEATHER_SIMPLE"


@pytest.mark.parametrize("code", [4001, 1011])
def test_close_after_frames_fault_closes_with_the_chosen_code(start_gateway, code):
    gw = start_gateway(faults=Faults(close_after_frames=5, close_code=code))
    with connect(gw.url()) as ws:
        ws.send(header())
        with pytest.raises(ConnectionClosed) as closed:
            for frame in chunks(silence(2000)):
                ws.send(frame)
                time.sleep(0.005)
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_close_code_1006_drops_the_connection_without_a_close_frame(start_gateway):
    gw = start_gateway(faults=Faults(close_after_frames=3, close_code=1006))
    with connect(gw.url()) as ws:
        ws.send(header())
        with pytest.raises(ConnectionClosed) as closed:
            for frame in chunks(silence(2000)):
                ws.send(frame)
                time.sleep(0.005)
            ws.recv(timeout=5)
    assert closed.value.rcvd is None  # abnormal closure: 1006 on the client side


def test_fast_sink_answers_each_end_marker_at_once_with_fixed_metadata(start_gateway):
    gw = start_gateway(None, fast_sink=True, fast_sink_intent="TIME_NOW")
    with connect(gw.url()) as ws:
        ws.send(header())
        for _ in range(3):
            send_audio(ws, silence(300, level_dbfs=None))
            started = time.monotonic()
            ws.send(json.dumps({"type": "end"}))
            reply = collect_reply(ws)
            # "at once": no pipeline, no endpointer wait. The bound is generous (a loaded CI machine
            # must not fail it); the fast sink's speed itself is measured in bench/.
            assert time.monotonic() - started < 3.0
            assert reply["metadata"]["intent"] == "TIME_NOW" and reply["end"]
            assert sum(map(len, reply["audio"])) == 2 * RATE // 10  # 100 ms


def test_close_sends_1001_to_open_sessions(start_gateway):
    gw = start_gateway()
    with connect(gw.url()) as ws:
        ws.send(header())
        ws.ping().wait(2)
        gw.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1001


def test_the_pipeline_runs_off_the_event_loop_thread(start_gateway):
    """Recognition never blocks the loop: every pipeline call runs on a pool thread (or, by
    default, in a worker process: the next test)."""
    pipeline = StandInPipeline(delay_s=0.2)
    gw = start_gateway(pipeline)
    with connect(gw.url()) as ws:
        ws.send(header())
        for _ in range(2):
            send_audio(ws, UTTERANCE)
            ws.send(json.dumps({"type": "end"}))
            assert collect_reply(ws)["metadata"]["intent"] == "GREETING"
    loop_thread = gw._thread.ident
    assert len(pipeline.calls) == 2
    assert all(call["thread"] != loop_thread for call in pipeline.calls), (loop_thread, pipeline.calls)


def test_the_default_process_pool_runs_the_pipeline_in_worker_processes(start_gateway):
    gw = start_gateway(None, executor="process", workers=1, pipeline=f"{__name__}:WorkerPidPipeline")
    with connect(gw.url()) as ws:
        ws.send(header())
        send_audio(ws, UTTERANCE)
        ws.send(json.dumps({"type": "end"}))
        reply = collect_reply(ws, timeout_s=30)
    assert reply["metadata"]["intent"] == "GREETING"
    worker_pid = int(reply["metadata"]["text"])
    assert worker_pid != os.getpid()


def test_a_pipeline_that_cannot_load_makes_readyz_say_why():
    config = dataclasses.replace(
        GatewayConfig(port=0), executor="process", workers=1, pipeline="no_such_module:Pipe"
    )
    gw = RunningGateway(config, None, wait_ready=False)
    try:
        deadline = time.monotonic() + 20
        while "failed" not in (answer := gw.http("/readyz"))[1] and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body, _ = answer
        assert status == 503
        assert "model failed to load: ModuleNotFoundError" in body and "no_such_module" in body
        assert gw.http("/healthz")[0] == 200  # alive, not ready
        with connect(gw.url()) as ws:  # a turn fails (logged), the session does not hang or crash
            ws.send(header())
            send_audio(ws, UTTERANCE)
            ws.send(json.dumps({"type": "end"}))
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)
            ws.ping().wait(2)
    finally:
        gw.stop()


# ----------------------------------------------------------------------------- options


def test_command_line_options_reach_the_config():
    config = parse_args(
        [
            "--port",
            "0",
            "--vad-silence-ms",
            "300",
            "--reply-wav",
            "--no-reply-end",
            "--json-text-frames",
            "--fault-delay-ms",
            "50",
            "--fault-no-audio",
            "--fault-wrong-intent",
            "--fault-close-after-frames",
            "7",
            "--fault-close-code",
            "4000",
            "--fault-refuse-status",
            "502",
            "--auth-token",
            "t",
            "--fast-sink",
            "--fast-sink-intent",
            "ECHO",
            "--log-json",
        ]
    )
    assert (
        config.port,
        config.vad_silence_ms,
        config.reply_wav,
        config.reply_end,
        config.json_text_frames,
    ) == (
        0,
        300.0,
        True,
        False,
        True,
    )
    assert config.faults == Faults(
        delay_ms=50,
        no_audio=True,
        wrong_intent=True,
        close_after_frames=7,
        close_code=4000,
        refuse_status=502,
    )
    assert (config.auth_token, config.fast_sink, config.fast_sink_intent, config.log_json) == (
        "t",
        True,
        "ECHO",
        True,
    )


BAD_OPTIONS = [
    "--fault-close-code 1005",
    "--fault-refuse-status 200",
    "--fault-wrong-intent HELLO",
    "--port 70000",
    "--port x",
    "--workers 0",
    "--workers many",
    "--worker-nice 30",
    "--vad-silence-ms -1",
    "--vad-silence-ms 5",
    "--vad-max-utterance-ms 400",
    "--dialect klingon",
    "--no-such-option",
    "--dialect smartjarvis --reply-wav",
    "--dialect smartjarvis --json-text-frames",
    "--dialect smartjarvis --ping-timeout 5",
    "--reply-sample-rate-hz 22050",
    "--reply-sample-rate-hz 8000",
    "--reply-leading-silence-ms -5",
]


@pytest.mark.parametrize("argv", BAD_OPTIONS)
def test_bad_options_stop_with_two_lines_the_error_and_where_help_is(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv.split())
    assert exited.value.code == 2
    error, pointer = capsys.readouterr().err.splitlines()  # no usage block before the error
    assert error.startswith("python -m gateway: error: ")
    assert any(word in error for word in argv.split() if word.startswith("--")), error
    assert pointer == "Run `python -m gateway --help` for the options."


def test_python_m_gateway_with_a_bad_port_prints_the_error_and_a_pointer_to_help():
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "99999"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "python -m gateway: error: --port must be 0-65535, got 99999",
        "Run `python -m gateway --help` for the options.",
    ]


# ----------------------------------------------------------------------------- subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gateway_process(*args: str, ready_timeout_s: float = 60.0) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if http_get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def test_python_m_gateway_serves_a_turn_and_sigterm_closes_sessions_with_1001():
    with gateway_process("--fast-sink", "--log-json") as (process, port):
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send(header().encode())
            send_audio(ws, UTTERANCE)
            ws.send(json.dumps({"type": "end"}))
            assert collect_reply(ws)["metadata"]["intent"] == "GREETING"
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1001
        assert process.wait(15) == 0
        events = [
            json.loads(line)["event"] for line in process.stdout.read().splitlines() if line.startswith("{")
        ]
    for event in ("listening", "ready", "session_start", "turn", "shutdown", "session_end"):
        assert event in events


# ----------------------------------------------------------------------------- 50 real-time sessions


async def _realtime_session(port: int, index: int, speech: bytes, results: list[dict[str, Any]]) -> None:
    from websockets.asyncio.client import connect as aconnect

    await asyncio.sleep(index * 0.02)  # all 50 start within a second, not in lock-step
    audio = silence(300, seed=index) + speech + silence(900, seed=index + 100)
    async with aconnect(f"ws://127.0.0.1:{port}/ws/audio", compression=None, max_size=None) as ws:
        await ws.send(header(sessionId=f"s-{index}", correlationId=f"c-{index}").encode())
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        metadata = None

        async def reader() -> None:
            nonlocal metadata
            async for message in ws:
                data = as_json(message)
                if data is None:
                    continue
                if data.get("type") == "reply_end":
                    return
                metadata = data

        reading = asyncio.create_task(reader())
        frames = chunks(audio)
        # Stream at real-time pace, then keep streaming silence (as a microphone does) until the reply ends.
        while not reading.done():
            frame = frames[sent] if sent < len(frames) else silence(64, seed=sent)
            await ws.send(frame)
            sent += 1
            if sent > len(frames) + 600:  # ~38 s of waiting
                break
            await asyncio.sleep(max(0.0, start + sent * CHUNK / 2 / RATE - loop.time()))
        end = loop.time()
        reading.cancel()
        results.append(
            {"index": index, "intent": (metadata or {}).get("intent"), "frames": sent, "s": end - start}
        )


@pytest.mark.slow
@pytest.mark.exclusive  # 50 real-time sessions on the real recognizer need the CPU (shared, the gateway stopped answering)
@pytest.mark.requires("espeak-ng")
def test_fifty_realtime_sessions_all_get_their_intent_and_recognition_never_blocks_the_loop():
    """No turn lost among 50 real-time sessions, and recognition stays off the event loop.

    The loop's lag itself (the 50 ms requirement) is a speed figure: on a loaded 2-core CI
    machine other processes starve the gateway for longer than that, which is no bug. What a
    bug looks like is the loop's own thread busy for a long stretch (recognition, synthesis or
    a model load run on it): the gateway logs every stall with the CPU its loop thread used
    meanwhile, which starvation does not inflate. The lag figures are printed, for the record.
    """
    speech = espeak_pcm("hello jarvis")
    with gateway_process("--workers", str(os.cpu_count() or 2), ready_timeout_s=120) as (process, port):
        results: list[dict[str, Any]] = []

        async def run_all() -> None:
            await asyncio.gather(*(_realtime_session(port, i, speech, results) for i in range(50)))

        asyncio.run(run_all())
        _, body, _ = http_get(port, "/metrics")
        process.send_signal(signal.SIGTERM)
        log = process.communicate(timeout=15)[0]
    # The gateway logs every stall of 25 ms or more at once, with the sessions open then.
    stalls = [
        (float(lag), int(sessions), float(cpu))
        for lag, cpu, sessions in re.findall(
            r"event=loop_blocked lag_ms=(\S+) loop_cpu_ms=(\S+) sessions=(\d+)", log
        )
    ]
    lag_max_s = float(re.search(r"^voicegw_event_loop_lag_max_seconds (\S+)$", body, re.MULTILINE).group(1))
    turns = re.findall(r'^voicegw_turns_total\{intent="(\w+)"\} (\S+)$', body, re.MULTILINE)
    print(
        f"\n50 sessions: max event-loop lag {lag_max_s * 1000:.1f} ms; stalls >= 25 ms (lag, sessions, loop cpu): "
        f"{stalls}; turns {turns}; "
        f"longest session {max(r['s'] for r in results):.1f} s"
    )
    intents = sorted((r["index"], r["intent"]) for r in results)
    assert len(results) == 50
    assert [intent for _, intent in intents] == ["GREETING"] * 50, intents
    assert {intent: float(count) for intent, count in turns} == {"GREETING": 50.0}, turns  # the gateway's own count
    # Decoding "hello jarvis" costs pocketsphinx a few hundred ms of CPU; the loop's own work for
    # 50 streams is a few ms per stall. 100 ms of loop-thread CPU in one stall means the loop ran
    # something heavy itself (test_the_pipeline_runs_off_the_event_loop_thread pins where it runs).
    blocked_by_own_work = [stall for stall in stalls if stall[2] >= 100.0]
    assert blocked_by_own_work == [], blocked_by_own_work
    assert not math.isnan(lag_max_s)


@pytest.mark.slow
@pytest.mark.requires("espeak-ng")
def test_the_guides_practical_examples_on_one_connection_end_by_silence_with_the_real_pipeline():
    """The browser tester's way: no end marker, one connection, each command then silence."""
    with gateway_process("--workers", "1") as (_process, port), connect(f"ws://127.0.0.1:{port}/ws") as ws:
        ws.send(header().encode())
        for phrase, expected in guide.PRACTICAL_EXAMPLES.items():
            send_audio(ws, silence(300) + espeak_pcm(phrase) + silence(800))
            reply = collect_reply(ws, timeout_s=15)
            assert reply["metadata"]["intent"] == expected, (phrase, reply["metadata"])
            assert reply["end"] and sum(map(len, reply["audio"])) > RATE  # over half a second of speech
