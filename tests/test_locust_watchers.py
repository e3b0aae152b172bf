"""voiceharness.locust.watchers: a connection read and pinged from gevent's loop, with no greenlet
of its own — every frame handled, in order, the answers a gateway is owed written, and every way
a connection ends reported as the reader greenlet reported it.

Runs in a process gevent patched first (tests/gevent_process.py). Each user's connection is one
end of a socket pair; the test plays the gateway on the other end.
"""

from __future__ import annotations

import socket
import time

import gevent
import pytest

from voiceharness import framing, protocol
from voiceharness.connection import ConnectOptions
from voiceharness.locust.transport import Pacer, VoiceConnection
from voiceharness.protocol import Abandon
from voiceharness.settings import Settings
from voiceharness.turn import TurnMeter

pytestmark = pytest.mark.gevent


def _server_frame(message: bytes | str, opcode: int | None = None) -> bytes:
    """One unmasked frame as a gateway sends it."""
    payload = message.encode() if isinstance(message, str) else message
    if opcode is None:
        opcode = 0x1 if isinstance(message, str) else 0x2
    if len(payload) < 126:
        return bytes([0x80 | opcode, len(payload)]) + payload
    return bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload


def _client_frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        opcode, _fin, length, key, header = framing.parse_frame_header(data)
        out.append((opcode, framing.mask(data[header : header + length], key)))
        data = data[header + length :]
    return out


class Gatewayed:
    """A VoiceConnection on one end of a socket pair, read from gevent's loop; ``peer`` is the gateway."""

    def __init__(self, *, ping_interval_s: float = 30.0, on_event=None) -> None:
        mine, self.peer = socket.socketpair()
        self.session = protocol.ClientSession(reply_timeout_s=10.0)
        self.seen: list[object] = []

        def record(event: object) -> None:
            self.seen.append(event)
            if on_event is not None:
                on_event(event)

        self.voice = VoiceConnection(Settings(host="127.0.0.1", port=9), ConnectOptions(ping_interval_s=ping_interval_s),
                                     self.session, record, pacer=Pacer())
        self.voice.connection.sock = mine
        self.voice.events.meter = TurnMeter()
        self.voice.start_reading()
        self.sent = b""

    def read_sent(self, wait_s: float = 0.1) -> list[tuple[int, bytes]]:
        """What the client wrote so far (frames, unmasked)."""
        gevent.sleep(wait_s)
        self.peer.setblocking(False)
        try:
            while True:
                data = self.peer.recv(1 << 16)
                if not data:
                    break
                self.sent += data
        except BlockingIOError:
            pass
        self.peer.setblocking(True)
        return _client_frames(self.sent)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.seen]


# What a turn sees of _a_reply() (the turn itself ends when its microphone has ended too).
REPLY = ["ReplyMetadata", "ReplyAudio", "ReplyAudio", "ReplyEnded"]


def _a_reply() -> bytes:
    return b"".join(_server_frame(message) for message in protocol.reply_messages(
        intent="GREETING", confidence=1, transcript="", slots={}, reply_text="", audio_pcm=b"\x10\x00" * 800,
        chunk_bytes=800))


def test_a_reply_read_from_the_loop_reaches_the_turn_whole_and_in_order_with_no_reader_greenlet():
    gatewayed = Gatewayed()
    assert not gatewayed.voice._greenlets  # read by a watcher: no greenlet for this connection
    gatewayed.read_sent()  # the first ping
    gatewayed.session.begin_turn(time.monotonic())
    gatewayed.session.speech_ended(time.monotonic())
    gatewayed.peer.sendall(_a_reply())
    gatewayed.voice.wait(time.monotonic() + 2.0)
    gevent.sleep(0.05)
    assert gatewayed.kinds() == REPLY
    gatewayed.voice.close()
    assert gatewayed.read_sent()[-1][0] == framing.OPCODE_CLOSE


def test_a_gateway_ping_amid_a_reply_is_answered_and_the_messages_after_it_still_arrive_in_order():
    gatewayed = Gatewayed()
    gatewayed.read_sent()
    gatewayed.session.begin_turn(time.monotonic())
    gatewayed.session.speech_ended(time.monotonic())
    reply = _a_reply()
    assert reply[1] < 126
    metadata_end = 2 + reply[1]  # the metadata's frame: a short one
    # metadata, then two pings (each needs an answer written), then the rest, in ONE write
    gatewayed.peer.sendall(reply[:metadata_end] + _server_frame(b"p1", 0x9) + _server_frame(b"p2", 0x9)
                           + reply[metadata_end:])
    gatewayed.voice.wait(time.monotonic() + 2.0)
    gevent.sleep(0.05)
    assert gatewayed.kinds() == REPLY
    pongs = [payload for opcode, payload in gatewayed.read_sent() if opcode == framing.OPCODE_PONG]
    assert pongs == [b"p1", b"p2"]
    # and reading went on after them: a later message still arrives
    gatewayed.peer.sendall(_server_frame(b'{"type":"event","x":1}'))
    gevent.sleep(0.05)
    assert not gatewayed.voice.is_closed
    gatewayed.voice.close()


