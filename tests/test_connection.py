"""voiceharness.connection: the harness's WebSocket client — its sans-I/O frame reader, and a
connection to a real gateway on a loopback port (the handshake, pings, the close, refusals)."""

from __future__ import annotations

import os
import time

import pytest

from voiceharness import framing, protocol
from voiceharness.connection import (
    MAX_MESSAGE_BYTES,
    BlockingTransport,
    Connection,
    ConnectOptions,
    FrameReader,
)
from voiceharness.errors import ConnectionFailed, ProtocolViolation

TEXT, BINARY, CONT = framing.OPCODE_TEXT, framing.OPCODE_BINARY, framing.OPCODE_CONTINUATION
CLOSE, PING, PONG = framing.OPCODE_CLOSE, framing.OPCODE_PING, framing.OPCODE_PONG


def frame(payload: bytes, opcode: int, *, fin: bool = True, masked: bool = False, rsv: int = 0) -> bytes:
    header = bytearray(framing.frame_header(len(payload), opcode, masked=masked, fin=fin))
    header[0] |= rsv << 4
    if not masked:
        return bytes(header) + payload
    key = b"\x01\x02\x03\x04"
    return bytes(header) + key + framing.mask(payload, key)


def read_all(wire: bytes, piece: int, reader: FrameReader | None = None) -> list[tuple[int, object]]:
    """Every frame of ``wire``, fed ``piece`` bytes at a time, as a socket might hand them over."""
    reader = reader or FrameReader()
    out = []
    for start in range(0, len(wire), piece):
        reader.feed(wire[start : start + piece])
        while (got := reader.next()) is not None:
            out.append(got)
    return out


REPLY = [
    (TEXT, '{"intent":"GREETING","confidence":1.0}'),
    (BINARY, os.urandom(2048)),
    (BINARY, os.urandom(1152)),
    (BINARY, os.urandom(70_000)),  # a 64-bit length
    (TEXT, '{"type":"reply_end"}'),
]
REPLY_WIRE = b"".join(frame(p.encode() if isinstance(p, str) else p, op) for op, p in REPLY)


@pytest.mark.parametrize("piece", [1, 7, 1500, 65536, 1 << 20])
def test_every_message_comes_back_whole_however_the_bytes_arrive(piece):
    assert read_all(REPLY_WIRE, piece) == REPLY


@pytest.mark.parametrize("piece", [1, 3, 1 << 20])
def test_fragments_are_joined_with_control_frames_between_them(piece):
    wire = b"".join([
        frame(b"hello ", TEXT, fin=False),
        frame(b"4321", PONG),
        frame("w\u00f6".encode()[:2], CONT, fin=False),  # a UTF-8 sequence split across fragments
        frame(b"ping!", PING),
        frame("w\u00f6".encode()[2:] + b"rld", CONT),
        frame(b"\x01\x02", BINARY, fin=False),
        frame(b"\x03", CONT),
        frame((1000).to_bytes(2, "big") + b"bye", CLOSE),
    ])
    assert read_all(wire, piece) == [(PONG, b"4321"), (PING, b"ping!"), (TEXT, "hello w\u00f6rld"),
                                     (BINARY, b"\x01\x02\x03"), (CLOSE, (1000, "bye"))]


@pytest.mark.parametrize("wire, code, words", [
    (frame(b"x", BINARY, rsv=4), 1002, "reserved bit"),
    (frame(b"x", BINARY, masked=True), 1002, "masked frame"),
    (frame(b"x", CONT), 1002, "no message to continue"),
    (frame(b"x" * 126, PING), 1002, "over 125 bytes"),
    (frame(b"x", PING, fin=False), 1002, "fragmented"),
    (bytes([0x83, 0x00]), 1002, "unknown data opcode"),
    (bytes([0x8B, 0x00]), 1002, "unknown control opcode"),
    (frame(b"a", TEXT, fin=False) + frame(b"b", TEXT), 1002, "before the fragmented one ended"),
    (frame(b"\xff\xfe", TEXT), 1007, "invalid UTF-8"),
    (frame(b"\x01", CLOSE), 1002, "1-byte payload"),
    (frame((1005).to_bytes(2, "big"), CLOSE), 1002, "close code 1005"),
    (frame((999).to_bytes(2, "big"), CLOSE), 1002, "close code 999"),
    (frame((1000).to_bytes(2, "big") + b"\xff", CLOSE), 1007, "not UTF-8"),
])
def test_a_frame_that_breaks_the_rules_is_refused_with_its_close_code(wire, code, words):
    with pytest.raises(ProtocolViolation, match=words) as refused:
        read_all(wire, 1 << 20)
    assert refused.value.close_code == code


def test_invalid_utf8_is_refused_at_the_fragment_that_holds_it_not_at_the_message_end():
    reader = FrameReader()
    reader.feed(frame(b"fine \xff", TEXT, fin=False))
    with pytest.raises(ProtocolViolation) as refused:
        reader.next()
    assert refused.value.close_code == 1007


def test_invalid_utf8_is_refused_in_the_part_of_a_frame_that_has_arrived():
    reader = FrameReader()
    wire = frame(b"fine \xff and the rest of a long text frame", TEXT)
    reader.feed(wire[:10])  # the frame's first bytes only: the bad byte is among them
    with pytest.raises(ProtocolViolation) as refused:
        reader.next()
    assert refused.value.close_code == 1007
    good = FrameReader()
    good.feed(frame("caf\u00e9".encode(), TEXT)[:6])  # a valid sequence cut in two waits for the rest
    assert good.next() is None


