"""Replay corpus utterances through a gateway once, on one blocking connection, and say
what came back: expected intent, recognised intent (and where it came from), transcript and
roundtrip.

This is the one-voice check a person runs before a load test (``make demo`` runs it first).
Each turn runs through the same driver as the load test (:func:`voiceharness.turn.run_turn`),
here over :class:`BlockingTransport`: websocket-client on a plain blocking socket, reading
what the gateway sends while the audio streams (a gateway that ends utterances on silence
answers during the trailing silence). A reply without metadata is judged by ear in this
process (:mod:`voiceharness.listener`).

    python -m voiceharness.replay --url ws://127.0.0.1:7090/ws/audio [--select kind:clean] [--dialect smartjarvis]
"""

from __future__ import annotations

import argparse
import math
import select
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from voiceharness import diagnoses, dialects, framing, guide, protocol, uplink
from voiceharness.errors import ConnectionFailed, HarnessError
from voiceharness.judge import Expectation
from voiceharness.turn import StreamPlan, StreamReport, TransportEvents, Turn, microphone, run_turn


class BlockingTransport:
    """One WebSocket to a gateway on a blocking socket: the turn driver's transport for one voice."""

    def __init__(self, url: str, session: protocol.ClientSession, *, connect_timeout_s: float = 5.0,
                 auth_token: str | None = None, header_as_binary: bool = True) -> None:
        import websocket  # imported here so the protocol package imports without it

        self._websocket = websocket
        self.session = session
        self.events = TransportEvents()
        self.mask_key = framing.new_mask_key()
        headers = [f"Authorization: Bearer {auth_token}"] if auth_token else []
        self.ws = websocket.WebSocket()
        started = time.monotonic()
        try:
            self.ws.connect(url, header=headers, timeout=connect_timeout_s, suppress_origin=True)
        except websocket.WebSocketBadStatusException as error:
            code = diagnoses.classify_http_status(error.status_code)
            raise ConnectionFailed(diagnoses.explain(code, f"HTTP {error.status_code} from {url}"), code,
                                   elapsed_ms=(time.monotonic() - started) * 1000) from None
        except (OSError, websocket.WebSocketException, ValueError) as error:
            code = diagnoses.classify_connect_error(error)
            raise ConnectionFailed(diagnoses.explain(code, f"{url}: {error}"), code,
                                   elapsed_ms=(time.monotonic() - started) * 1000) from None
        self.connect_ms = (time.monotonic() - started) * 1000
        self.ws.settimeout(None)
        header = session.header_message(as_binary=header_as_binary)
        if isinstance(header, bytes):
            self.ws.send_binary(header)
        else:
            self.ws.send(header)
        session.frame_received(time.monotonic())

    # -- sending
    def stream(self, plan: StreamPlan) -> StreamReport:
        session = self.session
        silence = bytes(2 * plan.chunk_samples)
        frames = [*plan.frames, *([silence] * plan.min_silence_frames)]
        realtime = plan.pace != "fast"
        start = time.monotonic()
        late_max_s = 0.0
        sent = 0
        for index, frame in microphone(plan, frames, silence, session, self.events.deliver, time.monotonic):
            due = start + index * plan.frame_s
            if realtime or index >= len(frames):
                self._read_until(due)  # the gateway may answer while we speak
            self.ws.sock.sendall(framing.client_frame(bytes(frame), self.mask_key, framing.OPCODE_BINARY))
            now = time.monotonic()
            if realtime:
                late_max_s = max(late_max_s, now - due)
            if index == plan.speech_end_frame:
                session.speech_ended(now)
            sent += 1
        return StreamReport(sent, late_max_s * 1000 if realtime else math.nan)

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def unsent_bytes(self) -> int | None:
        return uplink.unsent_bytes(self.ws.sock) if self.ws.sock is not None else None

    # -- receiving
    def wait(self, until: float) -> None:
        self._read_until(until, stop_on_events=True)

    def _read_until(self, until: float, *, stop_on_events: bool = False) -> None:
        """Read what arrives until ``until`` (monotonic s), feeding the session."""
        websocket = self._websocket
        while self.ws.sock is not None:
            timeout = until - time.monotonic()
            if timeout <= 0:
                return
            readable, _, _ = select.select([self.ws.sock], [], [], timeout)
            if not readable:
                return
            try:
                opcode, frame = self.ws.recv_data_frame(True)
            except (OSError, websocket.WebSocketException) as error:
                self._lost(None, f"connection lost: {error or type(error).__name__}")
                return
            now = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                self._lost(code, "closed by the gateway")
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                events = self.session.receive(frame.data.decode("utf-8", "replace"), now)
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                events = self.session.receive(bytes(frame.data), now)
            else:
                self.session.frame_received(now)
                continue
            self.events.deliver(events)
            if stop_on_events and events:
                return

    def abort(self, reason: str) -> None:
        self._lost(None, reason)

    def _lost(self, code: int | None, reason: str) -> None:
        self.events.deliver(self.session.connection_lost(time.monotonic(), code, reason))
        self.close()

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (OSError, self._websocket.WebSocketException):
            pass  # already gone


