"""One voice stream as the benchmark's baseline clients run it: frames out, replies in, turns timed.

The capacity benchmark compares the harness with clients that do the SAME work per stream
(issue 15 item 6): a connection with a JSON header, then turns back to back — an utterance
of the GREETING corpus at real-time pace, the end marker when the last frame's audio is over
(one frame period after that frame: the harness's pacer ends a stream so), the sink's reply read and parsed
(JSON metadata, reply audio frames, ``{"type":"reply_end"}``) — a WebSocket ping every
:data:`PING_INTERVAL_S` (the harness's default), and each turn's roundtrip (end of speech,
the frame that holds the last speech sample handed to the socket, to the first reply audio
frame) recorded. This module holds what the fair asyncio client
(``bench/baseline_asyncio_fair.py``) and the raw writer (``bench/baseline_raw.py``) share,
with no I/O: the corpus framed and masked once per process, and :class:`StreamState`,
which is fed the bytes the server sent and says when a turn ended.

Server frames are parsed here by hand (they are unmasked and small); a text or binary frame
that opens with ``{`` is JSON and goes through ``json.loads`` as the harness's session does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass

import numpy as np

from audio_corpus import load_corpus
from voiceharness import framing, guide, protocol

FRAME_S = guide.CHUNK_SAMPLES / guide.SAMPLE_RATE_HZ
# The harness pings every 3 s by default (voiceharness/locust/transport.py: ping_interval_s);
# every baseline does the same so no client does less keep-alive work than another.
PING_INTERVAL_S = 3.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Utterance:
    """One corpus utterance, pre-framed: what a turn sends."""

    id: str
    frames: tuple[bytes, ...]  # complete masked client frames, ready to write
    speech_end_frame: int  # index of the frame holding the last speech sample


class PreframedCorpus:
    """The GREETING corpus framed and masked once for the whole process (one mask key)."""

    def __init__(self, select: str = "GREETING") -> None:
        self.preframer = framing.Preframer()
        chunk = guide.CHUNK_SAMPLES
        self.utterances = tuple(
            Utterance(u.id, self.preframer.frames(u.id, u.frames(chunk)), u.speech_end_frame(chunk))
            for u in load_corpus(select=select)
        )
        self.end_marker = self.preframer.text(protocol.end_marker_message())

    def header(self) -> bytes:
        """The first frame of a new connection: a fresh session header, binary JSON, masked."""
        return framing.client_frame(protocol.ClientSession().header_message(as_binary=True), self.preframer.mask_key)

    def ping(self, payload: bytes) -> bytes:
        return framing.client_frame(payload, self.preframer.mask_key, framing.OPCODE_PING)

    def pong(self, payload: bytes) -> bytes:
        return framing.client_frame(payload, self.preframer.mask_key, framing.OPCODE_PONG)


def upgrade_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """(HTTP upgrade request, the Sec-WebSocket-Accept value the server must answer with)."""
    key = base64.b64encode(os.urandom(16))
    request = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
               b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
               b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return request, base64.b64encode(hashlib.sha1(key + _GUID).digest())


def check_upgrade(response: bytes, accept: bytes) -> None:
    """Raise ConnectionError unless ``response`` (up to the blank line) accepts the upgrade."""
    status = response.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"upgrade refused: {status.decode(errors='replace')}")
    if b"sec-websocket-accept: " + accept.lower() not in response.lower():
        raise ConnectionError("upgrade answered with a wrong Sec-WebSocket-Accept")


class StreamState:
    """What one stream knows between frames: its turn, its pings, the bytes not yet parsed.

    The sending side (a scheduler in the client) sets :attr:`speech_end_at` when it hands the
    speech-end frame to the socket; :meth:`feed` parses what the server sent and returns
    the bytes to write back (pongs) — the caller learns that the reply ended from
    :attr:`awaiting_reply` turning False.
    """

    __slots__ = (
        "audio_bytes",
        "awaiting_reply",
        "buffer",
        "closed",
        "count",
        "first_audio_at",
        "frames",
        "index",
        "intent",
        "ping_ms",
        "pings",
        "roundtrips_ms",
        "speech_end",
        "speech_end_at",
        "start",
        "turns",
    )

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.frames: tuple[bytes, ...] = ()
        self.count = 0
        self.index = 0
        self.start = 0.0
        self.speech_end = 0
        self.speech_end_at = float("nan")
        self.first_audio_at = float("nan")
        self.awaiting_reply = False
        self.audio_bytes = 0
        self.intent = ""
        self.turns = 0
        self.roundtrips_ms: list[float] = []
        self.pings: dict[bytes, float] = {}
        self.ping_ms: list[float] = []
        self.closed = False

    def begin_turn(self, utterance: Utterance, now: float) -> None:
        self.frames = utterance.frames
        self.count = len(utterance.frames)
        self.index = 0
        self.start = now
        self.speech_end = utterance.speech_end_frame
        self.speech_end_at = float("nan")
        self.first_audio_at = float("nan")
        self.audio_bytes = 0
        self.intent = ""

    def ping_sent(self, payload: bytes, now: float) -> None:
        self.pings[payload] = now
        if len(self.pings) > 16:  # unanswered pings must not pile up
            self.pings.pop(next(iter(self.pings)))

    def feed(self, data: bytes, now: float, corpus: PreframedCorpus) -> bytes:
        """Parse the server's frames in ``data`` (arrived at ``now``); returns bytes to write back."""
        buffer = self.buffer
        buffer += data
        out = b""
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = (buffer[position + 2] << 8) | buffer[position + 3]
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = struct.unpack_from("!Q", buffer, position + 2)[0]
                header = 10
            end = position + header + length
            if end > size:
                break
            opcode = first & 0x0F
            start = position + header
            if opcode in (framing.OPCODE_BINARY, framing.OPCODE_TEXT, framing.OPCODE_CONTINUATION):
                if length and buffer[start] == 0x7B and opcode != framing.OPCODE_CONTINUATION:  # '{': JSON
                    self._json(bytes(buffer[start:end]), now)
                elif self.awaiting_reply:
                    if self.audio_bytes == 0:
                        self.first_audio_at = now
                        self.roundtrips_ms.append((now - self.speech_end_at) * 1000.0)
                    self.audio_bytes += length
            elif opcode == framing.OPCODE_PONG:
                sent = self.pings.pop(bytes(buffer[start:end]), None)
                if sent is not None:
                    self.ping_ms.append((now - sent) * 1000.0)
            elif opcode == framing.OPCODE_PING:
                out += corpus.pong(bytes(buffer[start:end]))
            elif opcode == framing.OPCODE_CLOSE:
                self.closed = True
            position = end
        if position:
            del buffer[:position]
        return out

    def _json(self, payload: bytes, now: float) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "reply_end":
            if self.awaiting_reply:
                self.awaiting_reply = False
                self.turns += 1
        elif "intent" in message:
            self.intent = str(message["intent"])


def turns_summary(states: list[StreamState]) -> dict[str, object]:
    """Turns completed, and the roundtrip and ping percentiles over every stream (for the JSON)."""
    roundtrips = np.array([v for s in states for v in s.roundtrips_ms]) if states else np.array([])
    pings = np.array([v for s in states for v in s.ping_ms]) if states else np.array([])

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q)) if len(values) else None

    return {
        "turns": sum(s.turns for s in states),
        "roundtrip_p50_ms": pct(roundtrips, 50),
        "roundtrip_p99_ms": pct(roundtrips, 99),
        "pings": len(pings),
        "ping_p50_ms": pct(pings, 50),
    }
