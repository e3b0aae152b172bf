"""The ``acoustic`` check: a corpus utterance out of the speaker, into the microphone, to a gateway.

The manual test a person does with a browser tester, done by the probe: it plays the utterance
on the output device, captures the input in 1024-sample chunks and streams each chunk to the
gateway's WebSocket as it arrives (the real pace of a microphone), then reports the intent the
gateway understood and the roundtrip. The WebSocket turn is all in :func:`run_acoustic`, apart
from the device-only checks (:mod:`audio_probe.commands`), so that it can move to the project's
common turn driver without touching them.
"""

from __future__ import annotations

import argparse
import math
import queue
import time
from typing import Any

import numpy as np

from voiceharness import diagnoses, guide
from voiceharness.errors import ConnectionFailed, UsageError

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


def _connect(url: str, timeout_s: float) -> Any:
    import websocket

    ws = websocket.WebSocket(enable_multithread=True)
    try:
        ws.connect(url, timeout=timeout_s, suppress_origin=True)
    except Exception as error:  # noqa: BLE001 - websocket-client raises many kinds; classify them all
        code = diagnoses.classify_connect_error(error)
        raise ConnectionFailed(diagnoses.explain(code, f"{url}: {error}"), code) from None
    return ws


def run_acoustic(args: argparse.Namespace) -> Result:
    """The manual voice test, acoustically: play a corpus utterance on the output, capture the
    input in 1024-sample chunks and stream each chunk to the gateway as it arrives (the real
    pace of a microphone), then report the intent and the roundtrip.

    The protocol is :class:`voiceharness.protocol.ClientSession`; this function only moves
    bytes. End of speech is where the *capture* holds the utterance's last speech sample
    (found by cross-correlating the utterance with the capture), so the roundtrip counts from
    the frame that carried it to the socket, as the roundtrip metric is defined (end of speech
    to the first reply audio frame).
    """
    import websocket

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

    ws = _connect(args.url, args.timeout)
    session = protocol.ClientSession(reply_timeout_s=args.timeout)
    chunks: queue.Queue[np.ndarray] = queue.Queue()
    position = 0

    def on_duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        n = max(0, min(frames, played.size - position))
        outdata[:n, 0] = played[position : position + n]
        outdata[n:] = 0
        position += frames
        chunks.put(indata[:, 0].copy())

    events: list[object] = []
    send_times: list[float] = []
    captured: list[np.ndarray] = []
    pending = np.zeros(0)
    try:
        ws.send_binary(session.header_message(as_binary=True))
        # End of speech is placed after streaming, from the capture itself (below).
        session.begin_turn(
            utterance_id=utterance.id,
            expected_intent=utterance.expected_intent,
            now=time.monotonic(),
            speech_ms=utterance.duration_ms,
        )
        stream = sd.Stream(
            samplerate=rate,
            blocksize=block_size(rate),
            device=(inp.index, out.index),
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_duplex,
        )
        with stream:
            sent = 0
            while sent < stream_samples:
                waited_s = 0.0
                while True:
                    try:
                        block = chunks.get(timeout=0.1)
                        break
                    except queue.Empty:
                        dropped = stream_dropped(stream)
                        if dropped is not None:
                            raise dropped from None
                        waited_s += 0.1
                        if waited_s > STREAM_WATCHDOG_S:
                            raise stream_stalled(STREAM_WATCHDOG_S) from None
                pending = np.concatenate([pending, resample(block, rate, SAMPLE_RATE_HZ)])
                while pending.size >= CHUNK_SAMPLES and sent < stream_samples:
                    frame, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                    ws.send_binary(float_to_pcm16(frame))
                    send_times.append(time.monotonic())
                    captured.append(frame)
                    sent += frame.size
        events += session.close_mic(time.monotonic(), chunks_sent=len(send_times))
        if args.end_marker:
            ws.send(protocol.end_marker_message())
        while not any(isinstance(e, protocol.TurnEnded) for e in events):
            deadline = session.next_deadline()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                events += session.poll(now)
                continue
            ws.settimeout(max(0.01, (deadline - now) if deadline else 0.5))
            try:
                opcode, payload = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                events += session.poll(time.monotonic())
                continue
            now = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                events += session.connection_lost(
                    now, int.from_bytes(payload[:2], "big") if payload else None
                )
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                events += session.receive(payload.decode("utf-8"), now)
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                events += session.receive(bytes(payload), now)
            else:
                session.frame_received(now)
    except (websocket.WebSocketException, OSError) as error:
        events += session.connection_lost(time.monotonic(), None, str(error))
    except sd.PortAudioError as error:
        raise device_error(error, f"devices {inp.index} {inp.name} / {out.index} {out.name}") from None
    finally:
        ws.close()

    ended = [e for e in events if isinstance(e, protocol.TurnEnded)]
    record = ended[0].record if ended else None
    if ended:
        from voiceharness.judge import Expectation, judge

        judge(record, ended[0].audio, ended[0].metadata, Expectation(intent=utterance.expected_intent),
              ended_by=ended[0].ended_by, reply_timeout_ms=args.timeout * 1000)
    capture16 = np.concatenate(captured) if captured else np.zeros(0)
    lag, correlation = find_delay(
        speech[utterance.speech_start_sample : utterance.speech_end_sample], capture16
    )
    speech_end_in_capture = lag + (utterance.speech_end_sample - utterance.speech_start_sample)
    latency_ms = (lag - utterance.speech_start_sample) * 1000 / SAMPLE_RATE_HZ
    end_frame = min(max(speech_end_in_capture - 1, 0) // CHUNK_SAMPLES, len(send_times) - 1)
    end_of_speech_at = send_times[end_frame] if send_times else math.nan
    metadata = next((e for e in events if isinstance(e, protocol.ReplyMetadata)), None)
    first_audio = next((e for e in events if isinstance(e, protocol.ReplyAudio)), None)
    roundtrip_ms = (first_audio.at - end_of_speech_at) * 1000 if first_audio else math.nan
    intent_ms = (metadata.at - end_of_speech_at) * 1000 if metadata else math.nan
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
        "intent": record.intent if record else "",
        "confidence": num(record.confidence, 3) if record else None,
        "transcript": record.transcript if record else "",
        "roundtrip_ms": num(roundtrip_ms),
        "intent_ms": num(intent_ms),
        "chunks_sent": record.chunks_sent if record else len(send_times),
        "chunks_received": record.chunks_received if record else 0,
        "reply_audio_bytes": record.reply_audio_bytes if record else 0,
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
    if record is not None and record.intent:
        lines.append(
            f"Intent {record.intent} (expected {utterance.expected_intent}), confidence "
            f"{record.confidence:.2f}, transcript {record.transcript!r}"
        )
    if not math.isnan(roundtrip_ms):
        lines.append(
            f"Roundtrip {roundtrip_ms:.0f} ms ({band}) · intent after {intent_ms:.0f} ms · "
            f"reply {data['reply_audio_bytes']} bytes in {data['chunks_received']} chunks"
        )
    if record is not None and record.success:
        return Result(
            "acoustic",
            EXIT_PASS,
            "OK",
            f"{record.intent} came back for {utterance.text!r}: the voice path works",
            lines,
            data,
        )
    failure = record.failure if record else "no_intent"
    detail = record.failure_detail if record else "the turn did not end"
    if level < SILENT_RMS_DBFS:
        failure, detail = "mic_silent", "the microphone heard nothing of the utterance"
    advice = diagnoses.explain(failure, detail)
    return Result("acoustic", EXIT_FAIL, failure, advice, lines, data, failure)
