"""A user's connection read and pinged from gevent's own loop: no greenlet per connection.

Under Locust every socket of a process is served by gevent's one event loop (libev). A greenlet
per connection blocked in ``recv`` costs, per message, a switch into it and back, and the loop's
interest in the socket turned on and off again; and it holds a greenlet's saved stack (about
8 KB) for the connection's whole life — as does a pinger greenlet asleep between pings. Here a
connection is instead two of the loop's watchers (gevent's public loop API:
``hub.loop.io(fd, READ)`` and ``hub.loop.timer(seconds)``) whose callbacks run in the loop itself:

* **readable** — one non-blocking ``os.read`` of what the socket holds, cut into frames, the
  session's events handed to the turn (:class:`voiceharness.turn.TransportEvents`). The loop must
  never block, so a frame that needs an answer written — a ping's pong, a close to echo, a
  protocol violation to close on — is handed to a greenlet that runs the connection's ordinary
  path (:meth:`Connection.release_held`, which may block on a full socket); reading pauses until
  it is done, so nothing is handled out of order.
* **ping** — every ping interval a ping (written at once when the socket takes it, else from a
  greenlet), and a link silent for twice the interval ends as a dead link (a cut cable sends no
  FIN). The timer is set for the next ping or for the moment the silence would reach two
  intervals, whichever is first, so a dead link is found at two intervals, not up to three.

A bug in the harness found in a callback ends the connection as the reader greenlet's would: the
turn in progress as ``harness_error``, the gateway told 1011 — never an exception in gevent's
loop, which would print it and carry on with the connection half-dead.

TLS sockets (only the SSL object may read its records) and shaped links (``--network``: their
own pump reads the socket) keep a reader greenlet (:meth:`Connection.read_forever`); they use
the ping timer all the same.
"""

from __future__ import annotations

import logging
import os
import time

import gevent

from voiceharness import framing, protocol
from voiceharness.connection import READ_BYTES, Connection
from voiceharness.protocol import Abandon
from voiceharness.turn import TransportEvents

__all__ = ["ConnectionWatch", "can_read_from_loop"]

log = logging.getLogger("voice.transport")

READ = 1  # libev's EV_READ


