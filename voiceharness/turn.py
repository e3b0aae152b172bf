"""One turn, from its first audio frame to its judged record: the one driver every client uses.

The Locust client (:mod:`voiceharness.locust.client`), the one-voice replay
(:mod:`voiceharness.replay`) and the benchmarks all run a turn through :func:`run_turn`::

    begin_turn ─ stream the utterance (speech, then trailing silence while the session wants
    audio) ─ close the mic (and send the end marker) ─ wait for the reply to be over ─ hear
    the reply audio if it must be judged by ear ─ judge ─ a :class:`Turn`

What differs between clients is only how bytes move, behind a small :class:`Transport`: a
gevent connection with a process-wide pacer under Locust, a blocking socket in the replay.
The protocol rules stay in :class:`~voiceharness.protocol.ClientSession`; the verdict comes
from :mod:`voiceharness.judge`.

Every started turn ends in exactly one :class:`Turn`: a success or a classified failure. An
I/O error while sending ends the connection (``recording_stopped``); anything else raised
inside the turn is a harness bug: the turn is abandoned as ``harness_error`` and the error
goes on to the caller, which logs it once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voiceharness import protocol, uplink
from voiceharness.judge import Expectation, Heard, judge, needs_listening
from voiceharness.turns import TurnRecord

PACES = ("realtime", "fast")


@dataclass(frozen=True)
class StreamPlan:
    """What the microphone sends for one turn.

    ``frames``: the utterance's audio frames (``chunk_samples`` each, the last maybe shorter);
    ``speech_end_frame``: index of the frame holding the last speech sample; then
    ``min_silence_frames`` of silence (fewer if the session stops wanting audio, as in
    ``closed`` microphone mode once the reply plays), and, with an open microphone, more
    silence for as long as the session wants it. ``key`` identifies the frames for caches
    of pre-framed bytes (the utterance, shared by every user saying it).
    """

    frames: Sequence[bytes | memoryview]
    speech_end_frame: int
    chunk_samples: int
    pace: str = "realtime"
    min_silence_frames: int = 0
    key: object = None

    @property
    def frame_s(self) -> float:
        return self.chunk_samples / 16000


@dataclass(frozen=True)
class StreamReport:
    chunks_sent: int
    send_lateness_max_ms: float = math.nan


def microphone(plan: StreamPlan, frames: Sequence[bytes | memoryview], silence: bytes | memoryview,
               session: protocol.ClientSession, deliver: Callable[[Sequence[object]], None],
               clock: Callable[[], float]) -> Iterator[tuple[int, bytes | memoryview]]:
    """The frames one turn's microphone sends, ``(index, frame)``: the plan's ``frames`` (the
    utterance and its minimum trailing silence), then — with an open microphone — ``silence``
    for as long as the session wants it. Past the speech, before each frame, the session's
    clock is applied (``poll``, its events to ``deliver``) and it says whether the microphone
    still sends. The pacer (:mod:`voiceharness.locust.pacer`) applies the same rule inline.
    """
    count = len(frames)
    index = 0
    while True:
        if index > plan.speech_end_frame:
            now = clock()
            deliver(session.poll(now))
            if not session.wants_audio(now) or (index >= count and not session.mic_stays_open):
                return
        yield index, frames[index] if index < count else silence
        index += 1


class Transport(Protocol):
    """How a client moves one connection's bytes; see :class:`TransportEvents` for the event plumbing."""

    session: protocol.ClientSession
    events: TransportEvents

    def stream(self, plan: StreamPlan) -> StreamReport:
        """Send the plan's frames (calling ``session.speech_ended`` at the speech's last frame)
        until the plan and the session say stop. Raises ``ConnectionError``/``OSError`` when a
        send fails."""

    def send_text(self, text: str) -> None: ...

    def unsent_bytes(self) -> int | None: ...

    def wait(self, until: float) -> None:
        """Block (cooperatively) until ``until`` (monotonic s) or until the session produced events."""

    def abort(self, reason: str) -> None:
        """End the connection now, from our side, because sending failed; the session learns it is lost."""


@dataclass
class TransportEvents:
    """Where a transport puts the session's events: the turn's end for the driver, the rest for hooks."""

    on_event: Callable[[object], None] | None = None
    ended: protocol.TurnEnded | None = None

    def deliver(self, events: Sequence[object]) -> None:
        for event in events:
            if isinstance(event, protocol.TurnEnded):
                self.ended = event
            if self.on_event is not None:
                self.on_event(event)

    def take_ended(self) -> protocol.TurnEnded | None:
        ended, self.ended = self.ended, None
        return ended


Listen = Callable[[np.ndarray, int, str], "Heard | None"]


