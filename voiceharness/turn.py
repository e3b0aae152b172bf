"""One turn, from its first audio frame to its record: what the microphone sends, what the turn
measured, and the one driver every client runs it with.

The Locust client (:mod:`voiceharness.locust.client`), the one-voice replay
(:mod:`voiceharness.replay`) and mic_probe's acoustic turn all run a turn through
:func:`run_turn`::

    begin ─ stream the utterance (speech, then trailing silence while the microphone wants to)
    ─ close the mic (and send the end marker) ─ wait for the reply to be over ─ hear the reply
    audio if it must be judged by ear ─ judge ─ the record, built once

Three pieces, each once:

* :class:`Microphone` — what the microphone sends after the speech: the plan's trailing silence,
  and with an open microphone more silence until the reply has played. Every transport (the
  Locust pacer, the blocking one-voice transport) asks it, and only it.
* :class:`TurnMeter` — folds the session's events (:mod:`voiceharness.protocol`) into the
  turn's timings as they are delivered: the reply audio decoded and placed on a playback
  timeline (:class:`ReplyRecording`), the first audible sample, the ping, the split of the
  roundtrip into the client's tail and the gateway's response.
* :func:`run_turn` — the driver; what differs between clients is only how bytes move, behind a
  small :class:`Transport`. The verdict comes from :mod:`voiceharness.judge`; the record
  (:class:`voiceharness.turns.TurnRecord`) is built once, at the end, and not changed after.

Every started turn ends in exactly one :class:`Turn`: a success or a classified failure. An
I/O error while sending ends the connection (``recording_stopped``); anything else raised
inside the turn is a harness bug: the turn ends as ``harness_error``, its record is left for the
caller to report (:attr:`TransportEvents.interrupted`), and the error goes on to the caller.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voiceharness import judge, protocol, uplink, vad
from voiceharness.judge import Expectation, Heard, Verdict
from voiceharness.protocol import Abandon, Mic, Reply
from voiceharness.turns import EMPTY_RECORD, TurnContext, TurnRecord, TurnTimings

PACES = ("realtime", "fast")
# A reply longer than this is not kept whole for judging (its figures are still counted).
MAX_KEPT_AUDIO_S = 60.0
NO_SAMPLES = np.zeros(0, dtype=np.int16)  # a reply without kept samples (read-only: shared by every turn)
NO_SAMPLES.flags.writeable = False
_MIN_WAV_BYTES = 44


# ----------------------------------------------------------------------------- the microphone


@dataclass(frozen=True)
class StreamPlan:
    """What the microphone sends for one turn.

    ``frames``: the utterance's audio frames (``chunk_samples`` each, the last maybe shorter);
    ``speech_end_frame``: index of the frame holding the last speech sample; then
    ``min_silence_frames`` of silence (fewer if the microphone stops wanting to send, as a
    ``closed`` microphone does once the reply plays), and, with an open microphone, more
    silence for as long as the reply plays. ``key`` identifies the frames for caches of
    pre-framed bytes (the utterance, shared by every user saying it).
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
    # a shaped link's (voiceharness.network) largest backlog while the turn streamed, as ms of audio
    uplink_backlog_max_ms: float = math.nan


