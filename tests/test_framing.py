"""voiceharness.framing: pre-framed client frames are valid WebSocket frames, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import websocket
from websocket._abnf import ABNF, frame_buffer
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from voiceharness import framing

KEY = b"\x37\xfa\x21\x3d"


def _websocket_client_parse(data: bytes) -> list[ABNF]:
    """Parse ``data`` with websocket-client's own frame reader (the one its clients use)."""
    view = memoryview(data)
    position = 0

    def recv(count: int) -> bytes:
        nonlocal position
        chunk = bytes(view[position : position + count])
        position += len(chunk)
        return chunk

    reader = frame_buffer(recv, skip_utf8_validation=False)
    frames = []
    while position < len(data):
        frame = reader.recv_frame()
        frame.validate(skip_utf8_validation=False)
        frames.append(frame)
    return frames


def _websockets_parse(data: bytes) -> list[Frame]:
    """Parse ``data`` as a server would with the websockets library (mask required)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 127, 2048, 65535, 65536, 70_000])
def test_binary_frame_of_any_length_parses_back_to_its_payload(size):
    payload = os.urandom(size)
    frame = framing.client_frame(payload, KEY)
    (parsed,) = _websocket_client_parse(frame)
    assert parsed.opcode == ABNF.OPCODE_BINARY and parsed.fin == 1 and parsed.mask_value == 1
    assert bytes(parsed.data) == payload
    (parsed2,) = _websockets_parse(frame)
    assert parsed2.opcode is Opcode.BINARY and parsed2.fin and parsed2.data == payload


def test_frame_equals_websocket_client_format_with_the_same_key():
    """Byte-identical to what websocket-client's send_binary would put on the wire."""
    payload = os.urandom(2048)
    reference = ABNF.create_frame(payload, ABNF.OPCODE_BINARY)
    reference.get_mask_key = lambda _n: KEY
    assert framing.client_frame(payload, KEY) == reference.format()


def test_text_frame_from_str_is_utf8_text():
    frame = framing.client_frame('{"type": "end"} ü', KEY)
    (parsed,) = _websocket_client_parse(frame)
    assert parsed.opcode == ABNF.OPCODE_TEXT
    assert parsed.data.decode("utf-8") == '{"type": "end"} ü'


def test_mask_is_its_own_inverse_and_leaves_the_input_alone():
    payload = bytes(range(256)) * 9
    masked = framing.mask(payload, KEY)
    assert masked != payload
    assert framing.mask(masked, KEY) == payload
    assert framing.mask(memoryview(payload)[3:10], KEY) == ABNF.mask(KEY, payload[3:10])


def test_preframe_keeps_order_and_accepts_shared_memoryviews():
    pcm = os.urandom(2048 * 3 + 100)
    view = memoryview(pcm)
    payloads = [view[i : i + 2048] for i in range(0, len(pcm), 2048)]
    frames = framing.preframe(payloads, KEY)
    parsed = _websocket_client_parse(b"".join(frames))
    assert [bytes(p.data) for p in parsed] == [bytes(p) for p in payloads]
    assert all(isinstance(f, bytes) for f in frames)


def test_preframer_frames_each_key_once_and_shares_the_result():
    preframer = framing.Preframer(KEY)
    payloads = [b"\x01\x02" * 100, b"\x03\x04" * 7]
    first = preframer.frames(("u1", 1024), payloads)
    again = preframer.frames(("u1", 1024), [b"ignored"])
    assert again is first
    assert preframer.cached_bytes == sum(len(f) for f in first)
    silence = preframer.frame(("silence", 1024), bytes(2048))
    assert _websocket_client_parse(silence)[0].data == bytes(2048)


def test_preframer_text_is_one_cached_text_frame():
    preframer = framing.Preframer(KEY)
    marker = preframer.text('{"type":"end"}')
    assert preframer.text('{"type":"end"}') is marker
    (parsed,) = _websocket_client_parse(marker)
    assert parsed.opcode == ABNF.OPCODE_TEXT and parsed.data.decode("utf-8") == '{"type":"end"}'
    (parsed2,) = _websockets_parse(marker)
    assert parsed2.opcode is Opcode.TEXT


def test_new_mask_key_is_four_random_bytes():
    keys = {framing.new_mask_key() for _ in range(20)}
    assert all(len(k) == 4 for k in keys) and len(keys) > 1
    with pytest.raises(ValueError):
        framing.Preframer(b"abc")
    with pytest.raises(ValueError):
        framing.mask(b"x", b"abc")


def test_parse_frame_header_reads_back_what_frame_header_wrote():
    for size in (0, 125, 126, 65535, 65536):
        frame = framing.client_frame(bytes(size), KEY)
        assert framing.parse_frame_header(frame) == (framing.OPCODE_BINARY, True, size, KEY, len(frame) - size)
        assert framing.parse_frame_header(frame[:1]) is None
    assert framing.parse_frame_header(framing.frame_header(3, framing.OPCODE_PONG, masked=False)) == (
        framing.OPCODE_PONG, True, 3, None, 2)
    with pytest.raises(ValueError):
        framing.frame_header(1, 0x3)


def test_a_real_server_accepts_preframed_audio_written_to_the_raw_socket():
    """A websockets server receives pre-framed frames written by hand after websocket-client's handshake."""
    import threading

    from websockets.sync.server import serve

    received: list[bytes] = []
    done = threading.Event()

    def handler(connection):
        for message in connection:
            received.append(message)
            if len(received) == 3:
                done.set()

    with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/")
        payloads = [os.urandom(2048), os.urandom(2048), os.urandom(10)]
        for frame in framing.preframe(payloads, framing.new_mask_key()):
            with ws.lock:
                ws.sock.sendall(frame)
        assert done.wait(5)
        ws.close()
        server.shutdown()
    assert received == payloads


def test_module_does_no_io():
    """framing imports no socket library: it stays a pure, sans-I/O module."""
    source = Path(framing.__file__).read_text(encoding="utf-8")
    assert "import socket" not in source and "import asyncio" not in source