@dataclass
class Turn:
    """One finished turn: its record (every figure and the verdict) and what was heard.

    Locust's ``catch_response`` idiom works on it: ``turn.failure("why")`` marks it failed
    (``check_failed``), ``turn.success()`` marks it successful.
    """

    record: TurnRecord
    what: Any = None  # what was said (an Utterance)
    ended_by: str = ""
    reply_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16), repr=False)
    reply_sample_rate_hz: int = 0

    # -- the verdict
    @property
    def ok(self) -> bool:
        return self.record.success

    @property
    def diagnosis(self) -> str:
        """The failure's diagnosis code (voiceharness.diagnoses), "" on success."""
        return self.record.failure

    @property
    def detail(self) -> str:
        return self.record.failure_detail

    def failure(self, message: object) -> None:
        """Mark the turn failed by the scenario's own check."""
        self.record.success = False
        self.record.failure = "check_failed"
        self.record.failure_detail = str(message)

    def success(self) -> None:
        """Mark the turn successful whatever was found (Locust's ``response.success()``)."""
        self.record.success = True
        self.record.failure = self.record.failure_detail = ""

    # -- what came back
    @property
    def intent(self) -> str:
        return self.record.intent

    @property
    def intent_source(self) -> str:
        return self.record.intent_source

    @property
    def transcript(self) -> str:
        """What the gateway says it recognised (its metadata), "" when it says nothing."""
        return self.record.transcript

    @property
    def reply_text(self) -> str:
        return self.record.reply_text

    @property
    def reply_transcript(self) -> str:
        """What the listener heard in the reply audio, "" when it did not listen."""
        return self.record.reply_transcript

    # -- timings, ms from the end of speech
    @property
    def roundtrip_ms(self) -> float:
        return self.record.roundtrip_ms

    @property
    def audible_ms(self) -> float:
        return self.record.audible_ms

    @property
    def intent_ms(self) -> float:
        return self.record.intent_ms

    @property
    def reply_ms(self) -> float:
        return self.record.reply_ms

    @property
    def reply_audio_ms(self) -> float:
        return self.record.reply_audio_ms


def run_turn(
    transport: Transport,
    plan: StreamPlan,
    expectation: Expectation,
    *,
    utterance_id: str = "",
    what: Any = None,
    speech_ms: float = math.nan,
    send_marker: bool = True,
    listen: Listen | None = None,
    cross_check: bool = False,
    metadata_only: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Turn:
    """Run one turn on ``transport``'s open connection and return it, judged.

    ``listen(samples, sample_rate_hz, request_text)`` hears a reply's audio (the listener,
    maybe in another process); it returns None when it did not (a turn outside the judge's
    sample, or a judge that fell behind).
    """
    session = transport.session
    events = transport.events
    events.take_ended()
    session.begin_turn(utterance_id=utterance_id, expected_intent=expectation.intent, now=clock(),
                       speech_ms=speech_ms)
    try:
        try:
            report = transport.stream(plan)
            # The connection may have dropped while the microphone streamed: then the turn is
            # already over (recording_stopped), and there is no mic to close nor marker to send.
            if session.in_turn:
                backlog_ms = uplink.backlog_ms(transport.unsent_bytes(), plan.chunk_samples)
                events.deliver(session.close_mic(clock(), chunks_sent=report.chunks_sent,
                                                 send_lateness_max_ms=report.send_lateness_max_ms,
                                                 uplink_backlog_ms=backlog_ms))
                if send_marker and session.state is not protocol.ClientState.CLOSED:
                    transport.send_text(protocol.end_marker_message())
        except (ConnectionError, OSError) as error:  # the socket failed under us while streaming
            transport.abort(f"send failed: {error or type(error).__name__}")
        ended = _await_end(transport, clock)
    except BaseException as error:
        # A bug in the harness (or Ctrl-C / the end of the run): the turn still ends in exactly
        # one record, left in ``transport.events`` for the caller to report.
        if session.in_turn:
            if isinstance(error, Exception):
                events.deliver(session.abandon_turn(clock(), "harness_error", f"{type(error).__name__}: {error}"))
            else:
                events.deliver(session.abandon_turn(clock(), "run_stopped", "the run ended during the turn"))
        ended = events.take_ended()
        if ended is not None:
            if not ended.record.failure:  # the reply was over before the interruption: judge what came
                ended.record.pace = plan.pace
                judge(ended.record, ended.audio, ended.metadata, expectation, ended_by=ended.ended_by,
                      reply_timeout_ms=session.reply_timeout_s * 1000, metadata_only=metadata_only)
            events.ended = ended
        raise
    record, audio = ended.record, ended.audio
    record.pace = plan.pace
    turn = Turn(record, what=what, ended_by=ended.ended_by, reply_samples=audio.kept_samples(),
                reply_sample_rate_hz=audio.sample_rate_hz)
    try:
        heard: Heard | None = None
        if listen is not None and needs_listening(audio, ended.metadata, cross_check=cross_check,
                                                  metadata_only=metadata_only) and not record.failure:
            heard = listen(turn.reply_samples, audio.sample_rate_hz, expectation.request_text)
        judge(record, audio, ended.metadata, expectation, heard=heard, ended_by=ended.ended_by,
              reply_timeout_ms=session.reply_timeout_s * 1000, metadata_only=metadata_only, subject=turn)
    except BaseException as error:
        record.success = False
        if isinstance(error, Exception):  # the listener or the scenario's own check failed: a bug
            record.failure, record.failure_detail = "harness_error", f"while judging: {type(error).__name__}: {error}"
        else:  # the run ended (or Ctrl-C) while the reply was heard: the turn's timings stand
            record.failure, record.failure_detail = "run_stopped", "the run ended while the reply was being judged"
        events.ended = ended  # the caller reports the turn, then the error
        raise
    return turn


def _await_end(transport: Transport, clock: Callable[[], float]) -> protocol.TurnEnded:
    session = transport.session
    events = transport.events
    while True:
        ended = events.take_ended()
        if ended is not None:
            return ended
        deadline = session.next_deadline()
        now = clock()
        if deadline is not None and now >= deadline:
            events.deliver(session.poll(now))
            continue
        transport.wait(now + 0.05 if deadline is None else deadline + 0.0005)
        events.deliver(session.poll(clock()))