class Microphone:
    """Whether the microphone still sends, frame by frame after the speech: the rule, once.

    ``open_mic`` (``--mic-during-reply open``, the browser tester's microphone, open until Stop):
    silence goes on after the trailing silence until the reply is over and its audio has played.
    A closed microphone stops sending once reply audio has arrived (or at the end of the plan's
    trailing silence, whichever is first). Asking applies the session's clock first (the gap or
    the deadline may end the reply), its events going to ``deliver``.

    When the stream is over the microphone is closed, once (:meth:`close`), after the end marker
    (``end_marker``, None when the turn sends none) was handed to the socket: by :func:`run_turn`,
    or — with ``close_at_stream_end``, which run_turn sets — by a transport that can do it where
    the stream ended without blocking (the Locust pacer, which then need not wake the turn's
    greenlet until its reply is over).
    """

    __slots__ = ("close_at_stream_end", "closed", "deliver", "end_marker", "meter", "open_mic", "session",
                 "stream_report", "uplink_backlog_ms")

    def __init__(self, session: protocol.ClientSession, meter: TurnMeter, deliver: Callable[[Sequence[object]], None],
                 *, open_mic: bool, end_marker: str | None = None, close_at_stream_end: bool = False) -> None:
        self.session = session
        self.meter = meter
        self.deliver = deliver
        self.open_mic = open_mic
        self.end_marker = end_marker
        self.close_at_stream_end = close_at_stream_end
        self.closed = False
        self.uplink_backlog_ms = math.nan  # audio unsent in the kernel when the last frame was handed over
        # What the stream sent, when a transport closed the microphone: the turn's record has it even
        # if the turn's greenlet is stopped before the transport could return it.
        self.stream_report: StreamReport | None = None

    def close(self, now: float, uplink_backlog_ms: float, stream_report: StreamReport | None = None) -> None:
        """The stream's last frame (and the end marker, if the turn sends one) is in the socket:
        the session learns it (a reply that came during the trailing silence may end the turn here)."""
        self.closed = True
        self.uplink_backlog_ms = uplink_backlog_ms
        self.stream_report = stream_report
        self.deliver(self.session.close_mic(now))

    def wants_audio(self, now: float) -> bool:
        """Should a frame go out now (past the speech)?"""
        session = self.session
        events = session.poll(now)
        if events:
            self.deliver(events)
        reply = session.reply
        if session.mic is Mic.OFF or reply is Reply.IDLE:
            return False
        if session.mic is Mic.SPEAKING or reply is Reply.AWAITING:
            return True
        if reply is Reply.RECEIVING:
            return self.open_mic or self.meter.audio.samples == 0
        # The reply is over: an open microphone goes on until its audio has played.
        return self.open_mic and session.reply_ended_by != "deadline" and now < self.meter.audio.played_until

    def frames(self, plan: StreamPlan, frames: Sequence[bytes | memoryview], silence: bytes | memoryview,
               clock: Callable[[], float]) -> Iterator[tuple[int, bytes | memoryview]]:
        """The frames one turn sends, ``(index, frame)``: ``frames`` (the utterance and its minimum
        trailing silence), then — with an open microphone — ``silence`` while it wants to send."""
        count = len(frames)
        index = 0
        while True:
            if index > plan.speech_end_frame and (not self.wants_audio(clock())
                                                  or (index >= count and not self.open_mic)):
                return
            yield index, frames[index] if index < count else silence
            index += 1


# ----------------------------------------------------------------------------- the meter