class ConnectionWatch:
    """The loop's watchers of one open connection: its reading (unless ``read=False``) and its pings."""

    __slots__ = ("_loop", "_ping_timer", "_reader", "_sender", "connection", "events", "fd", "next_ping", "ping_interval_s",
                 "stopped")

    def __init__(self, connection: Connection, events: TransportEvents, ping_interval_s: float, *, read: bool) -> None:
        self.connection = connection
        self.events = events
        self.ping_interval_s = ping_interval_s
        self._loop = gevent.get_hub().loop
        self.fd = connection.sock.fileno() if read else -1
        self._reader = self._loop.io(self.fd, READ) if read else None
        self._ping_timer = None
        self._sender: gevent.Greenlet | None = None  # writing a held frame's answer, or a ping
        self.next_ping = time.monotonic()  # the first ping goes out at once: a first turn has a latency too
        self.stopped = False

    def start(self) -> None:
        """Hand on what came with the upgrade's response, then watch the socket and the clock."""
        if self._reader is not None:
            connection = self.connection
            if connection.reader.buffered:  # on the opening greenlet, which may block to answer a ping
                self._deliver(connection.frames_received(time.monotonic()))
            if not self.stopped:
                self._reader.start(self._readable)
        self._arm_ping(0.0)

    def stop(self) -> None:
        """Stop both watchers (before the socket closes: the loop must not watch a closed descriptor)."""
        if self.stopped:
            return
        self.stopped = True
        if self._reader is not None:
            self._reader.stop()
            self._reader.close()
        if self._ping_timer is not None:
            self._ping_timer.stop()
            self._ping_timer.close()

    # -- reading, in the loop
    def _readable(self) -> None:
        connection = self.connection
        if self.stopped or connection.closed:
            return
        try:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                return  # woken with nothing to read after all
            except OSError as error:
                self._deliver(connection.lost(None, f"connection lost: {error or type(error).__name__}"))
                return
            if not data:
                self._deliver(connection.lost(None, "connection lost: the gateway closed the socket without a close frame"))
                return
            connection.reader.feed(data)
            self._deliver(connection.frames_received(time.monotonic(), hold_sends=True))
            if connection.held is not None and not connection.closed:
                self._reader.stop()  # resumed once the answer is written
                self._sender = gevent.spawn(self._release_held)
        except Exception as error:  # noqa: BLE001 — a harness bug must end this connection, not the loop
            self._harness_failed(error)

    def _release_held(self) -> None:
        """A greenlet's work: answer the held frame and any after it (it may block), then read on."""
        connection = self.connection
        try:
            self._deliver(connection.release_held(time.monotonic()))
        except Exception as error:  # noqa: BLE001
            self._harness_failed(error)
            return
        if not self.stopped and not connection.closed:
            self._reader.start(self._readable)

    def _deliver(self, events: list[object]) -> None:
        if events:
            self.events.deliver(events)

    def _harness_failed(self, error: Exception) -> None:
        connection = self.connection
        log.error("the reader of connection %s failed (a harness bug)", connection.session.header.session_id,
                  exc_info=error)
        detail = f"harness reader failed: {type(error).__name__}: {error}"
        self.stop()

        def end() -> None:  # the 1011 is written from a greenlet: the loop must not block
            connection.send_close(protocol.CLOSE_INTERNAL_ERROR, "harness error")
            self._deliver(connection.lost(None, detail, abandon=(Abandon.HARNESS_ERROR, detail)))

        gevent.spawn(end)

    # -- pinging, in the loop
    def _arm_ping(self, seconds: float) -> None:
        if self.stopped:
            return
        if self._ping_timer is not None:
            self._ping_timer.close()
        self._ping_timer = self._loop.timer(max(0.0, seconds))
        self._ping_timer.start(self._ping_due)

    def _ping_due(self) -> None:
        connection = self.connection
        if self.stopped or connection.closed:
            return
        try:
            interval = self.ping_interval_s
            now = time.monotonic()
            silent_s = connection.session.link_silent_for(now)
            if silent_s > 2 * interval:
                detail = f"dead link: nothing received for {silent_s:.1f} s"
                self._deliver(connection.lost(None, detail, abandon=(Abandon.DEAD_LINK, detail)))
                return
            if now >= self.next_ping:
                self.next_ping = now + interval
                self._send_ping(connection.session.ping_payload(now))
            self._arm_ping(max(0.01, min(self.next_ping, now + 2 * interval - silent_s + 0.005) - now))
        except Exception as error:  # noqa: BLE001
            self._harness_failed(error)

    def _send_ping(self, payload: bytes) -> None:
        """Write the ping now if the socket takes it whole, else from a greenlet (a send stuck on a
        full socket must not stop the loop, nor this timer from seeing the silence)."""
        if self._sender is not None and not self._sender.dead:
            return  # the last one is still being written
        connection = self.connection
        frame = framing.client_frame(payload, connection.mask_key, framing.OPCODE_PING)
        try:
            written = connection.write_now(frame)
        except OSError:
            return  # the reader sees the broken socket and reports it
        if written == len(frame):
            return
        # (On a shaped link write_now writes nothing: its own sender writes, send_frame does not block there.)
        self._sender = gevent.spawn(_write_rest, connection, frame, written)


def _write_rest(connection: Connection, frame: bytes, written: int) -> None:
    try:
        connection.send_frame(frame, already_written=written, lock_held=written > 0, control=True)
    except (OSError, ConnectionError):
        pass  # the reader sees the broken socket and reports it


def can_read_from_loop(connection: Connection) -> bool:
    """A plain TCP socket of the harness's own Connection (not TLS, not a shaped link)."""
    return type(connection) is Connection and connection.direct_write_target()[0] >= 0

