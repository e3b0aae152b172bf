"""The SmartJARVIS voice-gateway protocol as a sans-I/O state machine.

This module holds the rules of the protocol — the header, audio frames, the end marker, what a
gateway sends back and the state of a turn — and no socket, no clock of its own, no timing
arithmetic and no verdict. The I/O layers (:mod:`voiceharness.connection`, the Locust
transport, the reference gateway) move WebSocket messages between a socket and a session:

* :class:`ClientSession` (the harness's side) is told what the I/O layer did (``begin_turn``,
  ``speech_ended``, ``close_mic``, ``abandon_turn``) and fed with received messages and clock
  readings (``receive``, ``poll``, ``connection_lost``); it returns events — frozen
  dataclasses named as nouns: :class:`ReplyMetadata`, :class:`ReplyAudio`, :class:`ReplyEnded`,
  :class:`GatewayFault`, :class:`PingMeasured`, :class:`StrayMessage`, :class:`TurnEnded` —
  each stamped with the clock reading it came with. What the timings are is folded from those
  events by the turn's meter (:mod:`voiceharness.turn`); whether the turn did what was expected
  is decided by :mod:`voiceharness.judge`.
* :class:`ServerSession` (the gateway's side) is fed with received messages and returns
  :class:`HeaderAccepted`, :class:`AudioReceived`, :class:`EndMarker` or :class:`ProtocolError`;
  :func:`reply_messages` builds what a gateway sends back.

A *message* is what one WebSocket message carries: ``bytes`` for binary, ``str`` for text.
Clock readings are monotonic seconds.

A client turn is two small machines, as h11 keeps one per role: the **microphone**
(:data:`MIC_TRANSITIONS`) and the **reply** (:data:`REPLY_TRANSITIONS`). They run at once — a
gateway that ends utterances on silence answers while trailing silence still streams, and the
browser tester's microphone stays open while the reply plays — and every move of either goes
through its table::

    microphone  OFF --begin--> SPEAKING --speech end--> TRAILING --close--> OFF
                SPEAKING --close--> OFF  (a stream cut short: speech ended with it)
    reply       IDLE --begin--> AWAITING --data--> RECEIVING --done--> COMPLETE --turn over--> IDLE
                AWAITING --done--> COMPLETE  (the deadline, or a reply_end with nothing before it)
                AWAITING | RECEIVING --fault--> COMPLETE
    either      --abandon--> OFF / IDLE;  --connection lost--> OFF / IDLE, and the session is closed

The turn is over when the microphone is OFF and the reply COMPLETE (:class:`TurnEnded`), or at
once when it is abandoned or the connection is lost. Reply messages count only once speech is
over; one that comes while the utterance is still being spoken is a gateway fault, remembered
until the turn ends.

A reply is over on ``{"type": "reply_end"}``, when a WAV reply's data has arrived and no
metadata came with it (the published SmartJARVIS gateway's only reply), after ``reply_gap_s``
without a reply message, or ``reply_timeout_s`` after the end of speech.

What a gateway sends back, per message (:func:`parse_message`, :class:`ReplyFormat`):

=========  ==============================================================================
auto       JSON objects (text frames, or binary frames that parse as one) are metadata or
           events; a binary message opening with ``RIFF....WAVE`` starts a WAV file; any
           other binary message is raw PCM16
metadata   as auto, and the gateway is expected to say the intent in its metadata
wav        every binary message is WAV file bytes (a file may span several messages)
pcm        every binary message is raw PCM16, even one that opens with ``{`` or ``RIFF``
=========  ==============================================================================

A WAV file may span several messages and one message may end a file and start the next: the
session cuts the bytes at the files' edges (from each file's RIFF size) and says where each
file starts (:attr:`ReplyAudio.new_file`); decoding the audio is the meter's business.

Wire format (docs/protocol.md): the first client frame is the JSON header
``{"sessionId", "correlationId", "sampleRate": 16000, "protocolVersion": 1}`` as text or as
binary UTF-8 JSON; then PCM16 LE mono 16 kHz binary frames; an utterance ends with trailing
silence and/or a ``{"type": "end"}`` text frame.
"""

