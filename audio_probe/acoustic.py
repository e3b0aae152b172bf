"""The ``acoustic`` check: a corpus utterance out of the speaker, into the microphone, to a gateway.

The manual test a person does with a browser tester, done by the probe: it plays the utterance
on the output device, captures the input in 1024-sample chunks and streams each chunk to the
gateway's WebSocket as it arrives (the real pace of a microphone), then reports the intent the
gateway understood and the roundtrip. The turn is the harness's own (:func:`voiceharness.turn.run_turn`
on the one-voice transport), its frames taken from the capture as it happens.
"""

from __future__ import annotations

import argparse
import math
import queue
import time
from typing import Any

import numpy as np

from voiceharness import diagnoses, framing, guide
from voiceharness.connection import BlockingTransport, ConnectOptions
from voiceharness.errors import ConnectionFailed, UsageError
from voiceharness.judge import Expectation
from voiceharness.protocol import Mic
from voiceharness.turn import Microphone, StreamPlan, StreamReport, run_turn
from voiceharness.turns import TurnContext

from .devices import (
    STREAM_LATENCY,
    STREAM_WATCHDOG_S,
    block_size,
    device_error,
    import_sounddevice,
    open_duplex,
    parse_device,
    stream_dropped,
    stream_stalled,
)
from .result import EXIT_FAIL, EXIT_PASS, Result, device_line
from .signals import SILENT_RMS_DBFS, find_delay, float_to_pcm16, pcm16_to_float, resample, rms_dbfs

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ
CHUNK_SAMPLES = guide.CHUNK_SAMPLES


def _pick_utterance(text: str, utterance_id: str | None) -> Any:
    from audio_corpus import load_corpus

    corpus = load_corpus()
    if utterance_id:
        chosen = [u for u in corpus if u.id == utterance_id]
    else:
        wanted = text.strip().lower()
        chosen = sorted(
            (u for u in corpus if u.text.lower() == wanted), key=lambda u: u.kind != "clean"
        )  # stable: manifest order
    if not chosen:
        what = f"utterance {utterance_id!r}" if utterance_id else f"text {text!r}"
        texts = sorted({u.text for u in corpus})
        raise UsageError(f"the corpus has no {what}; corpus texts: {', '.join(texts)}")
    return chosen[0]


class _Capture:
    """The microphone's side of the acoustic turn: the input, resampled to 16 kHz and cut into
    1,024-sample frames as it is captured, and where in those frames the utterance's speech ends.

    The speech's end in the capture is the played speech's end plus the audio path's latency,
    found by cross-correlating the utterance's first 400 ms of speech with the capture as soon
    as the capture holds them (well before the speech ends): the frame that carries the last
    speech sample is then known before it is sent, and the turn's end of speech is exact.
    """

    # How much of the speech is correlated, and how much capture to allow for the path's latency.
    REFERENCE_S = 0.4
    LATENCY_SLACK_S = 0.6

    def __init__(self, utterance: Any, blocks: queue.Queue, rate_hz: int, stream: Any, stream_samples: int) -> None:
        self.blocks = blocks
        self.rate_hz = rate_hz
        self.stream = stream
        self.stream_samples = stream_samples
        speech = pcm16_to_float(utterance.pcm)
        start = utterance.speech_start_sample
        self.reference = speech[start : min(utterance.speech_end_sample, start + round(self.REFERENCE_S * SAMPLE_RATE_HZ))]
        self.speech_start = start
        self.speech_samples = utterance.speech_end_sample - start
        self.captured: list[np.ndarray] = []
        self.lag: int | None = None
        self.correlation = 0.0
        self.speech_end_frame: int | None = None

    def frames(self):
        """The captured 16 kHz frames, each as soon as it is whole, up to the stream's length."""
        pending = np.zeros(0)
        sent = 0
        while sent < self.stream_samples:
            block = self._next_block()
            pending = np.concatenate([pending, resample(block, self.rate_hz, SAMPLE_RATE_HZ)])
            while pending.size >= CHUNK_SAMPLES and sent < self.stream_samples:
                frame, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                self.captured.append(frame)
                sent += frame.size
                self._locate_speech()
                yield float_to_pcm16(frame)

    def _next_block(self) -> np.ndarray:
        waited_s = 0.0
        while True:
            try:
                return self.blocks.get(timeout=0.1)
            except queue.Empty:
                dropped = stream_dropped(self.stream)
                if dropped is not None:
                    raise dropped from None
                waited_s += 0.1
                if waited_s > STREAM_WATCHDOG_S:
                    raise stream_stalled(STREAM_WATCHDOG_S) from None

    def _locate_speech(self) -> None:
        if self.lag is not None:
            return
        have = len(self.captured) * CHUNK_SAMPLES
        if have < self.speech_start + self.reference.size + round(self.LATENCY_SLACK_S * SAMPLE_RATE_HZ) \
                and have < self.stream_samples:
            return
        lag, correlation = find_delay(self.reference, np.concatenate(self.captured))
        self.correlation = correlation
        if correlation < 0.3 and have < self.stream_samples:
            return  # not heard yet (a long audio path): try again with more capture
        self.lag = lag
        end_sample = lag + self.speech_samples
        self.speech_end_frame = max(end_sample - 1, 0) // CHUNK_SAMPLES

    def audio(self) -> np.ndarray:
        return np.concatenate(self.captured) if self.captured else np.zeros(0)