def test_a_message_over_the_cap_is_refused_from_its_header_before_its_payload_arrives():
    reader = FrameReader(max_message_bytes=10_000)
    reader.feed(framing.frame_header(70_000, BINARY, masked=False))  # the header only
    with pytest.raises(ProtocolViolation, match="70000 bytes") as refused:
        reader.next()
    assert refused.value.close_code == 1009
    fragmented = FrameReader(max_message_bytes=10_000)
    with pytest.raises(ProtocolViolation, match="10001 bytes"):
        read_all(frame(b"x" * 6000, BINARY, fin=False) + framing.frame_header(4001, CONT, masked=False), 1 << 20,
                 fragmented)
    assert MAX_MESSAGE_BYTES == 4 * 1024 * 1024


def test_a_partial_frame_waits_for_the_rest():
    reader = FrameReader()
    wire = frame(b"x" * 300, BINARY)
    reader.feed(wire[:200])
    assert reader.next() is None and reader.buffered == 200
    reader.feed(wire[200:])
    assert reader.next() == (BINARY, b"x" * 300) and reader.buffered == 0


# ----------------------------------------------------------------------------- a real gateway


def test_a_connection_to_the_gateway_sends_the_header_and_answers_a_close(gateway_factory):
    gateway = gateway_factory("--fast-sink")
    session = protocol.ClientSession()
    connection = Connection(f"{gateway.url}/ws/audio", session)
    connection.open()
    assert connection.connect_ms > 0 and not connection.closed
    connection.ping(b"1234")
    connection.send_close(1000, "bye")
    events: list[object] = []
    deadline = time.monotonic() + 5
    while not connection.closed and time.monotonic() < deadline:
        events += connection.receive()
    assert connection.closed and connection.close_code == 1000 and connection.closed_cleanly
    assert session.closed


def test_one_voice_runs_a_turn_over_the_blocking_transport(gateway_factory):
    from audio_corpus import load_corpus
    from voiceharness.judge import Expectation
    from voiceharness.turn import StreamPlan, run_turn
    from voiceharness.turns import TurnContext

    gateway = gateway_factory("--fast-sink", "--fault-delay-ms", "40")
    (utterance,) = load_corpus(select="greeting_hello_jarvis_en-us_160")
    transport = BlockingTransport(f"{gateway.url}/ws/audio", protocol.ClientSession())
    try:
        plan = StreamPlan(utterance.frames(1024), utterance.speech_end_frame(1024), 1024)
        turn = run_turn(transport, plan, Expectation(intent="GREETING"), TurnContext(utterance_id=utterance.id))
    finally:
        transport.close()
    assert turn.ok, turn.record
    assert turn.record.gateway_response_ms >= 40  # the fast sink answers 40 ms after the end marker
    assert turn.record.client_tail_ms + turn.record.gateway_response_ms == pytest.approx(turn.roundtrip_ms, abs=0.01)
    assert transport.connection.closed_cleanly


@pytest.mark.parametrize("path, status, diagnosis, retryable", [
    ("/not-a-voice-path", 404, "connection_http_404", False),
])
def test_a_refused_upgrade_is_a_diagnosed_connection_failure(gateway_factory, path, status, diagnosis, retryable):
    gateway = gateway_factory("--fast-sink")
    with pytest.raises(ConnectionFailed) as failed:
        Connection(f"{gateway.url}{path}", protocol.ClientSession()).open()
    assert failed.value.diagnosis == diagnosis and failed.value.retryable is retryable
    assert f"HTTP {status}" in str(failed.value) and failed.value.elapsed_ms > 0


def test_a_refused_token_is_an_auth_failure_that_is_not_retried(gateway_factory):
    gateway = gateway_factory("--fast-sink", "--auth-token", "s3cret")
    with pytest.raises(ConnectionFailed) as failed:
        Connection(f"{gateway.url}/ws/audio", protocol.ClientSession(), auth_token="wrong").open()
    assert failed.value.diagnosis == "connection_auth" and not failed.value.retryable
    accepted = Connection(f"{gateway.url}/ws/audio", protocol.ClientSession(), auth_token="s3cret")
    accepted.open()
    accepted.lost(1000, "done")


def test_nothing_listening_is_connection_refused_and_a_bad_url_is_named():
    with pytest.raises(ConnectionFailed) as failed:
        Connection("ws://127.0.0.1:9/ws/audio", protocol.ClientSession(), ConnectOptions(connect_timeout_s=2)).open()
    assert failed.value.diagnosis == "connection_refused" and failed.value.retryable
    with pytest.raises(ConnectionFailed, match="not a WebSocket URL"):
        Connection("http://127.0.0.1:9/", protocol.ClientSession()).open()


def test_write_now_hands_a_frame_over_whole_or_writes_nothing_and_never_blocks(gateway_factory):
    gateway = gateway_factory("--fast-sink")
    connection = Connection(f"{gateway.url}/ws/audio", protocol.ClientSession())
    connection.open()
    ping = framing.client_frame(b"now", connection.mask_key, PING)
    assert connection.write_now(ping) == len(ping)
    assert not connection.send_lock.locked()  # a whole frame leaves the lock free
    connection.send_lock.acquire()  # another frame half written: not now, and not a blocking wait either
    try:
        assert connection.write_now(ping) == 0
    finally:
        connection.send_lock.release()
    connection.send_close(1000, "bye")
    deadline = time.monotonic() + 5
    while not connection.closed and time.monotonic() < deadline:
        connection.receive()
    assert connection.closed and connection.write_now(ping) == 0  # closed: the caller's blocking path says so