from __future__ import annotations

import enum
import io
import json
import math
import struct
import uuid
import wave
from dataclasses import dataclass
from typing import Any

from voiceharness import guide
from voiceharness.errors import ProtocolViolation

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


# ----------------------------------------------------------------------------- what a gateway sends


class ReplyFormat(enum.Enum):
    AUTO = "auto"
    METADATA = "metadata"
    WAV = "wav"
    PCM = "pcm"


@dataclass(frozen=True)
class Metadata:
    """A JSON message with an intent: what the gateway says it understood and answers."""

    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any]
    reply_text: str
    correlation_id: str | None
    sample_rate_hz: int | None  # of the raw PCM reply audio, when the gateway says so


@dataclass(frozen=True)
class ReplyEnd:
    """``{"type": "reply_end"}``: the gateway's own end-of-reply event."""


@dataclass(frozen=True)
class OtherEvent:
    """A JSON object with a ``type`` we do not know (a gateway's status, say): ignored, counted."""

    kind: str


@dataclass(frozen=True)
class Malformed:
    """Something no gateway of this protocol may send (the reason says what)."""

    reason: str


@dataclass(frozen=True)
class AudioPayload:
    """Binary reply audio: ``wav`` (file bytes, maybe a piece of one) or raw ``pcm``."""

    data: bytes | memoryview
    container: str  # "wav" or "pcm"


Parsed = Metadata | ReplyEnd | OtherEvent | Malformed | AudioPayload


def is_wav(payload: bytes | memoryview) -> bool:
    """True when ``payload`` opens like a WAV file (``RIFF`` size ``WAVE``)."""
    return bytes(payload[:4]) == b"RIFF" and bytes(payload[8:12]) == b"WAVE"


def json_object(message: bytes | memoryview | str) -> dict[str, Any] | None:
    """The JSON object a message holds, or None when it holds none."""
    if isinstance(message, str):
        text = message
    else:
        # Only a frame that opens with '{' can be JSON; PCM rarely does, and if it does and
        # fails to parse it is audio, as the browser tester treats it.
        if bytes(message[:1]) != b"{":
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


def parse_message(message: bytes | memoryview | str, fmt: ReplyFormat = ReplyFormat.AUTO, *,
                  in_wav: bool = False) -> Parsed:
    """What one received message is. ``in_wav``: a WAV file is part-way through arriving,
    so a binary message continues it."""
    if isinstance(message, str):
        data = json_object(message)
        return Malformed("text frame that is not a JSON object") if data is None else _parse_json(data)
    if fmt is ReplyFormat.PCM:
        return AudioPayload(message, "pcm")
    if fmt is ReplyFormat.WAV or in_wav:
        return AudioPayload(message, "wav")
    data = json_object(message)
    if data is not None:
        return _parse_json(data)
    return AudioPayload(message, "wav" if _opens_a_wav(message) else "pcm")


def _opens_a_wav(payload: bytes | memoryview) -> bool:
    """A message that starts a WAV file: ``RIFF....WAVE``, or ``RIFF`` and too short to tell more
    (a header split across messages)."""
    if bytes(payload[:4]) != b"RIFF":
        return False
    return len(payload) < 12 or bytes(payload[8:12]) == b"WAVE"


def _parse_json(data: dict[str, Any]) -> Parsed:
    kind = data.get("type")
    if kind == REPLY_END_TYPE:
        return ReplyEnd()
    if "intent" not in data:
        if kind is not None:
            return OtherEvent(str(kind)[:40])
        return Malformed("JSON message without intent")
    intent = data.get("intent")
    confidence = data.get("confidence", math.nan)
    transcript = data.get("text", "")
    slots = data.get("slots") or {}
    reply_text = data.get("reply", "")
    rate = data.get("sampleRate")
    if (
        not isinstance(intent, str)
        or isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not isinstance(transcript, str)
        or not isinstance(slots, dict)
        or not isinstance(reply_text, str)
        or (rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0))
    ):
        return Malformed("reply metadata with wrong types")
    correlation = data.get("correlationId")
    return Metadata(intent, float(confidence), transcript, slots, reply_text,
                    None if correlation is None else str(correlation), rate)


