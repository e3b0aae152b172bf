"""WebSocket client frames built once, ahead of time: the load generator's fast send path.

RFC 6455 wants every client frame masked with a 4-byte key (section 5.3), and a general
client library (websocket-client's ``send_binary``) builds the header and XORs the payload
in Python for every frame it sends. A load generator sends the *same* corpus audio from
thousands of simulated users, so here each frame is framed and masked once per process and
kept as ready-to-write ``bytes``: header + mask key + masked payload. Sending a frame is then
one ``socket.send``.

Why one fixed mask key per process is acceptable here: masking exists so that a hostile
script in a *browser* cannot choose the bytes that appear on the wire and poison an
intermediary's cache (RFC 6455 section 10.3). A load generator runs no untrusted script and
sends a corpus it chose itself; the key only has to be present and the payload XORed with it
for the frame to be valid, which any server checks. The key is still random per process
(``os.urandom``), so frames do not repeat byte for byte across runs.

No I/O here: the functions take and return bytes. ``tests/test_framing.py`` checks the frames
against websocket-client's own frame parser and against the ``websockets`` library's.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable

import numpy as np

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

_FIN = 0x80
_MASK_BIT = 0x80
_LENGTH_7 = 126
_LENGTH_16 = 1 << 16
MAX_PAYLOAD_BYTES = (1 << 63) - 1


def new_mask_key() -> bytes:
    """A random 4-byte masking key (one per process for pre-framed audio)."""
    return os.urandom(4)


def frame_header(payload_len: int, opcode: int = OPCODE_BINARY, *, masked: bool = True, fin: bool = True) -> bytes:
    """The 2-, 4- or 10-byte header of a frame (without the mask key)."""
    if not 0 <= payload_len <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload length {payload_len} out of range")
    if opcode not in (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG):
        raise ValueError(f"unknown opcode {opcode:#x}")
    first = (_FIN if fin else 0) | opcode
    mask_bit = _MASK_BIT if masked else 0
    if payload_len < _LENGTH_7:
        return struct.pack("!BB", first, mask_bit | payload_len)
    if payload_len < _LENGTH_16:
        return struct.pack("!BBH", first, mask_bit | 126, payload_len)
    return struct.pack("!BBQ", first, mask_bit | 127, payload_len)


def mask(payload: bytes | bytearray | memoryview, mask_key: bytes) -> bytes:
    """``payload`` XORed with the repeating 4-byte ``mask_key`` (numpy; masking is its own inverse)."""
    if len(mask_key) != 4:
        raise ValueError("a WebSocket mask key has 4 bytes")
    data = np.frombuffer(payload, dtype=np.uint8)
    key = np.frombuffer(mask_key, dtype=np.uint8)
    repeats = -(-len(data) // 4)
    return (data ^ np.tile(key, repeats)[: len(data)]).tobytes()


def client_frame(
    payload: bytes | bytearray | memoryview | str, mask_key: bytes, opcode: int | None = None
) -> bytes:
    """One complete masked client frame: header + mask key + masked payload.

    A ``str`` payload becomes a text frame (UTF-8), bytes a binary frame, unless ``opcode`` says otherwise.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
        opcode = OPCODE_TEXT if opcode is None else opcode
    elif opcode is None:
        opcode = OPCODE_BINARY
    return frame_header(len(payload), opcode) + mask_key + mask(payload, mask_key)


def preframe(frames: Iterable[bytes | memoryview], mask_key: bytes) -> tuple[bytes, ...]:
    """Binary client frames for a sequence of audio payloads, all masked with ``mask_key``.

    The result is meant to be computed once per process and shared by every user.
    """
    return tuple(client_frame(frame, mask_key, OPCODE_BINARY) for frame in frames)


class Preframer:
    """A process-wide cache of pre-framed audio: one mask key, each payload framed once.

    Keys are caller-chosen (e.g. ``(utterance_id, chunk_samples)``); values are tuples of
    ``bytes`` that every simulated user sends as they are.
    """

    def __init__(self, mask_key: bytes | None = None) -> None:
        self.mask_key = mask_key if mask_key is not None else new_mask_key()
        if len(self.mask_key) != 4:
            raise ValueError("a WebSocket mask key has 4 bytes")
        self._cache: dict[object, tuple[bytes, ...]] = {}

    def cached(self, key: object, build: Callable[[], tuple[bytes, ...]]) -> tuple[bytes, ...]:
        """The frames cached under ``key``; ``build()`` makes them the first time."""
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache.setdefault(key, build())
        return cached

    def frames(self, key: object, payloads: Iterable[bytes | memoryview]) -> tuple[bytes, ...]:
        return self.cached(key, lambda: preframe(payloads, self.mask_key))

    def frame(self, key: object, payload: bytes | memoryview) -> bytes:
        """One pre-framed payload (e.g. a frame of trailing silence), cached under ``key``."""
        return self.frames(key, (payload,))[0]

    def text(self, message: str) -> bytes:
        """One pre-framed text message (e.g. the end marker every turn sends), cached by its text."""
        return self.cached(("text", message), lambda: (client_frame(message, self.mask_key),))[0]

    @property
    def cached_bytes(self) -> int:
        return sum(len(frame) for frames in self._cache.values() for frame in frames)


def parse_frame_header(data: bytes | memoryview) -> tuple[int, bool, int, bytes | None, int] | None:
    """``(opcode, fin, payload_len, mask_key or None, header_len)`` of a frame at the start of ``data``,
    or None when ``data`` does not yet hold the whole header. For sinks and tests."""
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    length = second & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length = struct.unpack_from("!H", data, 2)[0]
        offset = 4
    elif length == 127:
        if len(data) < 10:
            return None
        length = struct.unpack_from("!Q", data, 2)[0]
        offset = 10
    key = None
    if second & _MASK_BIT:
        if len(data) < offset + 4:
            return None
        key = bytes(data[offset : offset + 4])
        offset += 4
    return first & 0x0F, bool(first & _FIN), length, key, offset