@dataclass(frozen=True)
class ReplayOptions:
    """How one voice talks to the gateway (a dialect's choices, see :mod:`voiceharness.dialects`)."""

    chunk_samples: int = guide.CHUNK_SAMPLES
    realtime: bool = True
    send_marker: bool = True
    trailing_silence_ms: int = 0
    header_as_binary: bool = True
    mic_during_reply: str = "closed"
    reply_timeout_s: float = 10.0

    @classmethod
    def for_dialect(cls, name: str, **overrides) -> ReplayOptions:
        dialect = dialects.dialect(name)
        base = cls(send_marker=dialect.end_marker, trailing_silence_ms=dialect.trailing_silence_ms,
                   header_as_binary=dialect.header_as_binary, mic_during_reply=dialect.mic_during_reply)
        return cls(**{**base.__dict__, **overrides})


def replay(url: str, utterances: Iterable, *, options: ReplayOptions | None = None,
           listen: Callable | None = None, cross_check: bool = False) -> list[tuple[object, Turn]]:
    """Each utterance once, in order, on one connection (reconnecting after a dropped one).

    ``listen(samples, sample_rate_hz, request_text)`` hears replies that come without metadata,
    and, with ``cross_check``, those that come with it too (``voice-calibrate`` hears every reply).
    """
    options = options or ReplayOptions()
    results = []
    transport: BlockingTransport | None = None
    frame_s = options.chunk_samples / guide.SAMPLE_RATE_HZ
    try:
        for utterance in utterances:
            if transport is None:
                session = protocol.ClientSession(reply_timeout_s=options.reply_timeout_s,
                                                 mic_during_reply=options.mic_during_reply,
                                                 keep_reply_audio=listen is not None)
                transport = BlockingTransport(url, session, header_as_binary=options.header_as_binary)
            plan = StreamPlan(
                frames=utterance.frames(options.chunk_samples),
                speech_end_frame=utterance.speech_end_frame(options.chunk_samples),
                chunk_samples=options.chunk_samples,
                pace="realtime" if options.realtime else "fast",
                min_silence_frames=math.ceil(options.trailing_silence_ms / 1000 / frame_s),
            )
            expectation = Expectation(intent=utterance.expected_intent, reply_check=utterance.reply_check,
                                      request_text=utterance.text)
            turn = run_turn(transport, plan, expectation, utterance_id=utterance.id, what=utterance,
                            speech_ms=utterance.duration_ms, send_marker=options.send_marker, listen=listen,
                            cross_check=cross_check)
            results.append((utterance, turn))
            if transport.session.state is protocol.ClientState.CLOSED:
                transport = None
    finally:
        if transport is not None:
            transport.close()
    return results


def _format_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _listener(expectations: str) -> Callable:
    """Hear replies in this process (one voice needs no pool); the model loads on the first reply
    that comes without metadata."""
    listeners: list = []

    def listen(samples, rate_hz: int, request_text: str):
        if not listeners:
            from voiceharness.listener import ReplyListener, load_expectations

            listeners.append(ReplyListener(load_expectations(expectations)))
        return listeners[0].hear(samples, rate_hz, request_text=request_text)

    return listen


def main(argv: list[str] | None = None) -> int:
    from audio_corpus import load_corpus

    parser = argparse.ArgumentParser(prog="python -m voiceharness.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:7090/ws/audio", help="the gateway's WebSocket URL")
    parser.add_argument("--select", default="kind:clean,kind:unknown",
                        help="corpus filter (ids, intents, kind:clean|noisy|unknown); default clean + unknown")
    parser.add_argument("--dialect", choices=sorted(dialects.DIALECTS), default="reference",
                        help="the gateway's dialect (see voiceharness.dialects); default reference")
    parser.add_argument("--fast", action="store_true", help="send as fast as possible instead of real time")
    parser.add_argument("--end-marker", action=argparse.BooleanOptionalAction, default=None,
                        help="send the end marker, or end utterances on silence only (default: the dialect's)")
    parser.add_argument("--reply-expectations", default="",
                        help="how replies without metadata are judged: smartjarvis, reference or a JSON file "
                             "(default: the dialect's)")
    args = parser.parse_args(argv)
    try:
        dialect = dialects.dialect(args.dialect)
        overrides: dict = {"realtime": not args.fast}
        if args.end_marker is not None:
            overrides["send_marker"] = args.end_marker
            if not args.end_marker and dialect.end_marker:
                overrides["trailing_silence_ms"] = 1000
        options = ReplayOptions.for_dialect(args.dialect, **overrides)
        corpus = load_corpus(select=args.select)
        listen = _listener(args.reply_expectations or dialect.expectations)
        results = replay(args.url, corpus, options=options, listen=listen)
    except HarnessError as error:
        print(f"replay: error: {error}", file=sys.stderr)
        return 2
    width = max(len(u.id) for u, _ in results)
    print(f"{'utterance':<{width}}  {'expected':<14}  {'recognised':<14}  {'from':<8}  {'roundtrip':>9}  transcript")
    ok = 0
    for utterance, turn in results:
        record = turn.record
        ok += record.success
        mark = "" if record.success else f"   <- {record.failure}: {record.failure_detail}"
        heard = record.transcript or record.reply_transcript
        print(f"{utterance.id:<{width}}  {utterance.expected_intent:<14}  {record.intent or '-':<14}  "
              f"{record.intent_source or '-':<8}  {_format_ms(record.roundtrip_ms):>7}ms  {heard!r}{mark}")
    print(f"{ok}/{len(results)} utterances came back as expected "
          "(roundtrip: end of speech -> first reply audio; 'from': the intent came from the gateway's metadata "
          "or was heard in the reply audio)")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