class ReplyRecording:
    """The audio of one reply as it arrives: decoded, on a playback timeline, kept if asked.

    Figures the metrics need: bytes and duration of the audio itself (a WAV header is not
    audio), when the first sample a listener would hear arrives on a playback timeline that
    starts with the first audio (``audible_at``: a TTS's leading silence counts as waiting), and
    how often that playback would have run dry (``playback_stalls``). WAV files are decoded with
    soundfile, at any sample rate and width, as their bytes arrive; ``keep`` keeps the samples
    (up to :data:`MAX_KEPT_AUDIO_S`) for the judge or for saving.
    """

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.messages = 0  # binary audio messages received
        self.audio_bytes = 0  # bytes of audio (PCM16 samples), headers excluded
        self.samples = 0
        self.sample_rate_hz = 0
        self.first_at = math.nan
        self.last_at = math.nan
        self.audible_at = math.nan  # when the first audible sample would play
        self.playback_stalls = 0
        self.containers: list[str] = []  # "wav"/"pcm" in order of first appearance
        self.max_abs_sample = 0
        self.not_wav_bytes = 0  # binary bytes that were to be WAV and were not
        self._play_until = math.nan  # when the audio received so far would have finished playing
        self._wav = bytearray()  # the WAV file arriving
        self._wav_decoded = 0  # its samples already counted
        self._last_message_at = math.nan
        self._kept: list[np.ndarray] = []
        self._kept_samples = 0

    def add(self, event: protocol.ReplyAudio) -> None:
        """One piece of reply audio arrived (a message, or a piece of one at a WAV file's edge)."""
        container = event.container
        if container not in self.containers:
            self.containers.append(container)
        if event.at != self._last_message_at:  # the pieces of one message arrive together
            self.messages += 1
            self._last_message_at = event.at
        if container == "pcm":
            data = event.data
            count = len(data) // 2
            if not count:
                return
            if self._scanned():
                self._timeline(count, event.pcm_sample_rate_hz, event.at)
            else:
                self._arrived(np.frombuffer(data[: 2 * count], dtype="<i2"), event.pcm_sample_rate_hz, event.at)
            return
        if event.new_file:
            self._wav = bytearray()
            self._wav_decoded = 0
        self._wav += event.data
        if not event.is_wav:
            self.not_wav_bytes += len(self._wav)
            self._wav = bytearray()
            return
        decoded = _decode_wav(self._wav)
        if decoded is not None:
            samples, rate = decoded
            if len(samples) > self._wav_decoded:
                new = samples[self._wav_decoded :]
                self._wav_decoded = len(samples)
                self._arrived(new, rate, event.at)

    def _scanned(self) -> bool:
        """Nothing more to learn from the samples themselves: the first audible one is placed, the
        reply is known not to be silence, and they are not kept. From then on a message only counts."""
        return not self.keep and self.max_abs_sample > vad.DIGITAL_SILENCE_PEAK and self.audible_at == self.audible_at

    def _timeline(self, count: int, rate: int, now: float) -> float:
        """Place ``count`` samples that arrived at ``now`` on the playback timeline; returns when they start playing."""
        if self.samples == 0:
            self.first_at = now
            self._play_until = now
        elif now > self._play_until:
            self.playback_stalls += 1  # the audio received so far would have finished playing
        self.last_at = now
        self.sample_rate_hz = rate
        start_play = max(self._play_until, now)
        self._play_until = start_play + count / rate
        self.samples += count
        self.audio_bytes += 2 * count
        return start_play

    def _arrived(self, samples: np.ndarray, rate: int, now: float) -> None:
        count = len(samples)
        if not count:
            return
        start_play = self._timeline(count, rate, now)
        # One pass each for the loudest sample (no int16 overflow of abs(-32768)), and the audible
        # search only while nothing was audible and only if anything here could be (per message, at
        # thousands of replies a second, numpy's per-call overhead is the cost).
        peak = max(int(samples.max()), -int(samples.min()))
        self.max_abs_sample = max(self.max_abs_sample, peak)
        if self.audible_at != self.audible_at and peak > vad.AUDIBLE_PEAK_MIN:  # NaN: not yet audible
            index = vad.first_audible_sample(samples, rate)
            if index is not None:
                self.audible_at = start_play + index / rate
        if self.keep and self._kept_samples < MAX_KEPT_AUDIO_S * rate:
            self._kept.append(samples if samples.base is None else samples.copy())
            self._kept_samples += count

    @property
    def played_until(self) -> float:
        """When the audio received so far will have finished playing (NaN before any arrived)."""
        return self._play_until

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000.0 / self.sample_rate_hz if self.sample_rate_hz else math.nan

    @property
    def silent(self) -> bool:
        """The reply holds audio, all of it digital silence."""
        return self.samples > 0 and self.max_abs_sample <= vad.DIGITAL_SILENCE_PEAK

    def kept_samples(self) -> np.ndarray:
        """The samples kept so far (empty unless ``keep``), at :attr:`sample_rate_hz`."""
        if not self._kept:
            return NO_SAMPLES
        if len(self._kept) > 1:
            self._kept = [np.concatenate(self._kept)]
        return self._kept[0]


def _decode_wav(data: bytearray) -> tuple[np.ndarray, int] | None:
    """Mono int16 samples of what has arrived of a WAV file (a data chunk cut short decodes what it
    has) and its rate, or None while the header itself is incomplete."""
    if len(data) < _MIN_WAV_BYTES:
        return None
    import soundfile

    try:
        # Read as float: libsndfile hands a float WAV to an integer reader unscaled (all zeros).
        samples, rate = soundfile.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError):  # soundfile's LibsndfileError is a RuntimeError
        return None
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16), int(rate)


