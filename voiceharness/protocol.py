"""The SmartJARVIS voice-gateway protocol as a sans-I/O state machine.

This module holds the rules of the protocol — the header, audio frames, the end marker, the
reply and the turn state — and no socket. The Locust client, the one-voice replay and the
reference gateway are thin I/O layers that move WebSocket messages between a connection and a
session object:

* :class:`ClientSession` (the harness side) is told what the I/O layer sent (``begin_turn``,
  ``speech_ended``, ``close_mic``) and fed with received messages and clock readings
  (``receive``, ``poll``, ``connection_lost``); it returns events (:class:`ReplyMetadata`,
  :class:`ReplyAudio`, :class:`ReplyEnded`, :class:`PingMeasured`, :class:`TurnEnded`...)
  carrying the timestamps the metrics need. What a reply message *is* (metadata, WAV, raw
  PCM) is read by :mod:`voiceharness.replies`; whether the turn did what was expected is
  judged by :mod:`voiceharness.judge`, not here.
* :class:`ServerSession` (the gateway side) is fed with received messages and returns
  :class:`HeaderAccepted`, :class:`AudioReceived`, :class:`EndMarker` or
  :class:`ProtocolError`; :func:`reply_messages` builds what a gateway sends back.

A *message* is what one WebSocket frame carries: ``bytes`` for a binary frame, ``str`` for
a text frame. Clock readings are monotonic seconds (``time.monotonic()``); metrics are
milliseconds.

A client turn moves only through :data:`CLIENT_TRANSITIONS`. The microphone and the reply
are two things at once — a gateway that ends utterances on silence answers while trailing
silence still streams, and the browser tester's microphone stays open while the reply plays —
so the ``TRAILING*`` states are those in which the microphone still sends::

    IDLE --begin--> SPEAKING --speech end--> TRAILING --reply data--> TRAILING_RECEIVING
    TRAILING | TRAILING_RECEIVING --reply over--> TRAILING_DONE --mic closed--> IDLE
    TRAILING --mic closed--> AWAITING_REPLY --reply data--> RECEIVING_REPLY --reply over--> IDLE
    TRAILING_RECEIVING --mic closed--> RECEIVING_REPLY
    any turn state --abandon--> IDLE;  any --connection lost--> CLOSED

A reply is over on ``{"type": "reply_end"}``, when a WAV reply's data has arrived and no
metadata came with it (the published SmartJARVIS gateway's only reply), after
``reply_gap_s`` without a reply message, or ``reply_timeout_s`` after the end of speech.

Wire format (DESIGN.md): the first client frame is the JSON header
``{"sessionId", "correlationId", "sampleRate": 16000, "protocolVersion": 1}`` as text or as
binary UTF-8 JSON; then PCM16 LE mono 16 kHz binary frames; an utterance ends with trailing
silence and/or a ``{"type": "end"}`` text frame.
"""

from __future__ import annotations

import enum
import io
import json
import math
import uuid
import wave
from dataclasses import dataclass
from typing import Any

from voiceharness import guide, replies
from voiceharness.errors import ProtocolViolation
from voiceharness.replies import Metadata
from voiceharness.turns import TurnRecord

Message = bytes | str

END_MARKER_TYPE = "end"
REPLY_END_TYPE = replies.REPLY_END_TYPE

# WebSocket close codes the protocol uses (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


# ----------------------------------------------------------------------------- header


@dataclass(frozen=True)
class Header:
    """The first client frame."""

    session_id: str
    correlation_id: str
    sample_rate_hz: int = guide.SAMPLE_RATE_HZ
    protocol_version: int = guide.PROTOCOL_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "sessionId": self.session_id,
                "correlationId": self.correlation_id,
                "sampleRate": self.sample_rate_hz,
                "protocolVersion": self.protocol_version,
            },
            separators=(",", ":"),
        )


def new_header(sample_rate_hz: int = guide.SAMPLE_RATE_HZ) -> Header:
    return Header(str(uuid.uuid4()), str(uuid.uuid4()), sample_rate_hz)


