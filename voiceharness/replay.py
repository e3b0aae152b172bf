"""Replay corpus utterances through a gateway once, on one blocking connection, and say
what came back: expected intent, recognised intent, transcript, reply check and roundtrip.

This is the one-voice check a person runs before a load test (``make demo`` runs it first),
and the blocking client that :mod:`mic_probe`'s acoustic check streams its capture with.
It is a thin I/O layer (websocket-client, no gevent) around
:class:`voiceharness.protocol.ClientSession`.

    python -m voiceharness.replay --url ws://127.0.0.1:7090/ws/audio [--select kind:clean]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voiceharness import diagnoses, guide, protocol
from voiceharness.errors import ConnectionFailed, HarnessError
from voiceharness.turns import TurnRecord


@dataclass
class ReplayedTurn:
    record: TurnRecord
    reply_text: str = ""


class BlockingVoiceClient:
    """One WebSocket to a gateway; ``say()`` runs one turn and returns its record."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0, reply_timeout_s: float = 10.0,
                 auth_token: str | None = None) -> None:
        import websocket  # imported here so the protocol package imports without it

        self._websocket = websocket
        headers = [f"Authorization: Bearer {auth_token}"] if auth_token else []
        self.session = protocol.ClientSession(reply_timeout_s=reply_timeout_s)
        self.ws = websocket.WebSocket()
        try:
            self.ws.connect(url, header=headers, timeout=connect_timeout_s, suppress_origin=True)
        except websocket.WebSocketBadStatusException as error:
            code = diagnoses.classify_http_status(error.status_code)
            raise ConnectionFailed(diagnoses.explain(code, f"HTTP {error.status_code} from {url}"), code) from None
        except Exception as error:  # noqa: BLE001 (whatever the library raised becomes a diagnosis)
            code = diagnoses.classify_connect_error(error)
            raise ConnectionFailed(diagnoses.explain(code, f"{url}: {error}"), code) from None
        self.ws.send_binary(self.session.header_message())

    def say(self, frames: Sequence[bytes | memoryview], *, utterance_id: str = "", expected_intent: str = "",
            speech_end_frame: int | None = None, realtime: bool = True, send_marker: bool = True,
            trailing_silence_frames: int = 0) -> ReplayedTurn:
        """Stream ``frames`` (paced like a microphone unless ``realtime`` is False) and collect the reply."""
        session, ws = self.session, self.ws
        chunk_bytes = len(frames[0]) if frames else guide.CHUNK_BYTES
        all_frames: list[bytes | memoryview] = [*frames, *([bytes(chunk_bytes)] * trailing_silence_frames)]
        frame_s = chunk_bytes / 2 / guide.SAMPLE_RATE_HZ
        session.begin_turn(utterance_id=utterance_id, expected_intent=expected_intent,
                           speech_end_frame=len(frames) - 1 if speech_end_frame is None else speech_end_frame,
                           now=time.monotonic())
        reply_text = ""
        try:
            start = time.monotonic()
            for index, frame in enumerate(all_frames):
                due = start + index * frame_s
                if realtime and due > time.monotonic():
                    time.sleep(due - time.monotonic())
                ws.send_binary(frame)
                session.audio_sent(time.monotonic(), due if realtime else None)
            marker = session.end_utterance(time.monotonic(), send_marker=send_marker)
            if marker is not None:
                ws.send(marker)
            while True:
                deadline = session.next_deadline()
                ws.settimeout(max(0.001, (deadline or time.monotonic() + 1) - time.monotonic()))
                try:
                    opcode, data = ws.recv_data(control_frame=False)
                except self._websocket.WebSocketTimeoutException:
                    events = session.poll(time.monotonic())
                else:
                    if opcode == self._websocket.ABNF.OPCODE_CLOSE:
                        events = session.connection_lost(time.monotonic(), None, "closed by the gateway")
                    else:
                        message = data.decode("utf-8", "replace") if opcode == self._websocket.ABNF.OPCODE_TEXT else data
                        events = session.receive(message, time.monotonic())
                for event in events:
                    if isinstance(event, protocol.ReplyMetadata):
                        reply_text = event.reply_text
                    if isinstance(event, protocol.TurnEnded):
                        return ReplayedTurn(event.record, reply_text)
        except (OSError, self._websocket.WebSocketException) as error:
            events = session.connection_lost(time.monotonic(), None, str(error))
            record = next(e.record for e in events if isinstance(e, protocol.TurnEnded))
            return ReplayedTurn(record, reply_text)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001, S110 (the connection may be gone already: nothing to report)
            pass


def replay(url: str, utterances: Iterable, *, chunk_samples: int = guide.CHUNK_SAMPLES, realtime: bool = True,
           send_marker: bool = True, reply_timeout_s: float = 10.0) -> list[tuple[object, ReplayedTurn]]:
    """Each utterance once, in order, on one connection (reconnecting after a dropped one)."""
    from audio_corpus import check_reply

    results = []
    client = None
    try:
        for utterance in utterances:
            if client is None:
                client = BlockingVoiceClient(url, reply_timeout_s=reply_timeout_s)
            turn = client.say(utterance.frames(chunk_samples), utterance_id=utterance.id,
                              expected_intent=utterance.expected_intent,
                              speech_end_frame=utterance.speech_end_frame(chunk_samples),
                              realtime=realtime, send_marker=send_marker)
            problem = check_reply(utterance, turn.record.intent or None, turn.reply_text) if turn.record.success else None
            if problem and turn.record.success:
                turn.record.success, turn.record.failure, turn.record.failure_detail = False, "wrong_reply", problem
            results.append((utterance, turn))
            if client.session.state is protocol.ClientState.CLOSED:
                client = None
    finally:
        if client is not None:
            client.close()
    return results


def _format_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    from audio_corpus import load_corpus

    parser = argparse.ArgumentParser(prog="python -m voiceharness.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:7090/ws/audio", help="the gateway's WebSocket URL")
    parser.add_argument("--select", default="kind:clean,kind:unknown",
                        help="corpus filter (ids, intents, kind:clean|noisy|unknown); default clean + unknown")
    parser.add_argument("--fast", action="store_true", help="send as fast as possible instead of real time")
    parser.add_argument("--no-end-marker", action="store_true", help="end utterances on silence only")
    args = parser.parse_args(argv)
    try:
        corpus = load_corpus(select=args.select)
        results = replay(args.url, corpus, realtime=not args.fast, send_marker=not args.no_end_marker)
    except HarnessError as error:
        print(f"replay: error: {error}", file=sys.stderr)
        return 2
    width = max(len(u.id) for u, _ in results)
    print(f"{'utterance':<{width}}  {'expected':<14}  {'recognised':<14}  {'roundtrip':>9}  transcript")
    ok = 0
    for utterance, turn in results:
        record = turn.record
        ok += record.success
        mark = "" if record.success else f"   <- {record.failure}: {record.failure_detail}"
        print(f"{utterance.id:<{width}}  {utterance.expected_intent:<14}  {record.intent or '-':<14}  "
              f"{_format_ms(record.roundtrip_ms):>7}ms  {record.transcript!r}{mark}")
    print(f"{ok}/{len(results)} utterances came back as expected "
          "(roundtrip: end of speech -> first reply audio frame)")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