class TurnMeter:
    """Folds one turn's session events into its timings, as they are delivered.

    ``sent_at()`` is when the transport last handed a frame (or the end marker) to the socket:
    read when the first reply audio arrives, it splits the roundtrip into the client's tail
    (end of speech → the utterance's last frame or marker sent) and the gateway's response (→
    first reply audio).
    """

    def __init__(self, *, keep_reply_audio: bool | None = False, sent_at: Callable[[], float] | None = None,
                 ping_ms: float = math.nan) -> None:
        # None: keep the reply's samples when its audio comes without metadata before it (they may
        # have to be heard); True or False: always, never.
        self.keep_reply_audio = keep_reply_audio
        self.audio = ReplyRecording(keep=bool(keep_reply_audio))
        self.sent_at = sent_at
        self.metadata: protocol.Metadata | None = None
        self.metadata_at = math.nan
        self.ping_ms = ping_ms  # the connection's latest, replaced by any measured during the turn
        self.sent_before_reply_at = math.nan
        self.ended: protocol.TurnEnded | None = None
        self.faults = 0

    def fold(self, event: object) -> None:
        kind = type(event)
        if kind is protocol.ReplyAudio:
            first = self.audio.samples == 0
            if first and self.keep_reply_audio is None and not self.audio.messages:
                self.audio.keep = self.metadata is None
            self.audio.add(event)
            if first and self.audio.samples and self.sent_at is not None:
                self.sent_before_reply_at = self.sent_at()
        elif kind is protocol.ReplyMetadata:
            if event.first:
                self.metadata, self.metadata_at = event.metadata, event.at
        elif kind is protocol.PingMeasured:
            self.ping_ms = event.ping_ms
        elif kind is protocol.GatewayFault:
            self.faults += 1
        elif kind is protocol.TurnEnded:
            self.ended = event

    def timings(self, session: protocol.ClientSession, report: StreamReport | None,
                uplink_backlog_ms: float = math.nan) -> TurnTimings:
        """The turn's figures (once it ended), ms from the end of speech."""
        ended, audio = self.ended, self.audio
        assert ended is not None, "timings() before the turn ended"
        speech_end = session.end_of_speech_at

        def since_speech(at: float) -> float:
            return (at - speech_end) * 1000.0

        sent = self.sent_before_reply_at
        if math.isnan(sent) and self.sent_at is not None:
            sent = self.sent_at()  # no reply audio: the client's tail runs to its last frame or marker
        client_tail_ms = since_speech(sent) if not math.isnan(sent) and sent >= speech_end else math.nan
        formats = (["metadata"] if self.metadata is not None else []) + audio.containers
        reply_complete = (ended.ended_by in ("reply_end", "wav") or (ended.ended_by == "gap" and audio.samples > 0)) \
            and not ended.wav_truncated
        return TurnTimings(
            roundtrip_ms=since_speech(audio.first_at) if audio.samples else math.nan,
            audible_ms=since_speech(audio.audible_at) if audio.samples else math.nan,
            intent_ms=since_speech(self.metadata_at) if self.metadata is not None else math.nan,
            reply_ms=since_speech(audio.last_at) if audio.samples else math.nan,
            turn_ms=since_speech(ended.at),
            client_tail_ms=client_tail_ms,
            gateway_response_ms=(audio.first_at - sent) * 1000.0 if audio.samples and not math.isnan(sent) else math.nan,
            ping_ms=self.ping_ms,
            chunks_sent=report.chunks_sent if report is not None else 0,
            chunks_received=audio.messages,
            reply_audio_bytes=audio.audio_bytes,
            reply_complete=reply_complete,
            send_lateness_max_ms=report.send_lateness_max_ms if report is not None else math.nan,
            uplink_backlog_ms=uplink_backlog_ms,
            uplink_backlog_max_ms=report.uplink_backlog_max_ms if report is not None else math.nan,
            reply_format="+".join(formats),
            reply_audio_ms=audio.duration_ms if audio.samples else math.nan,
            reply_sample_rate_hz=audio.sample_rate_hz if audio.samples else 0,
            playback_stalls=audio.playback_stalls if audio.samples and ("pcm" in audio.containers
                                                                         or audio.messages > 1) else None,
            close_code=ended.close_code,
        )


# ----------------------------------------------------------------------------- the driver


