"""The wire dialects the reference gateway speaks: ``--dialect reference|smartjarvis``.

A dialect is what a client sees on the socket: which paths upgrade, how the header is checked,
what a message after the header means, what a reply looks like, whose connection a reply goes
to. Everything else (endpointing, the pipeline, faults, probes, metrics) is the same gateway.

=============================  ===========================  ==================================
                               ``reference`` (default)      ``smartjarvis``
=============================  ===========================  ==================================
paths                          ``/ws/audio`` and ``/ws``    any path
bad header                     1008 with a reason that      1008 "Invalid message format"
                               says what was wrong          (its only close code)
after the header               PCM16 frames; an odd byte    every message, text or binary, is
                               count closes 1007;           audio (``{"type":"end"}`` is 15
                               ``{"type":"end"}`` ends the  bytes of it); odd byte counts are
                               utterance                    fine: the stream is bytes
end of utterance               marker or trailing silence   trailing silence only
reply                          JSON metadata, PCM16 frames  ONE binary message: a whole WAV
                               (or one WAV), reply_end      file at 22,050 Hz, nothing else
reply wording                  :mod:`gateway.nlg`           SmartJARVIS-style templates
                               ``reference``
pongs                          checked (``--ping-timeout``) never checked
replies go to                  the connection that spoke    the newest connection with the
                                                            header's sessionId
=============================  ===========================  ==================================

The SmartJARVIS column is the published SmartJARVIS gateway's behaviour as read from its source
and measured (docs/protocol.md, "Dialects"). Sessions here are
sans-I/O, like :class:`voiceharness.protocol.ServerSession`, which the reference dialect uses
unchanged: ``receive(message)`` returns events (``HeaderAccepted``, ``AudioReceived``,
``EndMarker``, ``ProtocolError``); :meth:`Dialect.reply_messages` returns the messages to send.
"""

from __future__ import annotations

import enum
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile

from voiceharness import guide
from voiceharness.protocol import (
    AudioReceived,
    Header,
    HeaderAccepted,
    ProtocolError,
    ServerSession,
    reply_messages,
)

__all__ = [
    "DIALECTS",
    "REFERENCE",
    "SMARTJARVIS",
    "SMARTJARVIS_BAD_HEADER_REASON",
    "Dialect",
    "Reply",
    "ReplyFormat",
    "SmartJarvisSession",
    "wav_message",
]

SMARTJARVIS_BAD_HEADER_REASON = "Invalid message format"
SMARTJARVIS_REPLY_SAMPLE_RATE_HZ = 22_050  # piper voices' native rate (espeak-ng's too)
_CLOSE_POLICY_VIOLATION = 1008

Message = str | bytes


@dataclass(frozen=True)
class Reply:
    """One turn's answer, before it is put into messages; ``audio_pcm`` is PCM16 LE mono."""

    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any]
    reply_text: str
    audio_pcm: bytes
    sample_rate_hz: int
    correlation_id: str | None = None


@dataclass(frozen=True)
class ReplyFormat:
    """The reference dialect's reply options (``--reply-wav``, ``--no-reply-end``...)."""

    wav: bool = False
    chunk_bytes: int = guide.CHUNK_BYTES
    json_as_binary: bool = True
    reply_end: bool = True


