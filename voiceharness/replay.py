"""Replay corpus utterances through a gateway once, on one blocking connection, and say
what came back: expected intent, recognised intent (and where it came from), transcript and
roundtrip.

This is the one-voice check a person runs before a load test (``make demo`` runs it first).
Each turn runs through the same driver as the load test (:func:`voiceharness.turn.run_turn`),
here over :class:`voiceharness.connection.BlockingTransport`: the harness's WebSocket on a plain
blocking socket, reading what the gateway sends while the audio streams (a gateway that ends
utterances on silence answers during the trailing silence). A reply without metadata is judged
by ear in this process (:mod:`voiceharness.listener`).

    python -m voiceharness.replay --url ws://127.0.0.1:7090/ws/audio [--select kind:clean] [--dialect smartjarvis]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from voiceharness import diagnoses, dialects, guide, protocol
from voiceharness.connection import BlockingTransport, ConnectOptions
from voiceharness.errors import ConnectionFailed, HarnessError
from voiceharness.judge import Expectation
from voiceharness.turn import StreamPlan, Turn, run_turn
from voiceharness.turns import TurnContext


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
        for index, utterance in enumerate(utterances):
            if transport is None:
                session = protocol.ClientSession(reply_timeout_s=options.reply_timeout_s)
                try:
                    transport = BlockingTransport(url, session, ConnectOptions(header_as_binary=options.header_as_binary))
                except ConnectionFailed as failure:
                    raise ConnectionFailed(diagnoses.explain(failure.diagnosis, str(failure)), failure.diagnosis,
                                           retryable=failure.retryable, elapsed_ms=failure.elapsed_ms) from None
            plan = StreamPlan(
                frames=utterance.frames(options.chunk_samples),
                speech_end_frame=utterance.speech_end_frame(options.chunk_samples),
                chunk_samples=options.chunk_samples,
                pace="realtime" if options.realtime else "fast",
                min_silence_frames=math.ceil(options.trailing_silence_ms / 1000 / frame_s),
            )
            expectation = Expectation(intent=utterance.expected_intent, reply_check=utterance.reply_check,
                                      request_text=utterance.text)
            context = TurnContext(timestamp=time.time(), connection_id=session.header.session_id, turn_index=index,
                                  scenario="replay", utterance_id=utterance.id, request_name=utterance.id,
                                  expected_intent=utterance.expected_intent, speech_ms=utterance.duration_ms,
                                  pace=plan.pace)
            turn = run_turn(transport, plan, expectation, context, what=utterance, send_marker=options.send_marker,
                            open_mic=options.mic_during_reply == "open", listen=listen,
                            keep_reply_audio=listen is not None, cross_check=cross_check)
            results.append((utterance, turn))
            if transport.session.closed:
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
