"""voiceharness.locust.transport's frame reader: one socket read serves many frames, none is lost.

No socket: the reader is fed by a function that plays a socket's ``recv``, returning the
wire bytes in the pieces a test chooses, and counts how often it was called.
"""

from __future__ import annotations

import os

import pytest
import websocket

from voiceharness import framing
from voiceharness.locust.transport import (
    MAX_MESSAGE_BYTES,
    FrameReader,
    MessageTooBig,
    _BufferedRecv,
    _CappedFrameBuffer,
)


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


# ----------------------------------------------------------------------------- FrameReader


class _PlayedWebSocket:
    """Enough of websocket-client's WebSocket for FrameReader: its (capped, buffered) frame reader
    over played bytes, and a record of the pongs it sends."""

    def __init__(self, wire: bytes, piece: int = 1 << 20) -> None:
        sock = PlayedSocket(piece)
        sock_wire = wire

        def recv(bufsize: int) -> bytes:
            if sock.position >= len(sock_wire):
                raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
            chunk = sock_wire[sock.position : sock.position + min(bufsize, piece)]
            sock.position += len(chunk)
            return chunk

        self.frame_buffer = _CappedFrameBuffer(recv, False, MAX_MESSAGE_BYTES)
        self.pongs: list[bytes] = []
        real = websocket.WebSocket()
        real.frame_buffer = self.frame_buffer
        real.pong = self.pongs.append  # what the general reader sends for a ping, recorded
        real.connected = True
        self.real = real

    def recv_data_frame(self, control_frame: bool):
        return self.real.recv_data_frame(control_frame)

    def pong(self, payload: bytes) -> None:
        self.pongs.append(payload)


def _frame(payload: bytes, opcode: int, *, fin: bool = True, masked: bool = False, rsv: int = 0) -> bytes:
    header = bytearray(framing.frame_header(len(payload), opcode, masked=masked, fin=fin))
    header[0] |= rsv << 4
    if not masked:
        return bytes(header) + payload
    key = b"\x01\x02\x03\x04"
    return bytes(header) + key + framing.mask(payload, key)


@pytest.mark.parametrize("piece", [1, 3, 1500, 1 << 20])
def test_the_reader_returns_whole_and_fragmented_messages_pings_and_pongs_in_order(piece):
    wire = b"".join([
        _frame(b'{"intent":"GREETING"}', framing.OPCODE_TEXT),
        _frame(b"\x01\x00" * 1500, framing.OPCODE_BINARY),  # a 16-bit length
        _frame(b"ping!", framing.OPCODE_PING),
        # a fragmented message with a pong between its fragments: websocket-client joins it
        _frame(b"hello ", framing.OPCODE_TEXT, fin=False),
        _frame(b"4321", framing.OPCODE_PONG),
        _frame(b"world", framing.OPCODE_CONTINUATION),
        _frame(os.urandom(70_000), framing.OPCODE_BINARY),  # a 64-bit length: the general reader
        _frame(b'{"type":"reply_end"}', framing.OPCODE_TEXT),
    ])
    ws = _PlayedWebSocket(wire, piece)
    reader = FrameReader(ws)
    got = [reader.next() for _ in range(7)]
    assert [opcode for opcode, _ in got] == [framing.OPCODE_TEXT, framing.OPCODE_BINARY, framing.OPCODE_PING,
                                            framing.OPCODE_PONG, framing.OPCODE_TEXT, framing.OPCODE_BINARY,
                                            framing.OPCODE_TEXT]
    assert bytes(got[0][1]) == b'{"intent":"GREETING"}' and len(got[1][1]) == 3000
    assert bytes(got[4][1]) == b"hello world" and len(got[5][1]) == 70_000
    assert ws.pongs == [b"ping!"]  # a ping read on the fast path is answered as websocket-client would


@pytest.mark.parametrize("bad, error", [
    (_frame(b"x", framing.OPCODE_BINARY, rsv=4), websocket.WebSocketProtocolException),
    (_frame(b"x", framing.OPCODE_CONTINUATION), websocket.WebSocketProtocolException),
    (_frame(b"x" * 126, framing.OPCODE_PING), websocket.WebSocketProtocolException),
    (bytes([0x83, 0x00]), websocket.WebSocketProtocolException),  # reserved opcode 3
])
def test_frames_that_break_the_rules_go_to_websocket_client_which_refuses_them(bad, error):
    reader = FrameReader(_PlayedWebSocket(bad))
    with pytest.raises(error):
        reader.next()


def test_a_masked_frame_from_the_gateway_is_left_to_websocket_client():
    """RFC 6455 forbids it; websocket-client unmasks it (as the harness always did): not the fast path's call."""
    ws = _PlayedWebSocket(_frame(b"hello", framing.OPCODE_BINARY, masked=True))
    assert FrameReader(ws).next() == (framing.OPCODE_BINARY, b"hello")


def test_importing_the_transport_the_options_or_the_package_does_not_import_locust():
    """Locust monkey-patches the whole process it is imported in; a tool (or this test suite) that
    imports the frame reader or resolves options must not get that, only a locustfile that imports
    the public API (which also registers the runtime's two listeners)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import voiceharness.locust, voiceharness.locust.transport, voiceharness.locust.collector\n"
        "import voiceharness.locust.options\n"
        "assert 'locust' not in sys.modules, 'locust imported'\n"
        "from gevent import monkey\n"
        "assert not monkey.is_module_patched('socket'), 'socket patched'\n"
        "from voiceharness.locust import VoiceUser\n"
        "assert 'locust' in sys.modules and monkey.is_module_patched('socket')\n"
        "assert 'voiceharness.locust.metrics' in sys.modules and 'voiceharness.locust.runtime' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
