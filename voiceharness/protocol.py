"""The SmartJARVIS voice-gateway protocol as a sans-I/O state machine.

This module holds every rule of the protocol — the header, audio frames, the end marker,
reply metadata, reply audio, the reply end and the turn state — and no socket. The
Locust users and the reference gateway are thin I/O layers that move WebSocket messages
between a connection and a session object:

* :class:`ClientSession` (the harness side) is fed with received messages and clock
  readings (``receive``, ``poll``, ``connection_lost``) and told what the I/O layer sent
  (``audio_sent``); it returns events (:class:`ReplyMetadata`, :class:`ReplyAudio`,
  :class:`ReplyEnded`, :class:`PingMeasured`, :class:`TurnEnded`...) carrying the
  timestamps the metrics need.
* :class:`ServerSession` (the gateway side) is fed with received messages and returns
  :class:`HeaderAccepted`, :class:`AudioReceived`, :class:`EndMarker` or
  :class:`ProtocolError`; :func:`reply_messages` builds what a gateway sends back.

A *message* is what one WebSocket frame carries: ``bytes`` for a binary frame, ``str`` for
a text frame. Clock readings are monotonic seconds (``time.monotonic()``); metrics are
milliseconds.

Client turn states, every transition in :data:`CLIENT_TRANSITIONS`::

    IDLE --begin_turn--> STREAMING --end_utterance--> AWAITING_REPLY
    AWAITING_REPLY --metadata or audio--> RECEIVING_REPLY
    AWAITING_REPLY | RECEIVING_REPLY --reply end, inactivity gap or deadline--> IDLE
    any --connection_lost--> CLOSED

Wire format (DESIGN.md): the first client frame is the JSON header
``{"sessionId", "correlationId", "sampleRate": 16000, "protocolVersion": 1}`` as text or as
binary UTF-8 JSON; then PCM16 LE mono 16 kHz binary frames; an utterance ends with trailing
silence and/or a ``{"type": "end"}`` text frame. The server answers with JSON metadata
(``intent``, ``confidence``, ``text``, ``slots``, ``reply``), reply audio as raw PCM16 or WAV
binary frames, and optionally ``{"type": "reply_end"}``. JSON may come in text or binary frames.
"""

from __future__ import annotations

import enum
import io
import json
import math
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

from voiceharness import guide
from voiceharness.errors import ProtocolViolation
from voiceharness.turns import TurnRecord

Message = bytes | str

END_MARKER_TYPE = "end"
REPLY_END_TYPE = "reply_end"

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


# ----------------------------------------------------------------------------- payloads


def _json_object(message: Message) -> dict[str, Any] | None:
    """The JSON object a frame holds, or None when it is not JSON (then binary means audio)."""
    if isinstance(message, str):
        text = message
    else:
        # Only a frame that opens with '{' can be JSON; PCM rarely does, and if it does and
        # fails to parse it is audio, as the browser tester treats it.
        head = bytes(message[:1])
        if head != b"{":
            return None
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # e.g. "[" * 100000: too deep for the parser, not JSON to us
        return None
    return data if isinstance(data, dict) else None


def wav_pcm_bytes(payload: bytes) -> int:
    """Audio bytes in a WAV payload (the data chunk), or the whole length minus 44 if unparsable."""
    try:
        with wave.open(io.BytesIO(payload)) as wav:
            return wav.getnframes() * wav.getsampwidth() * wav.getnchannels()
    except (wave.Error, EOFError):
        return max(0, len(payload) - 44)


def is_wav(payload: bytes | memoryview) -> bool:
    return bytes(payload[:4]) == b"RIFF" and bytes(payload[8:12]) == b"WAVE"


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ReplyMetadata:
    at: float
    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any]
    reply_text: str


@dataclass(frozen=True)
class ReplyAudio:
    at: float
    audio_bytes: int
    first: bool


@dataclass(frozen=True)
class ReplyEnded:
    at: float


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
    at: float
    record: TurnRecord


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
    IDLE = "idle"
    STREAMING = "streaming"
    AWAITING_REPLY = "awaiting_reply"
    RECEIVING_REPLY = "receiving_reply"
    CLOSED = "closed"