# What streaming WAV writers put in the RIFF size field when they cannot seek back: 0, all
# ones, or a placeholder near 2 GiB (espeak-ng --stdout writes 0x7ffff024).
_RIFF_SIZE_PLACEHOLDER_MIN = 0x7FFF0000


def riff_declared_bytes(head: bytes | bytearray | memoryview) -> int | None:
    """A WAV file's whole length as its RIFF chunk declares it (from its first 8 bytes), or None
    when the writer left it unknown (a streaming writer) or fewer than 8 bytes are given."""
    if len(head) < 8:
        return None
    size = struct.unpack_from("<I", head, 4)[0]
    return None if size == 0 or size >= _RIFF_SIZE_PLACEHOLDER_MIN else size + 8


class _WavFiles:
    """Where the WAV files of one reply start and end as their bytes arrive: no decoding, only
    each file's declared length (a file is complete when that many bytes have arrived)."""

    __slots__ = ("declared", "head", "received", "started")

    def __init__(self) -> None:
        self.started = False  # a file has begun
        self.received = 0  # bytes of the current file so far
        self.declared: int | None = None  # its length as declared, once 8 bytes are in
        self.head = bytearray()  # its first 12 bytes, to tell RIFF....WAVE from anything else

    @property
    def open(self) -> bool:
        """A file has started and not fully arrived: the next binary message continues it."""
        return self.started and not self.complete

    @property
    def complete(self) -> bool:
        return self.started and self.declared is not None and self.received >= self.declared

    @property
    def truncated(self) -> bool:
        """The current file declared a length and fewer bytes arrived (judged when the reply is over)."""
        return self.started and self.declared is not None and self.received < self.declared

    def split(self, data: bytes | memoryview) -> list[tuple[memoryview, bool, bool]]:
        """``data`` cut at the files' edges, as ``(piece, starts a new file, is WAV)``. A "file"
        whose first 12 bytes are not ``RIFF....WAVE`` (bytes after a complete file, or a wrong
        ``--reply-format``) is not WAV: the rest of the message goes with it, counted, not decoded."""
        pieces: list[tuple[memoryview, bool, bool]] = []
        view = memoryview(data)
        while len(view):
            new_file = not self.started or self.complete
            if new_file:
                self.started, self.received, self.declared, self.head = True, 0, None, bytearray()
            if len(self.head) < 12:
                self.head += view[: 12 - len(self.head)]
                if len(self.head) >= 12 and not is_wav(self.head):
                    self.started = False
                    pieces.append((view, new_file, False))
                    break
                if self.declared is None:
                    self.declared = riff_declared_bytes(self.head)
            want = len(view) if self.declared is None else min(len(view), self.declared - self.received)
            pieces.append((view[:want], new_file, True))
            self.received += want
            view = view[want:]
        return pieces


# ----------------------------------------------------------------------------- client events


@dataclass(frozen=True)
class ReplyMetadata:
    """The gateway said what it understood (the first metadata of a turn is the turn's)."""

    at: float
    metadata: Metadata
    first: bool


@dataclass(frozen=True)
class ReplyAudio:
    """Reply audio arrived: ``data``, raw PCM16 (``container`` "pcm") or a piece of a WAV file
    ("wav": ``new_file`` when it starts one; ``is_wav`` False when the bytes turned out not to be
    a WAV file). ``pcm_sample_rate_hz``: the rate of raw PCM, as the gateway's metadata or the
    session's setting says."""

    at: float
    data: bytes | memoryview
    container: str
    new_file: bool = False
    is_wav: bool = True
    pcm_sample_rate_hz: int = guide.SAMPLE_RATE_HZ