def parse_header(message: Message, expected_sample_rate_hz: int = guide.SAMPLE_RATE_HZ) -> Header:
    """Parse the first client frame; raise :class:`ProtocolViolation` (close 1008) when it is wrong."""
    if isinstance(message, bytes | bytearray | memoryview):
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("header is not UTF-8 JSON; send the JSON header first", 1008) from None
    else:
        text = message
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise ProtocolViolation("header is not JSON; send the JSON header first", 1008) from None
    if not isinstance(data, dict):
        raise ProtocolViolation("header must be a JSON object", 1008)
    missing = [key for key in ("sessionId", "correlationId") if not data.get(key)]
    if missing:
        raise ProtocolViolation(f"header lacks {', '.join(missing)}", 1008)
    if not all(isinstance(data[key], str) for key in ("sessionId", "correlationId")):
        raise ProtocolViolation("sessionId and correlationId must be strings", 1008)
    rate = data.get("sampleRate", expected_sample_rate_hz)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate != expected_sample_rate_hz:
        raise ProtocolViolation(f"sampleRate must be {expected_sample_rate_hz}, got {rate!r}", 1008)
    version = data.get("protocolVersion", guide.PROTOCOL_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolViolation(f"protocolVersion must be an integer, got {version!r}", 1008)
    return Header(data["sessionId"], data["correlationId"], rate, version)


_END_MARKER_MESSAGE = json.dumps({"type": END_MARKER_TYPE})


def end_marker_message() -> str:
    """The end marker's text (the same every turn: built once)."""
    return _END_MARKER_MESSAGE


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ReplyMetadata:
    """The gateway said what it understood (the first metadata of a turn sets the record's intent)."""

    at: float
    metadata: Metadata


@dataclass(frozen=True)
class ReplyAudio:
    """Reply audio arrived: ``samples`` new samples (``first``: the reply's first audio)."""

    at: float
    samples: int
    sample_rate_hz: int
    first: bool


@dataclass(frozen=True)
class ReplyEnded:
    """The reply is over; ``by`` is ``reply_end``, ``wav`` (its data arrived), ``gap`` or ``deadline``."""

    at: float
    by: str


@dataclass(frozen=True)
class PingMeasured:
    at: float
    ping_ms: float


@dataclass(frozen=True)
class StrayMessage:
    """A frame that belongs to no turn (late audio, another correlationId); counted, not fatal."""

    at: float
    reason: str


@dataclass(frozen=True)
class TurnEnded:
    """The turn is over. ``record`` holds every figure the protocol measured and, when the
    connection or the gateway's framing failed, its diagnosis; judging what the reply *says*
    is left to :mod:`voiceharness.judge`. ``audio`` is the reply's audio (samples kept when
    the session was asked to), ``metadata`` the first metadata, ``ended_by`` how the reply ended
    (``reply_end``, ``wav``, ``gap``, ``deadline``, ``connection_lost``, ``abandoned``, ``protocol``).
    """

    at: float
    record: TurnRecord
    audio: replies.ReplyAudio
    metadata: Metadata | None
    ended_by: str


@dataclass(frozen=True)
class HeaderAccepted:
    header: Header


@dataclass(frozen=True)
class AudioReceived:
    pcm: bytes


@dataclass(frozen=True)
class EndMarker:
    pass


@dataclass(frozen=True)
class ProtocolError:
    close_code: int
    reason: str


# ----------------------------------------------------------------------------- client


class ClientState(enum.Enum):
    """Where a turn is. ``TRAILING*`` states: speech is over but the microphone still sends
    (trailing silence, or the browser tester's open microphone while the reply plays)."""

    # Members are singletons: hash them by identity in C (Enum's own __hash__ is Python code, and
    # the transition table hashes a state and an input on every move, many per turn).
    __hash__ = object.__hash__

    IDLE = "idle"
    SPEAKING = "speaking"  # the utterance's frames are going out
    TRAILING = "trailing"  # speech over, silence going out, no reply yet
    TRAILING_RECEIVING = "trailing_receiving"  # silence going out, the reply is arriving
    TRAILING_DONE = "trailing_done"  # the reply is over (or its deadline passed), the mic not yet closed
    AWAITING_REPLY = "awaiting_reply"  # mic closed, no reply yet
    RECEIVING_REPLY = "receiving_reply"  # mic closed, the reply is arriving
    CLOSED = "closed"


class Input(enum.Enum):
    """What moves a turn: a call of the I/O layer, a message, or the clock."""

    __hash__ = object.__hash__  # as ClientState's

    BEGIN = "begin_turn"
    SPEECH_END = "speech_ended"  # the frame holding the last speech sample was handed to the socket
    MIC_CLOSED = "close_mic"  # the I/O layer sends no more audio for this turn
    REPLY_DATA = "reply data"  # metadata or reply audio
    REPLY_DONE = "reply over"  # reply_end, a complete WAV, the inactivity gap or the deadline
    FAULT = "gateway fault"  # a message the protocol does not allow
    ABANDON = "abandon_turn"  # the I/O layer ends the turn itself (dead link, end of the run, a harness bug)
    LOST = "connection_lost"


_S = ClientState
_TURN_STATES = (_S.SPEAKING, _S.TRAILING, _S.TRAILING_RECEIVING, _S.TRAILING_DONE, _S.AWAITING_REPLY,
                _S.RECEIVING_REPLY)

# Every transition of a client turn, and only these: (state, input) -> next state. Inputs not
# listed for a state are misuse by the I/O layer (ClientProtocolMisuse), except REPLY_DATA and
# FAULT outside a reply, which are stray messages, counted and ignored.
CLIENT_TRANSITIONS: dict[tuple[ClientState, Input], ClientState] = {
    (_S.IDLE, Input.BEGIN): _S.SPEAKING,
    (_S.SPEAKING, Input.SPEECH_END): _S.TRAILING,
    (_S.SPEAKING, Input.MIC_CLOSED): _S.AWAITING_REPLY,  # a stream cut short: speech ended with it
    (_S.SPEAKING, Input.FAULT): _S.SPEAKING,  # remembered; judged once the reply is over
    (_S.TRAILING, Input.REPLY_DATA): _S.TRAILING_RECEIVING,
    (_S.TRAILING, Input.REPLY_DONE): _S.TRAILING_DONE,  # the deadline, with the mic still open
    (_S.TRAILING, Input.MIC_CLOSED): _S.AWAITING_REPLY,
    (_S.TRAILING, Input.FAULT): _S.TRAILING_DONE,
    (_S.TRAILING_RECEIVING, Input.REPLY_DATA): _S.TRAILING_RECEIVING,
    (_S.TRAILING_RECEIVING, Input.REPLY_DONE): _S.TRAILING_DONE,
    (_S.TRAILING_RECEIVING, Input.MIC_CLOSED): _S.RECEIVING_REPLY,
    (_S.TRAILING_RECEIVING, Input.FAULT): _S.TRAILING_DONE,
    (_S.TRAILING_DONE, Input.MIC_CLOSED): _S.IDLE,  # the turn ends here
    (_S.AWAITING_REPLY, Input.REPLY_DATA): _S.RECEIVING_REPLY,
    (_S.AWAITING_REPLY, Input.REPLY_DONE): _S.IDLE,  # the deadline
    (_S.AWAITING_REPLY, Input.FAULT): _S.IDLE,
    (_S.RECEIVING_REPLY, Input.REPLY_DATA): _S.RECEIVING_REPLY,
    (_S.RECEIVING_REPLY, Input.REPLY_DONE): _S.IDLE,
    (_S.RECEIVING_REPLY, Input.FAULT): _S.IDLE,
    **{(state, Input.ABANDON): _S.IDLE for state in _TURN_STATES},
    **{(state, Input.LOST): _S.CLOSED for state in (_S.IDLE, *_TURN_STATES)},
}

# The states in which the microphone is still sending, and those in which a reply is awaited.
_MIC_OPEN = frozenset({_S.SPEAKING, _S.TRAILING, _S.TRAILING_RECEIVING, _S.TRAILING_DONE})
_REPLY_OPEN = frozenset({_S.TRAILING, _S.TRAILING_RECEIVING, _S.AWAITING_REPLY, _S.RECEIVING_REPLY})

MIC_DURING_REPLY = ("open", "closed")


class ClientProtocolMisuse(RuntimeError):
    """The I/O layer called the session out of order (a harness bug, not a gateway fault)."""


@dataclass
class _Turn:
    record: TurnRecord
    audio: replies.ReplyAudio
    started_at: float
    end_of_speech_at: float = math.nan
    last_reply_at: float = math.nan
    metadata: Metadata | None = None
    fault: str = ""  # a gateway fault seen while speaking, judged when the reply is over
    ended_by: str = ""


class ClientSession:
    """The harness's side of one WebSocket connection.

    ``reply_timeout_s`` is the deadline from the end of speech to the end of a reply;
    ``reply_gap_s`` the inactivity that ends a reply with no end event of its own.
    ``reply_format`` says how to read what comes back (:class:`~voiceharness.replies.ReplyFormat`);
    ``mic_during_reply`` whether trailing silence goes on while the reply plays (``open``,
    as the browser tester's microphone does until Stop) or stops when its audio starts
    (``closed``); ``keep_reply_audio`` keeps each reply's samples for the judge.
    """

    def __init__(
        self,
        *,
        header: Header | None = None,
        reply_timeout_s: float = 10.0,
        reply_gap_s: float = 0.6,
        reply_format: replies.ReplyFormat = replies.ReplyFormat.AUTO,
        mic_during_reply: str = "closed",
        pcm_sample_rate_hz: int = guide.SAMPLE_RATE_HZ,
        keep_reply_audio: bool = False,
    ) -> None:
        if mic_during_reply not in MIC_DURING_REPLY:
            raise ValueError(f"mic_during_reply must be one of {MIC_DURING_REPLY}, got {mic_during_reply!r}")
        self.header = header or new_header()
        self.reply_timeout_s = reply_timeout_s
        self.reply_gap_s = reply_gap_s
        self.reply_format = reply_format
        self.mic_during_reply = mic_during_reply
        self.pcm_sample_rate_hz = pcm_sample_rate_hz
        self.keep_reply_audio = keep_reply_audio
        self.state = ClientState.IDLE
        self.last_ping_ms = math.nan
        self.last_received_at = math.nan
        self.stray_messages = 0
        self._turn: _Turn | None = None
        self._pings: dict[bytes, float] = {}
        self._ping_counter = 0

    # -- the table
    def _move(self, event: Input) -> ClientState:
        new = CLIENT_TRANSITIONS.get((self.state, event))
        if new is None:
            raise ClientProtocolMisuse(f"{event.value} is not allowed while {self.state.value}")
        self.state = new
        return new

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    # -- what the I/O layer sends
    def header_message(self, *, as_binary: bool = True) -> Message:
        """The first frame. The browser tester sends it binary; the gateway accepts either."""
        text = self.header.to_json()
        return text.encode("utf-8") if as_binary else text

    def begin_turn(self, *, utterance_id: str, expected_intent: str, now: float,
                   speech_ms: float = math.nan) -> None:
        """Start a turn: the utterance's first frame is about to go out."""
        self._move(Input.BEGIN)
        record = TurnRecord(
            connection_id=self.header.session_id,
            utterance_id=utterance_id,
            expected_intent=expected_intent,
            speech_ms=speech_ms,
            ping_ms=self.last_ping_ms,
        )
        audio = replies.ReplyAudio(pcm_sample_rate_hz=self.pcm_sample_rate_hz, keep=self.keep_reply_audio)
        self._turn = _Turn(record=record, audio=audio, started_at=now)

    def speech_ended(self, now: float) -> None:
        """The frame holding the utterance's last speech sample was handed to the socket at ``now``:
        the moment every reply timing counts from."""
        turn = self._require_turn("speech_ended")
        self._move(Input.SPEECH_END)
        turn.end_of_speech_at = now

    def wants_audio(self, now: float) -> bool:
        """Should the microphone go on sending (trailing silence, or the open mic while the reply plays)?

        The I/O layer asks before each frame after the utterance's speech. ``closed`` mode: no
        longer once reply audio has arrived. ``open`` mode (the browser tester's microphone, open
        until Stop): until the reply is over and its audio has played (a playback timeline that
        starts with the first reply audio, see :class:`~voiceharness.replies.ReplyAudio`).
        """
        state = self.state
        if state in (_S.SPEAKING, _S.TRAILING):
            return True
        turn = self._turn
        if turn is None:
            return False
        if state is _S.TRAILING_RECEIVING:
            return self.mic_during_reply == "open" or turn.audio.samples == 0
        if state is _S.TRAILING_DONE and self.mic_during_reply == "open" and turn.ended_by != "deadline":
            return now < turn.audio.played_until
        return False

    @property
    def mic_stays_open(self) -> bool:
        """Open-microphone mode: silence goes on past the trailing silence until the reply is over."""
        return self.mic_during_reply == "open"

    def close_mic(self, now: float, *, chunks_sent: int, send_lateness_max_ms: float = math.nan,
                  uplink_backlog_ms: float = math.nan) -> list[object]:
        """The I/O layer sent the turn's last frame; ``chunks_sent`` frames in all, the latest
        ``send_lateness_max_ms`` behind its schedule. ``uplink_backlog_ms`` is what the kernel had
        not sent yet, as ms of audio (:mod:`voiceharness.uplink`). Returns the TurnEnded event
        when the reply was already over (open microphone).
        """
        turn = self._require_turn("close_mic")
        record = turn.record
        record.chunks_sent = chunks_sent
        record.send_lateness_max_ms = send_lateness_max_ms
        record.uplink_backlog_ms = uplink_backlog_ms
        if math.isnan(turn.end_of_speech_at):
            # The stream was cut before its speech ended: speech ended with the last frame sent.
            turn.end_of_speech_at = now
        if self._move(Input.MIC_CLOSED) is _S.IDLE:
            return [self._close_turn(now)]
        return []

    def ping_payload(self, now: float) -> bytes:
        self._ping_counter += 1
        payload = self._ping_counter.to_bytes(4, "big")
        self._pings[payload] = now
        if len(self._pings) > 16:  # unanswered pings must not pile up
            self._pings.pop(next(iter(self._pings)))
        return payload

    def pong_received(self, payload: bytes, now: float) -> PingMeasured | None:
        self.last_received_at = now
        sent = self._pings.pop(bytes(payload), None)
        if sent is None:
            return None
        self.last_ping_ms = (now - sent) * 1000.0
        if self._turn is not None:
            self._turn.record.ping_ms = self.last_ping_ms
        return PingMeasured(now, self.last_ping_ms)

    def frame_received(self, now: float) -> None:
        """Any frame arrived (a ping from the server included): the link is alive."""
        self.last_received_at = now

    def link_silent_for(self, now: float) -> float:
        """Seconds since anything arrived on this connection (0 if nothing yet)."""
        return 0.0 if math.isnan(self.last_received_at) else now - self.last_received_at

    # -- what the I/O layer received
    def receive(self, message: Message, now: float) -> list[object]:
        self.last_received_at = now
        turn = self._turn
        in_wav = turn is not None and turn.audio.in_wav
        parsed = replies.parse_message(message, self.reply_format, in_wav=in_wav)
        if isinstance(parsed, replies.OtherEvent):  # an event type we do not know (a gateway's status)
            return [StrayMessage(now, f"unknown message type {parsed.kind!r}")]
        if isinstance(parsed, replies.Malformed):
            return self._fault(now, parsed.reason)
        if isinstance(parsed, replies.Metadata) and parsed.correlation_id is not None \
                and parsed.correlation_id != self.header.correlation_id:
            return self._stray(now, f"reply for another correlationId {parsed.correlation_id[:40]!r}")
        if turn is None or self.state not in _REPLY_OPEN:
            what = {replies.ReplyEnd: "reply_end", replies.Metadata: "metadata"}.get(type(parsed), "audio")
            if self.state is _S.SPEAKING:
                return self._fault(now, f"{what} before the end of speech (the gateway cut the utterance short)")
            return self._stray(now, f"{what} outside a reply")
        if isinstance(parsed, replies.ReplyEnd):
            return [ReplyEnded(now, "reply_end"), *self._reply_over(now, "reply_end")]
        self._move(Input.REPLY_DATA)
        turn.last_reply_at = now
        if isinstance(parsed, replies.Metadata):
            if turn.metadata is None:
                turn.metadata = parsed
                record = turn.record
                record.intent = parsed.intent
                record.intent_source = "metadata"
                record.confidence = parsed.confidence
                record.transcript = parsed.transcript
                record.reply_text = parsed.reply_text
                record.intent_ms = (now - turn.end_of_speech_at) * 1000.0
                if parsed.sample_rate_hz:
                    turn.audio.pcm_sample_rate_hz = parsed.sample_rate_hz
            return [ReplyMetadata(now, parsed)]
        arrived = turn.audio.add(parsed, now)
        events: list[object] = []
        if arrived is not None:
            events.append(ReplyAudio(now, arrived.samples, arrived.sample_rate_hz, arrived.first))
        if turn.audio.wav_complete and turn.metadata is None and self.reply_format is not replies.ReplyFormat.METADATA:
            # The SmartJARVIS shape: one WAV, no metadata, no end event; its data has arrived.
            events.append(ReplyEnded(now, "wav"))
            events.extend(self._reply_over(now, "wav"))
        return events

    def poll(self, now: float) -> list[object]:
        """Apply the clock: the inactivity gap ends a reply, the deadline ends a silent turn."""
        turn = self._turn
        if turn is None or self.state not in _REPLY_OPEN:
            return []
        receiving = self.state in (_S.RECEIVING_REPLY, _S.TRAILING_RECEIVING)
        if receiving and now - turn.last_reply_at >= self.reply_gap_s:
            return [ReplyEnded(now, "gap"), *self._reply_over(now, "gap")]
        if now - turn.end_of_speech_at >= self.reply_timeout_s:
            return [ReplyEnded(now, "deadline"), *self._reply_over(now, "deadline")]
        return []

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`poll` may end the reply, or None outside a reply wait."""
        turn = self._turn
        if turn is None or self.state not in _REPLY_OPEN:
            return None
        deadline = turn.end_of_speech_at + self.reply_timeout_s
        if self.state in (_S.RECEIVING_REPLY, _S.TRAILING_RECEIVING):
            deadline = min(deadline, turn.last_reply_at + self.reply_gap_s)
        return deadline

    def connection_lost(self, now: float, close_code: int | None = None, reason: str = "") -> list[object]:
        """The connection is gone; a turn in progress ends as a classified failure."""
        events: list[object] = []
        turn = self._turn
        if turn is not None:
            record = turn.record
            record.close_code = close_code
            detail = f"close code {close_code}" if close_code is not None else "connection dropped"
            if reason:
                detail += f": {reason}"
            if self.state is _S.TRAILING_DONE:
                pass  # the reply was over before the drop; the turn stands as it was
            elif self.state in (_S.RECEIVING_REPLY, _S.TRAILING_RECEIVING):
                _fail(record, "incomplete_reply", f"reply cut after {turn.audio.audio_bytes} audio bytes; {detail}")
            else:
                _fail(record, "recording_stopped", f"{detail} while {self.state.value.replace('_', ' ')}")
            turn.ended_by = turn.ended_by or "connection_lost"
            self._move(Input.LOST)
            events.append(self._close_turn(now))
        self.state = ClientState.CLOSED
        return events

    def abandon_turn(self, now: float, failure: str, detail: str) -> list[object]:
        """End the turn in progress with a failure the I/O layer found (dead link, end of the run,
        a harness bug); the I/O layer stops sending for it."""
        turn = self._turn
        if turn is None:
            return []
        _fail(turn.record, failure, detail)
        turn.ended_by = "abandoned"
        if self.state is not _S.CLOSED:
            self._move(Input.ABANDON)
        return [self._close_turn(now)]

    # -- ending a turn
    def _require_turn(self, what: str) -> _Turn:
        if self._turn is None:
            raise ClientProtocolMisuse(f"{what} outside a turn (state {self.state.value})")
        return self._turn

    def _stray(self, now: float, reason: str) -> list[object]:
        self.stray_messages += 1
        return [StrayMessage(now, reason)]

    def _fault(self, now: float, detail: str) -> list[object]:
        turn = self._turn
        if turn is None or self.state not in (_S.SPEAKING, *_REPLY_OPEN):
            return self._stray(now, detail)
        turn.fault = turn.fault or detail
        if self.state is _S.SPEAKING:
            self._move(Input.FAULT)  # remembered: the turn goes on until the mic closes
            return []
        turn.ended_by = "protocol"
        if self._move(Input.FAULT) is _S.IDLE:
            return [self._close_turn(now)]
        return []

    def _reply_over(self, now: float, by: str) -> list[object]:
        turn = self._turn
        assert turn is not None
        turn.ended_by = by
        turn.audio.finish()
        if self._move(Input.REPLY_DONE) is _S.IDLE:
            return [self._close_turn(now)]
        return []  # the mic is still open: the turn ends when it closes

    def _close_turn(self, now: float) -> TurnEnded:
        turn = self._turn
        assert turn is not None
        self._turn = None
        record, audio = turn.record, turn.audio
        audio.finish()
        speech_end = turn.end_of_speech_at
        record.turn_ms = (now - speech_end) * 1000.0
        if audio.samples:
            record.roundtrip_ms = (audio.first_at - speech_end) * 1000.0
            record.reply_ms = (audio.last_at - speech_end) * 1000.0
            record.audible_ms = (audio.audible_at - speech_end) * 1000.0
            record.reply_audio_ms = audio.duration_ms
            record.reply_sample_rate_hz = audio.sample_rate_hz
            if "pcm" in audio.containers or audio.messages > 1:
                record.playback_stalls = audio.playback_stalls
        record.chunks_received = audio.messages
        record.reply_audio_bytes = audio.audio_bytes
        formats = (["metadata"] if turn.metadata is not None else []) + audio.containers
        record.reply_format = "+".join(formats)
        record.reply_complete = turn.ended_by in ("reply_end", "wav") or (turn.ended_by == "gap" and audio.samples > 0)
        if not record.failure:
            if audio.truncated:
                record.reply_complete = False
                _fail(record, "incomplete_reply", f"the reply's WAV file was cut short ({audio.audio_bytes} audio bytes arrived)")
            elif turn.fault:
                _fail(record, "gateway_protocol", turn.fault)
        if math.isnan(record.ping_ms):
            record.ping_ms = self.last_ping_ms
        return TurnEnded(now, record, audio, turn.metadata, turn.ended_by)


def _fail(record: TurnRecord, failure: str, detail: str) -> None:
    record.failure = failure
    record.failure_detail = detail
    record.success = False


# ----------------------------------------------------------------------------- server


class ServerState(enum.Enum):
    AWAITING_HEADER = "awaiting_header"
    STREAMING = "streaming"
    CLOSED = "closed"


class ServerSession:
    """The gateway's side of one WebSocket connection: header, audio, end markers."""

    def __init__(self, *, expected_sample_rate_hz: int = guide.SAMPLE_RATE_HZ) -> None:
        self.expected_sample_rate_hz = expected_sample_rate_hz
        self.state = ServerState.AWAITING_HEADER
        self.header: Header | None = None

    def receive(self, message: Message) -> list[object]:
        if self.state is ServerState.CLOSED:
            return []
        if self.state is ServerState.AWAITING_HEADER:
            try:
                self.header = parse_header(message, self.expected_sample_rate_hz)
            except ProtocolViolation as violation:
                self.state = ServerState.CLOSED
                return [ProtocolError(violation.close_code, str(violation))]
            self.state = ServerState.STREAMING
            return [HeaderAccepted(self.header)]
        if isinstance(message, str):
            data = replies.json_object(message)
            if data is not None and data.get("type") == END_MARKER_TYPE:
                return [EndMarker()]
            # Other control messages are tolerated: a newer client may send more.
            return []
        data = replies.json_object(message)
        if data is not None and data.get("type") == END_MARKER_TYPE:
            return [EndMarker()]
        if len(message) % 2:
            self.state = ServerState.CLOSED
            return [ProtocolError(CLOSE_INVALID_PAYLOAD, "PCM16 frame with an odd byte count")]
        return [AudioReceived(bytes(message))]

    def close(self) -> None:
        self.state = ServerState.CLOSED


def reply_messages(
    *,
    intent: str,
    confidence: float,
    transcript: str,
    slots: dict[str, Any],
    reply_text: str,
    audio_pcm: bytes,
    correlation_id: str | None = None,
    chunk_bytes: int = guide.CHUNK_BYTES,
    json_as_binary: bool = True,
    audio_as_wav: bool = False,
    sample_rate_hz: int = guide.SAMPLE_RATE_HZ,
    send_reply_end: bool = True,
) -> list[Message]:
    """What a gateway sends for one utterance: metadata, reply audio, reply end.

    JSON goes in binary frames by default because the browser tester reads every message
    as bytes and sees a text frame as 0 bytes.
    """

    def as_frame(obj: dict[str, Any]) -> Message:
        text = json.dumps(obj, separators=(",", ":"))
        return text.encode("utf-8") if json_as_binary else text

    metadata: dict[str, Any] = {
        "intent": intent,
        "confidence": round(float(confidence), 3),
        "text": transcript,
        "slots": slots,
        "reply": reply_text,
    }
    if correlation_id is not None:
        metadata["correlationId"] = correlation_id
    messages: list[Message] = [as_frame(metadata)]
    if audio_pcm:
        if audio_as_wav:
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate_hz)
                wav.writeframes(audio_pcm)
            messages.append(buffer.getvalue())
        else:
            chunk_bytes -= chunk_bytes % 2
            messages.extend(audio_pcm[i : i + chunk_bytes] for i in range(0, len(audio_pcm), chunk_bytes))
    if send_reply_end:
        messages.append(as_frame({"type": REPLY_END_TYPE}))
    return messages