def test_a_close_from_the_gateway_is_echoed_with_its_code_and_ends_the_connection():
    gatewayed = Gatewayed()
    gatewayed.read_sent()
    gatewayed.peer.sendall(_server_frame((4001).to_bytes(2, "big") + b"going away", 0x8))
    gevent.sleep(0.1)
    assert gatewayed.voice.is_closed
    assert (gatewayed.voice.close_code, gatewayed.voice.close_reason) == (4001, "going away")
    closes = [payload for opcode, payload in gatewayed.read_sent(0) if opcode == framing.OPCODE_CLOSE]
    assert closes and closes[0][:2] == (4001).to_bytes(2, "big")


def test_a_protocol_violation_closes_with_1002_and_the_turn_ends_as_gateway_protocol():
    gatewayed = Gatewayed()
    gatewayed.read_sent()
    gatewayed.session.begin_turn(time.monotonic())
    gatewayed.session.speech_ended(time.monotonic())
    gatewayed.peer.sendall(bytes([0x82, 0x80 | 2]) + b"\x00\x00\x00\x00ab")  # a masked frame from the server
    gevent.sleep(0.1)
    ended = [event for event in gatewayed.seen if isinstance(event, protocol.TurnEnded)]
    assert len(ended) == 1 and ended[0].abandoned is Abandon.GATEWAY_PROTOCOL
    assert gatewayed.voice.close_code == 1002
    closes = [payload for opcode, payload in gatewayed.read_sent(0) if opcode == framing.OPCODE_CLOSE]
    assert closes and closes[0][:2] == (1002).to_bytes(2, "big")


def test_the_gateway_closing_the_socket_without_a_close_frame_ends_the_turn_as_a_drop():
    gatewayed = Gatewayed()
    gatewayed.read_sent()
    gatewayed.session.begin_turn(time.monotonic())
    gatewayed.peer.close()
    gevent.sleep(0.1)
    assert gatewayed.voice.is_closed
    assert "without a close frame" in gatewayed.voice.close_reason
    assert [event.ended_by for event in gatewayed.seen if isinstance(event, protocol.TurnEnded)] == ["connection_lost"]


def test_pings_go_out_every_interval_and_a_pong_is_measured():
    gatewayed = Gatewayed(ping_interval_s=0.2)
    first = gatewayed.read_sent(0.05)
    assert [opcode for opcode, _ in first] == [framing.OPCODE_PING]  # at once
    gatewayed.peer.sendall(_server_frame(first[0][1], 0xA))  # its pong
    gevent.sleep(0.3)
    pings = [event for event in gatewayed.seen if isinstance(event, protocol.PingMeasured)]
    assert len(pings) == 1 and 0 <= pings[0].ping_ms < 1000
    assert [opcode for opcode, _ in gatewayed.read_sent(0)].count(framing.OPCODE_PING) == 2  # the next, 0.2 s on
    gatewayed.voice.close()


def test_a_silent_link_ends_as_a_dead_link_after_two_ping_intervals():
    gatewayed = Gatewayed(ping_interval_s=0.1)
    gatewayed.peer.sendall(_server_frame(b'{"type":"event"}'))  # something arrived once; then silence
    gevent.sleep(0.02)
    gatewayed.session.begin_turn(time.monotonic())
    started = time.monotonic()
    while not gatewayed.voice.is_closed and time.monotonic() - started < 2.0:
        gevent.sleep(0.01)
    assert gatewayed.voice.is_closed
    assert gatewayed.voice.close_reason.startswith("dead link")
    ended = [event for event in gatewayed.seen if isinstance(event, protocol.TurnEnded)]
    assert len(ended) == 1 and ended[0].abandoned is Abandon.DEAD_LINK


def test_a_harness_bug_in_a_callback_ends_that_connection_as_harness_error_and_the_loop_serves_the_others():
    def broken(event: object) -> None:
        if type(event).__name__ == "ReplyMetadata":
            raise LookupError("a bug")

    faulty, healthy = Gatewayed(on_event=broken), Gatewayed()
    for gatewayed in (faulty, healthy):
        gatewayed.read_sent()
        gatewayed.session.begin_turn(time.monotonic())
        gatewayed.session.speech_ended(time.monotonic())
        gatewayed.peer.sendall(_a_reply())
    gevent.sleep(0.2)
    ended = [event for event in faulty.seen if isinstance(event, protocol.TurnEnded)]
    assert len(ended) == 1 and ended[0].abandoned is Abandon.HARNESS_ERROR
    closes = [payload for opcode, payload in faulty.read_sent(0) if opcode == framing.OPCODE_CLOSE]
    assert closes and closes[0][:2] == (1011).to_bytes(2, "big")
    assert healthy.kinds() == REPLY
    healthy.voice.close()