@dataclass(frozen=True)
class ReplyEnded:
    """The reply is over; ``by`` is ``reply_end``, ``wav`` (its data arrived), ``gap`` or ``deadline``."""

    at: float
    by: str


@dataclass(frozen=True)
class GatewayFault:
    """The gateway sent what the protocol does not allow (a malformed message, a reply before
    the end of speech); the first of a turn is the turn's."""

    at: float
    detail: str


@dataclass(frozen=True)
class PingMeasured:
    at: float
    ping_ms: float


@dataclass(frozen=True)
class StrayMessage:
    """A message that belongs to no turn (late audio, another correlationId); counted, not fatal."""

    at: float
    reason: str


class Abandon(enum.Enum):
    """Why the I/O layer ended a turn itself (the judge turns the cause into a diagnosis)."""

    DEAD_LINK = "dead_link"  # nothing arrived for twice the ping interval
    GATEWAY_PROTOCOL = "gateway_protocol"  # the gateway broke WebSocket's rules; we closed
    SEND_FAILED = "recording_stopped"  # the socket failed under us while streaming
    HARNESS_ERROR = "harness_error"  # a bug in the harness
    RUN_STOPPED = "run_stopped"  # the run ended (or Ctrl-C)


@dataclass(frozen=True)
class TurnEnded:
    """The turn is over: what the protocol saw of its end, for the meter and the judge.

    ``ended_by``: ``reply_end``, ``wav``, ``gap``, ``deadline`` (the reply's end), ``protocol``
    (a gateway fault during the reply), ``connection_lost`` or ``abandoned``. ``fault``: the
    first gateway fault of the turn. ``lost_while``: the reply's and microphone's state when the
    connection was lost (``speaking``, ``trailing``, ``awaiting reply``, ``receiving reply``,
    ``reply over``). ``wav_truncated``: a WAV reply declared more bytes than arrived.
    """

    at: float
    ended_by: str
    saw_metadata: bool = False
    fault: str = ""
    close_code: int | None = None
    lost_reason: str = ""
    lost_while: str = ""
    abandoned: Abandon | None = None
    abandon_detail: str = ""
    wav_truncated: bool = False


# ----------------------------------------------------------------------------- client


class Mic(enum.Enum):
    """The microphone of a turn."""

    # Members are singletons: hash them by identity in C (Enum's own __hash__ is Python code, and
    # the tables hash a state and an input on every move).
    __hash__ = object.__hash__

    OFF = "off"
    SPEAKING = "speaking"  # the utterance's frames are going out
    TRAILING = "trailing"  # speech over; silence goes out (trailing silence, or an open microphone)


class Reply(enum.Enum):
    """The reply of a turn."""

    __hash__ = object.__hash__

    IDLE = "idle"  # no turn
    AWAITING = "awaiting"  # nothing yet
    RECEIVING = "receiving"  # metadata or audio arrived, more may come
    COMPLETE = "complete"  # over: its end event, a complete WAV, the gap, the deadline or a fault


class Input(enum.Enum):
    """What moves a turn's machines: a call of the I/O layer, a message, or the clock."""

    __hash__ = object.__hash__

    BEGIN = "begin_turn"
    SPEECH_END = "speech_ended"  # the frame holding the last speech sample was handed to the socket
    CLOSE = "close_mic"  # the I/O layer sends no more audio for this turn
    DATA = "reply data"  # metadata or reply audio
    DONE = "reply over"  # reply_end, a complete WAV, the inactivity gap or the deadline
    FAULT = "gateway fault"  # a message the protocol does not allow, during the reply
    TURN_OVER = "turn over"  # the microphone is off and the reply complete
    ABANDON = "abandon_turn"  # the I/O layer ends the turn itself
    LOST = "connection_lost"


_M, _R = Mic, Reply