class _MicrophoneTransport(BlockingTransport):
    """The one-voice transport, its frames taken from the microphone as they are captured (the real
    pace of a microphone) instead of a plan's; the rest — the connection, what the gateway sends,
    the close — is the one-voice transport's."""

    def __init__(self, url: str, session: Any, options: ConnectOptions, capture: _Capture) -> None:
        super().__init__(url, session, options)
        self.capture = capture

    def stream(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        session = self.session
        send_times: list[float] = []
        for pcm in self.capture.frames():
            self.read_until(time.monotonic())  # the gateway may answer while we speak
            if session.mic is Mic.TRAILING and not microphone.wants_audio(time.monotonic()):
                break
            self.connection.send_frame(framing.client_frame(pcm, self.connection.mask_key))
            send_times.append(time.monotonic())
            end_frame = self.capture.speech_end_frame
            if session.mic is Mic.SPEAKING and end_frame is not None and len(send_times) > end_frame:
                session.speech_ended(send_times[end_frame])
        return StreamReport(len(send_times))


def run_acoustic(args: argparse.Namespace) -> Result:
    """The manual voice test, acoustically: play a corpus utterance on the output, capture the
    input in 1024-sample chunks and stream each chunk to the gateway as it arrives (the real
    pace of a microphone), then report the intent and the roundtrip.

    The turn runs through the harness's one turn driver (:func:`voiceharness.turn.run_turn`) on
    the one-voice transport, its frames taken from the capture: end of speech is the moment the
    frame that carries the utterance's last speech sample *as captured* was sent (see
    :class:`_Capture`), and every figure is the turn record's.
    """
    from voiceharness import protocol

    utterance = _pick_utterance(args.text, args.utterance)
    speech = pcm16_to_float(utterance.pcm)
    # Play the utterance then silence; stream until a little after it (room for the audio
    # path's latency), shorter than the gateway's 500 ms end-of-speech silence when the end
    # marker is sent, and the browser tester's 1 s of trailing silence when it is not.
    tail_s = 0.3 if args.end_marker else 1.0
    stream_samples = speech.size + round(tail_s * SAMPLE_RATE_HZ)
    played16 = np.concatenate([speech, np.zeros(round(1.5 * SAMPLE_RATE_HZ))])

    sd = import_sounddevice()
    in_spec, out_spec = parse_device(args.device)
    inp, out = open_duplex(sd, in_spec, out_spec, args.rate)
    rate = out.rate_hz
    played = resample(played16, SAMPLE_RATE_HZ, rate).astype(np.float32)

    blocks: queue.Queue[np.ndarray] = queue.Queue()
    position = 0

    def on_duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        n = max(0, min(frames, played.size - position))
        outdata[:n, 0] = played[position : position + n]
        outdata[n:] = 0
        position += frames
        blocks.put(indata[:, 0].copy())

    session = protocol.ClientSession(reply_timeout_s=args.timeout)
    try:
        stream = sd.Stream(samplerate=rate, blocksize=block_size(rate), device=(inp.index, out.index), channels=1,
                           dtype="float32", latency=STREAM_LATENCY, callback=on_duplex)
    except sd.PortAudioError as error:
        raise device_error(error, f"devices {inp.index} {inp.name} / {out.index} {out.name}") from None
    capture = _Capture(utterance, blocks, rate, stream, stream_samples)
    try:
        transport = _MicrophoneTransport(args.url, session, ConnectOptions(connect_timeout_s=args.timeout), capture)
    except ConnectionFailed as failure:
        raise ConnectionFailed(diagnoses.explain(failure.diagnosis, f"{args.url}: {failure}"), failure.diagnosis,
                               retryable=failure.retryable, elapsed_ms=failure.elapsed_ms) from None
    plan = StreamPlan(frames=(), speech_end_frame=0, chunk_samples=CHUNK_SAMPLES)
    context = TurnContext(timestamp=time.time(), connection_id=session.header.session_id, scenario="acoustic",
                          utterance_id=utterance.id, request_name=utterance.id,
                          expected_intent=utterance.expected_intent, speech_ms=utterance.duration_ms)
    try:
        with stream:
            turn = run_turn(transport, plan, Expectation(intent=utterance.expected_intent), context,
                            send_marker=args.end_marker, keep_reply_audio=False)
    except sd.PortAudioError as error:
        raise device_error(error, f"devices {inp.index} {inp.name} / {out.index} {out.name}") from None
    finally:
        transport.close()
    record = turn.record
    capture16 = capture.audio()
    correlation = capture.correlation
    latency_ms = ((capture.lag or 0) - utterance.speech_start_sample) * 1000 / SAMPLE_RATE_HZ
    roundtrip_ms, intent_ms = record.roundtrip_ms, record.intent_ms
    level = rms_dbfs(capture16)

    def num(value: float, digits: int = 1) -> float | None:
        return None if math.isnan(value) else round(value, digits)

    data = {
        "url": args.url,
        "utterance": {
            "id": utterance.id,
            "text": utterance.text,
            "expected_intent": utterance.expected_intent,
        },
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "input": {"index": inp.index, "name": inp.name, "rate_hz": inp.rate_hz},
        "capture_rms_dbfs": round(level, 2),
        "capture_correlation": round(correlation, 4),
        "audio_latency_ms": round(latency_ms, 1),
        "intent": record.intent,
        "confidence": num(record.confidence, 3),
        "transcript": record.transcript,
        "roundtrip_ms": num(roundtrip_ms),
        "client_tail_ms": num(record.client_tail_ms),
        "gateway_response_ms": num(record.gateway_response_ms),
        "intent_ms": num(intent_ms),
        "chunks_sent": record.chunks_sent,
        "chunks_received": record.chunks_received,
        "reply_audio_bytes": record.reply_audio_bytes,
        "end_marker": args.end_marker,
    }
    from voiceharness.bands import band_of

    band = band_of("roundtrip", roundtrip_ms) if not math.isnan(roundtrip_ms) else ""
    data["roundtrip_band"] = band
    lines = [
        device_line("Output", out),
        device_line("Input", inp),
        (
            f"Said {utterance.text!r} ({utterance.id}, {utterance.duration_ms:.0f} ms); captured at {level:.1f} dBFS, "
            f"audio path latency {latency_ms:.0f} ms, correlation {correlation:.2f}"
        ),
        f"Streamed {data['chunks_sent']} chunks of {CHUNK_SAMPLES} samples to {args.url}"
        + (" + end marker" if args.end_marker else ""),
    ]
    if record.intent:
        lines.append(
            f"Intent {record.intent} (expected {utterance.expected_intent}), confidence "
            f"{record.confidence:.2f}, transcript {record.transcript!r}"
        )
    if not math.isnan(roundtrip_ms):
        lines.append(
            f"Roundtrip {roundtrip_ms:.0f} ms ({band}) · intent after {intent_ms:.0f} ms · "
            f"reply {data['reply_audio_bytes']} bytes in {data['chunks_received']} chunks"
        )
    if record.success:
        return Result(
            "acoustic",
            EXIT_PASS,
            "OK",
            f"{record.intent} came back for {utterance.text!r}: the voice path works",
            lines,
            data,
        )
    failure, detail = record.failure, record.failure_detail
    if level < SILENT_RMS_DBFS:
        failure, detail = "mic_silent", "the microphone heard nothing of the utterance"
    advice = diagnoses.explain(failure, detail)
    return Result("acoustic", EXIT_FAIL, failure, advice, lines, data, failure)