CLIENT_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.IDLE: frozenset({ClientState.STREAMING, ClientState.CLOSED}),
    ClientState.STREAMING: frozenset({ClientState.AWAITING_REPLY, ClientState.CLOSED}),
    ClientState.AWAITING_REPLY: frozenset({ClientState.RECEIVING_REPLY, ClientState.IDLE, ClientState.CLOSED}),
    ClientState.RECEIVING_REPLY: frozenset({ClientState.IDLE, ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}


class ClientProtocolMisuse(RuntimeError):
    """The I/O layer called the session out of order (a harness bug, not a gateway fault)."""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    rank = max(0, math.ceil(q / 100 * len(values)) - 1)
    if rank == len(values) - 1:  # p99 of a turn's few dozen frames is its latest: no sort needed
        return max(values)
    return sorted(values)[rank]


@dataclass
class _Turn:
    record: TurnRecord
    started_at: float
    speech_end_frame: int  # index of the frame that carries the last speech sample
    end_of_speech_at: float = math.nan
    streaming_ended_at: float = math.nan
    last_reply_at: float = math.nan
    lateness_ms: list[float] = field(default_factory=list)


class ClientSession:
    """The harness's side of one WebSocket connection.

    ``reply_timeout_s`` is the deadline from end of streaming to the end of a reply;
    ``reply_gap_s`` is the inactivity gap that ends a reply when the gateway sends no
    ``reply_end`` (and ends a turn that had a reply). Both are seconds.
    """

    def __init__(
        self,
        *,
        header: Header | None = None,
        reply_timeout_s: float = 10.0,
        reply_gap_s: float = 0.6,
    ) -> None:
        self.header = header or new_header()
        self.reply_timeout_s = reply_timeout_s
        self.reply_gap_s = reply_gap_s
        self.state = ClientState.IDLE
        self.last_ping_ms = math.nan
        self.last_received_at = math.nan
        self.stray_messages = 0
        self._turn: _Turn | None = None
        self._pings: dict[bytes, float] = {}
        self._ping_counter = 0

    # -- state bookkeeping
    def _move(self, new: ClientState) -> None:
        if new not in CLIENT_TRANSITIONS[self.state]:
            raise ClientProtocolMisuse(f"cannot go from {self.state.value} to {new.value}")
        self.state = new

    @property
    def in_turn(self) -> bool:
        return self._turn is not None

    # -- what the I/O layer sends
    def header_message(self, *, as_binary: bool = True) -> Message:
        """The first frame. The browser tester sends it binary; the gateway accepts either."""
        text = self.header.to_json()
        return text.encode("utf-8") if as_binary else text

    def begin_turn(
        self,
        *,
        utterance_id: str,
        expected_intent: str,
        speech_end_frame: int,
        now: float,
        speech_ms: float = math.nan,
    ) -> None:
        """Start a turn. ``speech_end_frame`` is the index of the frame holding the last speech sample."""
        self._move(ClientState.STREAMING)
        record = TurnRecord(
            connection_id=self.header.session_id,
            utterance_id=utterance_id,
            expected_intent=expected_intent,
            speech_ms=speech_ms,
            ping_ms=self.last_ping_ms,
        )
        self._turn = _Turn(record=record, started_at=now, speech_end_frame=speech_end_frame)

    def audio_sent(self, now: float, due: float | None = None) -> None:
        """One audio frame was handed to the socket at ``now`` (it was due at ``due``)."""
        turn = self._turn
        if turn is None or self.state is not ClientState.STREAMING:
            raise ClientProtocolMisuse("audio_sent outside a streaming turn")
        index = turn.record.chunks_sent
        turn.record.chunks_sent = index + 1
        if due is not None:
            turn.lateness_ms.append((now - due) * 1000.0)
        if index == turn.speech_end_frame:
            turn.end_of_speech_at = now

    def end_utterance(self, now: float, *, send_marker: bool, uplink_backlog_ms: float = math.nan) -> str | None:
        """Streaming is over; returns the end marker to send, if wanted.

        ``uplink_backlog_ms`` is what the I/O layer found still unsent in the kernel at this
        moment, as ms of audio (:mod:`voiceharness.uplink`); it goes into the turn's record.
        """
        turn = self._turn
        if turn is None:
            raise ClientProtocolMisuse("end_utterance outside a turn")
        self._move(ClientState.AWAITING_REPLY)
        turn.streaming_ended_at = now
        turn.record.uplink_backlog_ms = uplink_backlog_ms
        if math.isnan(turn.end_of_speech_at):
            # The utterance had fewer frames than its speech end (a cut stream): speech ended now.
            turn.end_of_speech_at = now
        return end_marker_message() if send_marker else None

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
        data = _json_object(message)
        if data is None and isinstance(message, str):
            return self._fail_turn_on_protocol(now, "text frame that is not a JSON object")
        if data is not None:
            return self._receive_json(data, now)
        return self._receive_audio(message, now)

    def _receive_json(self, data: dict[str, Any], now: float) -> list[object]:
        turn = self._turn
        kind = data.get("type")
        if kind == REPLY_END_TYPE:
            if turn is None or self.state not in (ClientState.AWAITING_REPLY, ClientState.RECEIVING_REPLY):
                self.stray_messages += 1
                return [StrayMessage(now, "reply_end outside a turn")]
            return [ReplyEnded(now), *self._end_turn(now, complete=True)]
        correlation = data.get("correlationId")
        if correlation is not None and correlation != self.header.correlation_id:
            self.stray_messages += 1
            return [StrayMessage(now, f"reply for another correlationId {str(correlation)[:40]!r}")]
        if "intent" not in data:
            if kind is not None:  # an event type we do not know (e.g. a gateway's status): ignore it
                return [StrayMessage(now, f"unknown message type {str(kind)[:40]!r}")]
            return self._fail_turn_on_protocol(now, "JSON message without intent")
        intent = data.get("intent")
        confidence = data.get("confidence", math.nan)
        transcript = data.get("text", "")
        slots = data.get("slots") or {}
        reply_text = data.get("reply", "")
        if (
            not isinstance(intent, str)
            or isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not isinstance(transcript, str)
            or not isinstance(slots, dict)
            or not isinstance(reply_text, str)
        ):
            return self._fail_turn_on_protocol(now, "reply metadata with wrong types")
        if turn is None or self.state not in (ClientState.AWAITING_REPLY, ClientState.RECEIVING_REPLY):
            self.stray_messages += 1
            return [StrayMessage(now, "metadata outside a turn")]
        if self.state is ClientState.AWAITING_REPLY:
            self._move(ClientState.RECEIVING_REPLY)
        record = turn.record
        if not record.intent:
            record.intent = intent
            record.confidence = float(confidence)
            record.transcript = transcript
            record.intent_ms = (now - turn.end_of_speech_at) * 1000.0
        turn.last_reply_at = now
        return [ReplyMetadata(now, intent, float(confidence), transcript, slots, reply_text)]

    def _receive_audio(self, payload: bytes, now: float) -> list[object]:
        turn = self._turn
        if turn is None or self.state not in (ClientState.AWAITING_REPLY, ClientState.RECEIVING_REPLY):
            self.stray_messages += 1
            return [StrayMessage(now, "audio outside a turn")]
        if self.state is ClientState.AWAITING_REPLY:
            self._move(ClientState.RECEIVING_REPLY)
        record = turn.record
        audio_bytes = wav_pcm_bytes(bytes(payload)) if is_wav(payload) else len(payload)
        first = record.chunks_received == 0
        record.chunks_received += 1
        record.reply_audio_bytes += audio_bytes
        since_speech_ms = (now - turn.end_of_speech_at) * 1000.0
        if first:
            record.roundtrip_ms = since_speech_ms
        record.reply_ms = since_speech_ms
        turn.last_reply_at = now
        return [ReplyAudio(now, audio_bytes, first)]

    def poll(self, now: float) -> list[object]:
        """Apply the clock: the inactivity gap ends a reply, the deadline ends a silent turn."""
        turn = self._turn
        if turn is None or self.state not in (ClientState.AWAITING_REPLY, ClientState.RECEIVING_REPLY):
            return []
        if self.state is ClientState.RECEIVING_REPLY and now - turn.last_reply_at >= self.reply_gap_s:
            return self._end_turn(now, complete=turn.record.chunks_received > 0)
        if now - turn.streaming_ended_at >= self.reply_timeout_s:
            return self._end_turn(now, complete=False, deadline=True)
        return []

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`poll` may end the turn, or None outside a reply wait."""
        turn = self._turn
        if turn is None or self.state not in (ClientState.AWAITING_REPLY, ClientState.RECEIVING_REPLY):
            return None
        deadline = turn.streaming_ended_at + self.reply_timeout_s
        if self.state is ClientState.RECEIVING_REPLY:
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
            if self.state is ClientState.RECEIVING_REPLY:  # metadata or audio arrived: the reply was cut
                self._finish(record, "incomplete_reply", f"reply cut after {record.reply_audio_bytes} audio bytes; {detail}")
            else:
                self._finish(record, "recording_stopped", f"{detail} while {self.state.value.replace('_', ' ')}")
            events.append(self._close_turn(now))
        self.state = ClientState.CLOSED
        return events

    def abandon_turn(self, now: float, failure: str, detail: str) -> list[object]:
        """End the turn in progress with a failure the I/O layer found (dead link, stop of the run)."""
        turn = self._turn
        if turn is None:
            return []
        self._finish(turn.record, failure, detail)
        event = self._close_turn(now)
        if self.state is not ClientState.CLOSED:
            self.state = ClientState.IDLE
        return [event]

    # -- ending a turn
    def _fail_turn_on_protocol(self, now: float, detail: str) -> list[object]:
        if self._turn is None:
            self.stray_messages += 1
            return [StrayMessage(now, detail)]
        if self.state is ClientState.STREAMING:
            # The reply cannot be judged before streaming ends; remember the fault.
            self._turn.record.failure_detail = detail
            return []
        self._finish(self._turn.record, "gateway_protocol", detail)
        event = self._close_turn(now)
        self.state = ClientState.IDLE
        return [event]

    def _end_turn(self, now: float, *, complete: bool, deadline: bool = False) -> list[object]:
        turn = self._turn
        assert turn is not None
        record = turn.record
        record.reply_complete = complete
        if record.failure_detail and not record.intent:
            self._finish(record, "gateway_protocol", record.failure_detail)
        elif not record.intent:
            self._finish(record, "no_intent", "no intent within %.0f ms" % (self.reply_timeout_s * 1000) if deadline else "reply ended without intent")
        elif record.intent != record.expected_intent and record.expected_intent:
            self._finish(record, "wrong_intent", f"expected {record.expected_intent}, got {record.intent}")
        elif record.chunks_received == 0:
            self._finish(record, "no_audio_tts", f"intent {record.intent} but no reply audio")
        else:
            self._finish(record, "", "")
        event = self._close_turn(now)
        self._move(ClientState.IDLE)
        return [event]

    @staticmethod
    def _finish(record: TurnRecord, failure: str, detail: str) -> None:
        record.failure = failure
        record.failure_detail = detail
        record.success = not failure

    def _close_turn(self, now: float) -> TurnEnded:
        turn = self._turn
        assert turn is not None
        self._turn = None
        record = turn.record
        if turn.lateness_ms:
            record.send_lateness_p99_ms = _percentile(turn.lateness_ms, 99)
            record.send_lateness_max_ms = max(turn.lateness_ms)
        if math.isnan(record.ping_ms):
            record.ping_ms = self.last_ping_ms
        return TurnEnded(now, record)


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
            data = _json_object(message)
            if data is not None and data.get("type") == END_MARKER_TYPE:
                return [EndMarker()]
            # Other control messages are tolerated: a newer client may send more.
            return []
        data = _json_object(message) if message[:1] == b"{" else None
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