# Every move of the microphone, and only these: (state, input) -> next state.
MIC_TRANSITIONS: dict[tuple[Mic, Input], Mic] = {
    (_M.OFF, Input.BEGIN): _M.SPEAKING,
    (_M.SPEAKING, Input.SPEECH_END): _M.TRAILING,
    (_M.SPEAKING, Input.CLOSE): _M.OFF,  # a stream cut short: speech ended with it
    (_M.TRAILING, Input.CLOSE): _M.OFF,
    **{(state, Input.ABANDON): _M.OFF for state in _M},
    **{(state, Input.LOST): _M.OFF for state in _M},
}

# Every move of the reply, and only these. DATA and FAULT outside AWAITING/RECEIVING are stray
# messages (counted, not moves).
REPLY_TRANSITIONS: dict[tuple[Reply, Input], Reply] = {
    (_R.IDLE, Input.BEGIN): _R.AWAITING,
    (_R.AWAITING, Input.DATA): _R.RECEIVING,
    (_R.AWAITING, Input.DONE): _R.COMPLETE,
    (_R.AWAITING, Input.FAULT): _R.COMPLETE,
    (_R.RECEIVING, Input.DATA): _R.RECEIVING,
    (_R.RECEIVING, Input.DONE): _R.COMPLETE,
    (_R.RECEIVING, Input.FAULT): _R.COMPLETE,
    (_R.COMPLETE, Input.TURN_OVER): _R.IDLE,
    **{(state, Input.ABANDON): _R.IDLE for state in _R},
    **{(state, Input.LOST): _R.IDLE for state in _R},
}

MIC_DURING_REPLY = ("open", "closed")


class ClientProtocolMisuse(RuntimeError):
    """The I/O layer called the session out of order (a harness bug, not a gateway fault)."""


