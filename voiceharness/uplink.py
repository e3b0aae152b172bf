"""Uplink backlog: how much of an utterance had not left the machine when the harness finished sending it.

Send lateness (:mod:`voiceharness.lateness`) says whether the harness handed each frame to the
socket on time. It cannot see a link slower than real-time audio: the kernel's send buffer
(autotuned up to megabytes) takes a whole utterance at once, every frame is "sent" on time,
and the audio trickles out behind the harness's back. The roundtrip then silently includes
that queue.

So at the end of each utterance the harness asks the kernel how many bytes of the socket's
send queue are still *unsent* (``SIOCOUTQNSD``: bytes not yet handed to the network, unlike
``SIOCOUTQ`` which also counts bytes sent but not yet acknowledged — those are the link's
delay, not a backlog) and turns them into milliseconds of real-time audio. On a link that
keeps up it is 0; on a 200 kbit/s link under 256 kbit/s of PCM16 it grows with the utterance.
It is a lower bound on what the backlog adds to the roundtrip: a link slower than real time
drains N ms of audio in more than N ms (measured: 524 ms of audio queued, roundtrip +2.1 s
over tc tbf 200 kbit/s, whose drops cut TCP's rate further).
"""

from __future__ import annotations

import array
import fcntl
import math
import socket

from voiceharness import framing

# linux/sockios.h: SIOCOUTQNSD, "output queue size (not sent only)", Linux 2.6.39+.
SIOCOUTQNSD = 0x894B

SAMPLE_RATE_HZ = 16000
BYTES_PER_SAMPLE = 2
MASK_KEY_BYTES = 4  # every client frame carries one after its header


def unsent_bytes(sock: socket.socket) -> int | None:
    """Bytes in ``sock``'s kernel send queue not yet sent on the network; None if unknowable.

    Works on a TLS socket too (it asks the TCP socket underneath; the bytes are then TLS
    records, a few percent more than the audio). None when the socket is closed or the
    platform has no ``SIOCOUTQNSD``.
    """
    try:
        fd = sock.fileno()
        if fd < 0:
            return None
        value = array.array("i", [0])
        fcntl.ioctl(fd, SIOCOUTQNSD, value, True)
    except (OSError, ValueError):
        return None
    return int(value[0])


def backlog_ms(unsent: int | None, chunk_samples: int) -> float:
    """``unsent`` bytes of a stream of ``chunk_samples``-sample WebSocket audio frames, as ms of audio.

    Counts the frames' WebSocket headers as wire bytes, so a backlog of N whole frames is
    exactly N frame durations. NaN when ``unsent`` is None.
    """
    if unsent is None:
        return math.nan
    payload_bytes = chunk_samples * BYTES_PER_SAMPLE
    wire_bytes = payload_bytes + len(framing.frame_header(payload_bytes)) + MASK_KEY_BYTES
    frame_ms = chunk_samples / SAMPLE_RATE_HZ * 1000
    return unsent / wire_bytes * frame_ms