class Transport(Protocol):
    """How a client moves one connection's bytes; see :class:`TransportEvents` for the event plumbing."""

    session: protocol.ClientSession
    events: TransportEvents

    def stream(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        """Send the plan's frames (telling the session and the meter at the speech's last frame)
        until the plan and the microphone say stop. Raises ``ConnectionError``/``OSError`` when a
        send fails. With ``microphone.close_at_stream_end`` a transport may also send the end
        marker and close the microphone (:meth:`Microphone.close`) where the stream ended, if it
        can without blocking, and return only once the turn is over or the session's next
        deadline has come; otherwise :func:`run_turn` does both."""

    def send_text(self, text: str) -> None: ...

    def last_sent_at(self) -> float:
        """When a frame (or a text message) was last handed to the socket (monotonic s; NaN before any)."""

    def unsent_bytes(self) -> int | None: ...

    def wait(self, until: float) -> None:
        """Block (cooperatively) until ``until`` (monotonic s) or until the session produced events."""

    def abort(self, reason: str) -> None:
        """End the connection now, from our side, because sending failed; the session learns it is lost."""


@dataclass
class TransportEvents:
    """Where a transport puts the session's events: the turn's meter folds them as they come (the
    turn's end with them), ``on_event`` sees every one (a ping for Locust's events, say), and
    ``wake`` wakes a turn that waits for them (a transport whose reader runs apart from the turn)."""

    on_event: Callable[[object], None] | None = None
    wake: Callable[[], None] | None = None
    meter: TurnMeter | None = None
    interrupted: Turn | None = None  # a turn cut short by an error, for the caller to report

    def deliver(self, events: Sequence[object]) -> None:
        meter = self.meter
        on_event = self.on_event
        for event in events:
            if meter is not None:
                meter.fold(event)
            if on_event is not None:
                on_event(event)
        if events and self.wake is not None:
            self.wake()


Listen = Callable[[np.ndarray, int, str], "Heard | None"]


@dataclass
class Turn:
    """One finished turn: its record (every figure and the verdict) and what was heard.

    Locust's ``catch_response`` idiom works on it: ``turn.failure("why")`` fails it
    (``check_failed``), ``turn.success()`` passes it — each replaces the record with a new one
    (a record is never changed once built).
    """

    record: TurnRecord
    what: Any = None  # what was said (an Utterance)
    context: TurnContext = field(default_factory=TurnContext)
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
        self.record = self.record.with_verdict(judge.check_failed(message), redact=self.context.redact)

    def success(self) -> None:
        """Mark the turn successful whatever was found (Locust's ``response.success()``)."""
        self.record = self.record.with_verdict(judge.passed_by_scenario())

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
    context: TurnContext,
    *,
    send_marker: bool = True,
    open_mic: bool = False,
    listen: Listen | None = None,
    cross_check: bool = False,
    metadata_only: bool = False,
    keep_reply_audio: bool | None = None,
    what: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Turn:
    """Run one turn on ``transport``'s open connection and return it, judged, its record built.

    ``listen(samples, sample_rate_hz, request_text)`` hears a reply's audio (the listener,
    maybe in another process); it returns None when it did not (a turn outside the judge's
    sample, or a judge that fell behind). ``context`` says who said what (the record's identity).
    ``keep_reply_audio``: keep the reply's samples (for the listener, or to save them): True, False,
    or None to keep them when the reply's audio comes without metadata (it may have to be heard).
    """
    session = transport.session
    events = transport.events
    if cross_check and listen is not None:
        keep_reply_audio = True  # replies with metadata are heard too
    meter = TurnMeter(keep_reply_audio=keep_reply_audio if listen is not None or keep_reply_audio else False,
                      sent_at=transport.last_sent_at, ping_ms=session.last_ping_ms)
    events.meter = meter
    events.interrupted = None
    microphone = Microphone(session, meter, events.deliver, open_mic=open_mic,
                            end_marker=protocol.end_marker_message() if send_marker else None,
                            close_at_stream_end=True)
    session.begin_turn(clock())
    report: StreamReport | None = None
    backlog_ms = math.nan
    try:
        try:
            report = transport.stream(plan, microphone)
            if microphone.closed:  # the transport closed it where the stream ended (the Locust pacer)
                backlog_ms = microphone.uplink_backlog_ms
            # The connection may have dropped while the microphone streamed: then the turn is
            # already over (recording_stopped), and there is no mic to close nor marker to send.
            elif session.in_turn:
                backlog_ms = uplink.backlog_ms(transport.unsent_bytes(), plan.chunk_samples)
                if microphone.end_marker is not None and not session.closed:
                    transport.send_text(microphone.end_marker)
                microphone.close(clock(), backlog_ms)
        except (ConnectionError, OSError) as error:  # the socket failed under us while streaming
            transport.abort(f"send failed: {error or type(error).__name__}")
        _await_end(transport, meter, clock)
    except BaseException as error:
        # A bug in the harness (or Ctrl-C / the end of the run): the turn still ends in exactly
        # one record, left in ``transport.events.interrupted`` for the caller to report.
        cause = Abandon.HARNESS_ERROR if isinstance(error, Exception) else Abandon.RUN_STOPPED
        detail = f"{type(error).__name__}: {error}" if isinstance(error, Exception) else "the run ended during the turn"
        if report is None and microphone.closed:  # stopped while the transport held it after the stream
            report, backlog_ms = microphone.stream_report, microphone.uplink_backlog_ms
        events.deliver(session.abandon_turn(clock(), cause, detail))
        if meter.ended is not None:
            events.interrupted = _finish(session, meter, report, backlog_ms, expectation, context, what=what,
                                         metadata_only=metadata_only)
        events.meter = None
        raise
    try:
        heard: Heard | None = None
        if listen is not None and judge.needs_listening(meter.audio, meter.metadata, meter.ended,
                                                        cross_check=cross_check, metadata_only=metadata_only):
            heard = listen(meter.audio.kept_samples(), meter.audio.sample_rate_hz, expectation.request_text)
        return _finish(session, meter, report, backlog_ms, expectation, context, what=what, heard=heard,
                       metadata_only=metadata_only)
    except BaseException as error:
        # The listener or the scenario's own check failed (a bug: the harness could not judge the
        # turn), or the run ended while the reply was heard: the turn's timings stand, with that verdict.
        events.interrupted = _finish(session, meter, report, backlog_ms, expectation, context, what=what,
                                     metadata_only=metadata_only, verdict=judge.interrupted_while_judging(error))
        raise
    finally:
        # The record is built: the meter (the reply's recording, its events) is not kept on the
        # connection until the next turn — a few KB per user between turns.
        events.meter = None


def _finish(session: protocol.ClientSession, meter: TurnMeter, report: StreamReport | None, backlog_ms: float,
            expectation: Expectation, context: TurnContext, *, what: Any, heard: Heard | None = None,
            metadata_only: bool = False, verdict: Verdict | None = None) -> Turn:
    """The turn's verdict (unless given) and its record, built once."""
    ended, audio = meter.ended, meter.audio
    assert ended is not None
    turn = Turn(EMPTY_RECORD, what=what, context=context, ended_by=ended.ended_by,
                reply_samples=audio.kept_samples(), reply_sample_rate_hz=audio.sample_rate_hz)
    if verdict is None:
        verdict = judge.judge_turn(ended, audio, meter.metadata, expectation, heard=heard,
                                   reply_timeout_ms=session.reply_timeout_s * 1000, metadata_only=metadata_only)
    timings = meter.timings(session, report, backlog_ms)
    record = TurnRecord.build(context, timings, verdict)
    if verdict.success and expectation.check is not None:
        # The scenario's own check last, on the finished turn.
        turn.record = record
        record = record.with_verdict(judge.scenario_check(expectation.check, turn), redact=context.redact)
    turn.record = record
    return turn


def _await_end(transport: Transport, meter: TurnMeter, clock: Callable[[], float]) -> None:
    session = transport.session
    events = transport.events
    while meter.ended is None:
        deadline = session.next_deadline()
        now = clock()
        if deadline is not None and now >= deadline:
            events.deliver(session.poll(now))
            continue
        transport.wait(now + 0.05 if deadline is None else deadline + 0.0005)
        events.deliver(session.poll(clock()))


def interrupted_turn(context: TurnContext, verdict: Verdict, what: Any = None) -> Turn:
    """A turn that never reached the gateway (it could not connect, or the run ended first): its
    record from its context and the verdict, with no timings."""
    return Turn(TurnRecord.build(context, TurnTimings(), verdict), what=what, context=context)


__all__ = [
    "PACES",
    "Microphone",
    "ReplyRecording",
    "StreamPlan",
    "StreamReport",
    "Transport",
    "TransportEvents",
    "Turn",
    "TurnMeter",
    "interrupted_turn",
    "run_turn",
]