class ClientSession:
    """The harness's side of one WebSocket connection (see the module docstring).

    ``reply_timeout_s`` is the deadline from the end of speech to the end of a reply;
    ``reply_gap_s`` the inactivity that ends a reply with no end event of its own;
    ``reply_format`` how to read what comes back; ``pcm_sample_rate_hz`` the rate of raw PCM
    reply audio when the gateway does not say it.
    """

    def __init__(
        self,
        *,
        header: Header | None = None,
        reply_timeout_s: float = 10.0,
        reply_gap_s: float = 0.6,
        reply_format: ReplyFormat = ReplyFormat.AUTO,
        pcm_sample_rate_hz: int = guide.SAMPLE_RATE_HZ,
    ) -> None:
        self.header = header or new_header()
        self.reply_timeout_s = reply_timeout_s
        self.reply_gap_s = reply_gap_s
        self.reply_format = reply_format
        self.pcm_sample_rate_hz = pcm_sample_rate_hz
        self.mic = Mic.OFF
        self.reply = Reply.IDLE
        self.closed = False
        self.in_turn = False
        self.last_ping_ms = math.nan
        self.last_received_at = math.nan
        self.stray_messages = 0
        self.end_of_speech_at = math.nan
        self.reply_ended_by = ""
        self.reply_has_audio = False
        self._turn_pcm_rate_hz = pcm_sample_rate_hz
        self._last_reply_at = math.nan
        self._saw_metadata = False
        self._fault = ""
        self._wav = _WavFiles()
        self._pings: dict[bytes, float] = {}
        self._ping_counter = 0

    # -- the tables
    def _move_mic(self, event: Input) -> Mic:
        new = MIC_TRANSITIONS.get((self.mic, event))
        if new is None:
            raise ClientProtocolMisuse(f"{event.value} is not allowed while the microphone is {self.mic.value}")
        self.mic = new
        return new

    def _move_reply(self, event: Input) -> Reply:
        new = REPLY_TRANSITIONS.get((self.reply, event))
        if new is None:
            raise ClientProtocolMisuse(f"{event.value} is not allowed while the reply is {self.reply.value}")
        self.reply = new
        return new

    @property
    def reply_open(self) -> bool:
        """A reply is awaited or arriving and speech is over: reply messages belong to the turn."""
        return self.reply in (Reply.AWAITING, Reply.RECEIVING) and self.mic is not Mic.SPEAKING

    # -- what the I/O layer does
    def header_message(self, *, as_binary: bool = True) -> Message:
        """The first frame. The browser tester sends it binary; the gateway accepts either."""
        text = self.header.to_json()
        return text.encode("utf-8") if as_binary else text

    def begin_turn(self, now: float) -> None:
        """Start a turn: the utterance's first frame is about to go out."""
        if self.closed or self.in_turn:
            raise ClientProtocolMisuse("begin_turn " + ("on a closed connection" if self.closed else "inside a turn"))
        self._move_mic(Input.BEGIN)
        self._move_reply(Input.BEGIN)
        self.in_turn = True
        self.end_of_speech_at = math.nan
        self.reply_ended_by = ""
        self.reply_has_audio = False
        self._turn_pcm_rate_hz = self.pcm_sample_rate_hz
        self._last_reply_at = math.nan
        self._saw_metadata = False
        self._fault = ""
        self._wav = _WavFiles()

    def speech_ended(self, now: float) -> None:
        """The frame holding the utterance's last speech sample was handed to the socket at ``now``:
        the moment every reply timing counts from."""
        self._move_mic(Input.SPEECH_END)
        self.end_of_speech_at = now

    def close_mic(self, now: float) -> list[object]:
        """The I/O layer sent the turn's last frame. Returns the TurnEnded event when the reply
        was already over (an open microphone, or a reply that came during the trailing silence)."""
        if not self.in_turn:
            raise ClientProtocolMisuse(f"close_mic outside a turn (microphone {self.mic.value})")
        if math.isnan(self.end_of_speech_at):
            self.end_of_speech_at = now  # the stream was cut before its speech ended: it ended with the last frame
        self._move_mic(Input.CLOSE)
        return self._turn_over_if_done(now)

    def abandon_turn(self, now: float, why: Abandon, detail: str, *, close_code: int | None = None) -> list[object]:
        """End the turn in progress because of something the I/O layer found (a dead link, the
        end of the run, a harness bug; ``close_code`` when it closed the connection for it); the
        I/O layer sends no more for it."""
        if not self.in_turn:
            return []
        self._move_mic(Input.ABANDON)
        self._move_reply(Input.ABANDON)
        return [self._end(now, "abandoned", abandoned=why, abandon_detail=detail, close_code=close_code)]

    def connection_lost(self, now: float, close_code: int | None = None, reason: str = "") -> list[object]:
        """The connection is gone; a turn in progress ends (the judge says how it fared)."""
        events: list[object] = []
        if self.in_turn:
            lost_while = self._where()
            self._move_mic(Input.LOST)
            self._move_reply(Input.LOST)
            # A reply that was over before the drop stands as it ended (an open microphone was still sending).
            ended_by = self.reply_ended_by if lost_while == "reply over" else "connection_lost"
            events.append(self._end(now, ended_by, close_code=close_code, lost_reason=reason, lost_while=lost_while))
        self.closed = True
        return events

    def _where(self) -> str:
        if self.mic is Mic.SPEAKING:
            return "speaking"
        if self.reply is Reply.COMPLETE:
            return "reply over"
        if self.reply is Reply.RECEIVING:
            return "receiving reply"
        return "trailing" if self.mic is Mic.TRAILING else "awaiting reply"

    # -- pings: is the link alive, and how fast
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
        parsed = parse_message(message, self.reply_format, in_wav=self.in_turn and self._wav.open)
        kind = type(parsed)
        if kind is OtherEvent:  # an event type we do not know (a gateway's status)
            return [StrayMessage(now, f"unknown message type {parsed.kind!r}")]
        if kind is Malformed:
            return self._gateway_fault(now, parsed.reason)
        if kind is Metadata and parsed.correlation_id is not None and parsed.correlation_id != self.header.correlation_id:
            return self._stray(now, f"reply for another correlationId {parsed.correlation_id[:40]!r}")
        if not self.reply_open:
            what = {ReplyEnd: "reply_end", Metadata: "metadata"}.get(kind, "audio")
            if self.in_turn and self.mic is Mic.SPEAKING:
                return self._gateway_fault(now, f"{what} before the end of speech (the gateway cut the utterance short)")
            return self._stray(now, f"{what} outside a reply")
        if kind is ReplyEnd:
            return self._reply_over(now, "reply_end")
        self._move_reply(Input.DATA)
        self._last_reply_at = now
        if kind is Metadata:
            first = not self._saw_metadata
            self._saw_metadata = True
            if first and parsed.sample_rate_hz:
                self._turn_pcm_rate_hz = parsed.sample_rate_hz
            return [ReplyMetadata(now, parsed, first)]
        self.reply_has_audio = True
        if parsed.container == "pcm":
            events: list[object] = [ReplyAudio(now, parsed.data, "pcm", pcm_sample_rate_hz=self._turn_pcm_rate_hz)]
        else:
            events = [ReplyAudio(now, piece, "wav", new_file, valid)
                      for piece, new_file, valid in self._wav.split(parsed.data)]
            if self._wav.complete and not self._saw_metadata and self.reply_format is not ReplyFormat.METADATA:
                # The SmartJARVIS shape: one WAV, no metadata, no end event; its data has arrived.
                events.extend(self._reply_over(now, "wav"))
        return events

    def poll(self, now: float) -> list[object]:
        """Apply the clock: the inactivity gap ends a reply, the deadline ends a silent turn."""
        if not self.reply_open:
            return []
        if self.reply is Reply.RECEIVING and now - self._last_reply_at >= self.reply_gap_s:
            return self._reply_over(now, "gap")
        if now - self.end_of_speech_at >= self.reply_timeout_s:
            return self._reply_over(now, "deadline")
        return []

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`poll` may end the reply, or None outside a reply wait."""
        if not self.reply_open:
            return None
        deadline = self.end_of_speech_at + self.reply_timeout_s
        if self.reply is Reply.RECEIVING:
            deadline = min(deadline, self._last_reply_at + self.reply_gap_s)
        return deadline

    # -- ending
    def _stray(self, now: float, reason: str) -> list[object]:
        self.stray_messages += 1
        return [StrayMessage(now, reason)]

    def _gateway_fault(self, now: float, detail: str) -> list[object]:
        if not self.in_turn or self.reply is Reply.COMPLETE:
            return self._stray(now, detail)
        self._fault = self._fault or detail
        events: list[object] = [GatewayFault(now, detail)]
        if self.mic is Mic.SPEAKING:
            return events  # remembered: the turn goes on until the microphone closes
        self.reply_ended_by = "protocol"
        self._move_reply(Input.FAULT)
        return events + self._turn_over_if_done(now)

    def _reply_over(self, now: float, by: str) -> list[object]:
        self.reply_ended_by = by
        self._move_reply(Input.DONE)
        return [ReplyEnded(now, by), *self._turn_over_if_done(now)]

    def _turn_over_if_done(self, now: float) -> list[object]:
        if self.mic is not Mic.OFF or self.reply is not Reply.COMPLETE:
            return []  # the other machine is still going: the turn ends when it is done too
        self._move_reply(Input.TURN_OVER)
        return [self._end(now, self.reply_ended_by)]

    def _end(self, now: float, ended_by: str, **facts: Any) -> TurnEnded:
        self.in_turn = False
        return TurnEnded(now, ended_by, saw_metadata=self._saw_metadata, fault=self._fault,
                         wav_truncated=self._wav.truncated, **facts)


# ----------------------------------------------------------------------------- server


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
            data = json_object(message)
            if data is not None and data.get("type") == END_MARKER_TYPE:
                return [EndMarker()]
            # Other control messages are tolerated: a newer client may send more.
            return []
        data = json_object(message)
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
