"""voiceharness.locust.transport's frame reader: one socket read serves many frames, none is lost.

No socket: the reader is fed by a function that plays a socket's ``recv``, returning the
wire bytes in the pieces a test chooses, and counts how often it was called.
"""

from __future__ import annotations

import os

import pytest
import websocket

from voiceharness.locust.transport import MAX_MESSAGE_BYTES, MessageTooBig, _BufferedRecv, _CappedFrameBuffer
from voiceharness import framing


def _server_frame(payload: bytes, opcode: int) -> bytes:
    return framing.frame_header(len(payload), opcode, masked=False) + payload


REPLY = [
    (framing.OPCODE_TEXT, b'{"intent":"GREETING","confidence":1.0}'),
    (framing.OPCODE_BINARY, os.urandom(2048)),
    (framing.OPCODE_BINARY, os.urandom(1152)),
    (framing.OPCODE_BINARY, os.urandom(70_000)),  # a 64-bit length, read in several pieces
    (framing.OPCODE_TEXT, b'{"type":"reply_end"}'),
]
WIRE = b"".join(_server_frame(payload, opcode) for opcode, payload in REPLY)


class PlayedSocket:
    """``recv(n)`` over ``WIRE``, at most ``piece`` bytes a call, like a socket that has that much."""

    def __init__(self, piece: int) -> None:
        self.piece = piece
        self.position = 0
        self.calls = 0

    def recv(self, bufsize: int) -> bytes:
        self.calls += 1
        if self.position >= len(WIRE):
            raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
        chunk = WIRE[self.position : self.position + min(bufsize, self.piece)]
        self.position += len(chunk)
        return chunk


def _read_all(sock: PlayedSocket, max_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[int, bytes]]:
    reader = _CappedFrameBuffer(sock.recv, False, max_bytes)
    frames = []
    for _ in REPLY:
        frame = reader.recv_frame()
        frames.append((frame.opcode, bytes(frame.data)))
    return frames


@pytest.mark.parametrize("piece", [1, 7, 1500, 65536, 1 << 20])
def test_every_frame_comes_back_whole_however_the_bytes_arrive(piece):
    assert _read_all(PlayedSocket(piece)) == REPLY


def test_a_reply_that_arrived_at_once_takes_two_reads_not_one_per_header_and_payload():
    sock = PlayedSocket(1 << 20)
    _read_all(sock)
    # 65,536 bytes a read: the 75,000-byte reply is two reads (websocket-client alone made 17).
    assert sock.calls == 2


def test_the_message_cap_still_refuses_a_frame_from_its_header():
    sock = PlayedSocket(1 << 20)
    with pytest.raises(MessageTooBig, match="70000 bytes"):
        _read_all(sock, max_bytes=10_000)


def test_a_read_cut_by_an_error_keeps_what_it_had_for_the_retry():
    pieces = [b"abc", OSError("interrupted"), b"defgh"]

    def recv(_bufsize):
        piece = pieces.pop(0)
        if isinstance(piece, Exception):
            raise piece
        return piece

    buffered = _BufferedRecv(recv)
    with pytest.raises(OSError):
        buffered.exact(5)
    assert buffered.exact(5) == b"abcde"
    assert buffered(100) == b"fgh"