def wav_message(pcm: bytes, sample_rate_hz: int) -> bytes:
    """A whole WAV file (RIFF, PCM16 mono) holding ``pcm``, its sizes filled in."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- smartjarvis


class _State(enum.Enum):
    AWAITING_HEADER = "awaiting_header"
    STREAMING = "streaming"
    CLOSED = "closed"


class SmartJarvisSession:
    """The published SmartJARVIS gateway's side of one connection: a header, then only audio.

    The header is JSON in a text or binary message with non-empty string ``sessionId`` and
    ``correlationId`` and ``sampleRate`` exactly 16000; anything else is
    ``ProtocolError(1008, "Invalid message format")``. After it, every message is
    ``AudioReceived`` with its bytes (a text message as its UTF-8 bytes) -- there is no end
    marker and no other error.
    """

    def __init__(self) -> None:
        self.state = _State.AWAITING_HEADER
        self.header: Header | None = None

    def receive(self, message: Message | bytearray | memoryview) -> list[object]:
        if self.state is _State.CLOSED:
            return []
        if self.state is _State.AWAITING_HEADER:
            header = _smartjarvis_header(message)
            if header is None:
                self.state = _State.CLOSED
                return [ProtocolError(_CLOSE_POLICY_VIOLATION, SMARTJARVIS_BAD_HEADER_REASON)]
            self.header = header
            self.state = _State.STREAMING
            return [HeaderAccepted(header)]
        payload = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        return [AudioReceived(payload)]

    def close(self) -> None:
        self.state = _State.CLOSED


def _smartjarvis_header(message: Message | bytearray | memoryview) -> Header | None:
    try:
        text = message if isinstance(message, str) else bytes(message).decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    session_id, correlation_id = data.get("sessionId"), data.get("correlationId")
    if not (
        isinstance(session_id, str) and session_id and isinstance(correlation_id, str) and correlation_id
    ):
        return None
    rate = data.get("sampleRate")
    # JSON has one number type: 16000 and 16000.0 are the same value to the Node gateway.
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != guide.SAMPLE_RATE_HZ:
        return None
    version = data.get("protocolVersion", guide.PROTOCOL_VERSION)
    return Header(
        session_id, correlation_id, guide.SAMPLE_RATE_HZ, version if isinstance(version, int) else 0
    )


# ----------------------------------------------------------------------------- the dialects


def _reference_messages(reply: Reply, fmt: ReplyFormat) -> list[Message]:
    return reply_messages(
        intent=reply.intent,
        confidence=reply.confidence,
        transcript=reply.transcript,
        slots=dict(reply.slots),
        reply_text=reply.reply_text,
        audio_pcm=reply.audio_pcm,
        correlation_id=reply.correlation_id,
        chunk_bytes=fmt.chunk_bytes,
        json_as_binary=fmt.json_as_binary,
        audio_as_wav=fmt.wav,
        sample_rate_hz=reply.sample_rate_hz,
        send_reply_end=fmt.reply_end,
    )


def _smartjarvis_messages(reply: Reply, fmt: ReplyFormat) -> list[Message]:
    # No metadata, no end event: the WAV is the whole reply. No audio (TTS off): no reply.
    return [wav_message(reply.audio_pcm, reply.sample_rate_hz)] if reply.audio_pcm else []


def _reference_session() -> ServerSession:
    return ServerSession(expected_sample_rate_hz=guide.SAMPLE_RATE_HZ)


@dataclass(frozen=True)
class Dialect:
    name: str
    new_session: Callable[[], Any] = field(repr=False)
    encode_reply: Callable[[Reply, ReplyFormat], list[Message]] = field(repr=False)
    accepts_any_path: bool
    replies_by_session_id: bool  # a reply goes to the newest connection with its sessionId
    checks_pongs: bool
    reply_sample_rate_hz: int  # the default; --reply-sample-rate-hz overrides it
    nlg_style: str

    def reply_messages(self, reply: Reply, fmt: ReplyFormat = ReplyFormat()) -> list[Message]:
        return self.encode_reply(reply, fmt)


REFERENCE = Dialect(
    name="reference",
    new_session=_reference_session,
    encode_reply=_reference_messages,
    accepts_any_path=False,
    replies_by_session_id=False,
    checks_pongs=True,
    reply_sample_rate_hz=guide.SAMPLE_RATE_HZ,
    nlg_style="reference",
)
SMARTJARVIS = Dialect(
    name="smartjarvis",
    new_session=SmartJarvisSession,
    encode_reply=_smartjarvis_messages,
    accepts_any_path=True,
    replies_by_session_id=True,
    checks_pongs=False,
    reply_sample_rate_hz=SMARTJARVIS_REPLY_SAMPLE_RATE_HZ,
    nlg_style="smartjarvis",
)
DIALECTS: dict[str, Dialect] = {d.name: d for d in (REFERENCE, SMARTJARVIS)}
