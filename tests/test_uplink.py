"""The uplink backlog figure, read from a real TCP socket's kernel send queue on loopback."""

from __future__ import annotations

import math
import socket
import time

import pytest

from voiceharness import uplink


@pytest.fixture
def stalled_pair():
    """A loopback TCP connection whose receiver reads nothing (small buffers fill fast)."""
    listener = socket.create_server(("127.0.0.1", 0))
    receiver_buffer = 16 * 1024
    sender = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sender.connect(listener.getsockname())
    receiver, _ = listener.accept()
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiver_buffer)
    listener.close()
    yield sender, receiver
    sender.close()
    receiver.close()


def _fill(sender: socket.socket) -> int:
    sender.setblocking(False)
    written = 0
    chunk = bytes(4096)
    try:
        while True:
            written += sender.send(chunk)
    except BlockingIOError:
        return written


def test_bytes_the_peer_cannot_take_stay_unsent_and_leave_when_it_reads(stalled_pair):
    sender, receiver = stalled_pair
    assert uplink.unsent_bytes(sender) == 0
    written = _fill(sender)
    time.sleep(0.05)
    queued = uplink.unsent_bytes(sender)
    # the receiver's window is full: what the sender wrote beyond it has not been sent
    assert queued is not None and 0 < queued < written, (queued, written)
    receiver.setblocking(True)
    received = 0
    deadline = time.monotonic() + 5
    while received < written and time.monotonic() < deadline:
        received += len(receiver.recv(65536))
    assert received == written
    assert uplink.unsent_bytes(sender) == 0


def test_a_closed_socket_has_no_figure():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    assert uplink.unsent_bytes(sock) is None
    assert math.isnan(uplink.backlog_ms(None, 1024))


def test_backlog_counts_whole_wire_frames_as_their_duration():
    # a 1024-sample frame is 2048 bytes of PCM16 plus a 4-byte header and a 4-byte mask key: 64 ms
    assert uplink.backlog_ms(5 * 2056, 1024) == pytest.approx(5 * 64.0)
    assert uplink.backlog_ms(3 * 648, 320) == pytest.approx(3 * 20.0)
    assert uplink.backlog_ms(0, 1024) == 0.0
