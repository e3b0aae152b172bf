"""The Locust layer's transport: each user's WebSocket under gevent, and the pacer that sends
every stream of a process.

All protocol decisions live in :class:`voiceharness.protocol.ClientSession`, the turn's course
in :func:`voiceharness.turn.run_turn`, the WebSocket itself in
:class:`voiceharness.connection.Connection`; this module only runs them in greenlets:

* :class:`VoiceConnection` — one user's connection. It is read and pinged from gevent's own
  loop (:mod:`voiceharness.locust.watchers`: the session's events handed to the turn as bytes
  arrive, pings answered, a close echoed, a WebSocket violation closed with its code; a ping
  every interval, and a dead link — nothing received, pongs included, for twice the ping
  interval — noticed without waiting for TCP), with no greenlet of its own; a TLS or shaped
  connection keeps a reader greenlet (:meth:`Connection.read_forever`).
* :class:`Pacer` — ONE greenlet per process (``environment.voice.pacer``) keeps a timing wheel
  — a slot per 2 ms tick, each stream in the slot of its next frame's due time — and once per
  tick writes one frame of every stream in the slots that are over: an ``os.write`` of a frame
  built ahead of time (:mod:`voiceharness.framing`: the corpus is framed and masked once per
  process and every user sends the same bytes) on the socket's descriptor, non-blocking, when
  no ping or pong holds the connection's send lock. No heap, no per-frame call into the
  connection or the statistics: this loop is where a load generator's CPU goes (bench/NOTES.md).
  The user greenlet that owns a stream waits until it has been sent — and, for a turn's stream
  (``Microphone.close_at_stream_end``), until the turn is over: the pacer also writes the end
  marker and closes the microphone when the stream ends, so the user is woken once a turn.

The frame holding the last speech sample tells the session its time (``session.speech_ended``:
every reply timing counts from it), and each stream keeps its latest frame's lateness. Past
the speech, the turn's :class:`~voiceharness.turn.Microphone` decides before each frame whether
the microphone still sends. A stream whose socket is full (a slow or stalled gateway) is not
allowed to stall the others: it leaves the pacer and finishes on its own greenlet with blocking
writes and its own timer, its lateness recorded as it happens.

The pacer also keeps the process's send-lateness statistics (a 0.1 ms histogram per second of
the run: :class:`voiceharness.lateness.LatenessStats`). At the end of a run it logs p50/p99/max
and warns when the load generator could not keep up; with ``VOICE_PACER_STATS=PATH`` in the
environment it also writes them as JSON (the benchmarks in ``bench/`` read that file).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

import gevent
import gevent.event

from voiceharness import framing, protocol, uplink
from voiceharness.connection import READ_BYTES, Connection, ConnectOptions
from voiceharness.lateness import BINS, LatenessStats
from voiceharness.locust import watchers
from voiceharness.locust.collector import Collector
from voiceharness.network import NetworkProfile
from voiceharness.settings import Settings
from voiceharness.turn import Microphone, StreamPlan, StreamReport, TransportEvents

__all__ = ["ConnectOptions", "Pacer", "ShapedConnection", "VoiceConnection"]

log = logging.getLogger("voice.transport")

STATS_ENV = "VOICE_PACER_STATS"
# Past this p99 send lateness the load generator did not keep up; its numbers are suspect.
SATURATED_LATENESS_P99_MS = 5.0
# Frames written before the pacer yields once, so readers (reply timestamps) are not starved.
MAX_BATCH = 128
# The pacer wakes once per tick and sends every frame that fell due in the tick before. Each
# wake-up costs a context switch, a timer and two greenlet switches whatever the number of frames
# due, so at a few hundred streams the tick sets the pacer's cost; 2 ms keeps the median send
# lateness near 1 ms (bench/NOTES.md).
TICK_S = 0.002
# The timing wheel: one slot per tick, far enough ahead for the longest frame period (16 x 1024
# samples = 1.024 s); a stream sits in the slot of its next frame's due time.
SLOTS = 1024


# ----------------------------------------------------------------------------- one user's connection


class VoiceConnection:
    """One open WebSocket to the gateway with its session: the Locust client's transport.

    Implements :class:`voiceharness.turn.Transport`. The connection's watchers (its reading and
    pinging, :mod:`.watchers`) and the pacer hand the session's
    events straight to :attr:`events` (the turn's meter folds them; ``events.on_event`` sees
    every one, e.g. ``PingMeasured``), which wakes a turn that waits. Real-time audio goes out
    through the process's pacer; fast-paced audio from the calling greenlet.
    """

    def __init__(self, settings: Settings, options: ConnectOptions, session: protocol.ClientSession,
                 on_event: Callable[[object], None] | None = None, *, pacer: Pacer | None = None,
                 network: NetworkProfile | None = None, network_seed: str = "") -> None:
        self.settings = settings
        self.options = options
        self.session = session
        self._activity = gevent.event.Event()
        self.events = TransportEvents(on_event, wake=self._on_events)
        self.parked: _Stream | None = None  # a stream the pacer ended, its user asleep until the turn moves
        self.network = network  # None: the machine's own link, and the pacer's path
        if network is None:
            self.connection = Connection(settings.url, session, options, auth_token=settings.auth_token or None)
        else:
            self.connection = ShapedConnection(settings.url, session, options, auth_token=settings.auth_token or None,
                                               profile=network, seed=network_seed)
        self._greenlets: list[gevent.Greenlet] = []  # a TLS or shaped connection's reader
        self._watch: watchers.ConnectionWatch | None = None
        self.pacer = pacer if pacer is not None else Pacer()  # a connection of its own (tests, tools)

    @property
    def connect_ms(self) -> float:
        return self.connection.connect_ms

    @property
    def closed_at(self) -> float:
        return self.connection.closed_at

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    @property
    def close_reason(self) -> str:
        return self.connection.close_reason

    @property
    def closed_cleanly(self) -> bool:
        return self.connection.closed_cleanly

    @property
    def is_closed(self) -> bool:
        return self.connection.closed

    @property
    def is_open(self) -> bool:
        return self.connection.sock is not None and not self.connection.closed

    # -- opening
    def open(self) -> None:
        """Connect, send the header, start reading and pinging. Raises ConnectionFailed.

        A plain TCP connection is read and pinged from gevent's loop (:mod:`.watchers`: no
        greenlet of its own); a TLS or shaped one keeps a reader greenlet."""
        self.connection.open()
        self.start_reading()

    def start_reading(self) -> None:
        """Start reading and pinging the open socket (:meth:`open` does)."""
        connection = self.connection
        read_in_loop = watchers.can_read_from_loop(connection)
        self._watch = watchers.ConnectionWatch(connection, self.events, self.options.ping_interval_s, read=read_in_loop)
        connection.before_socket_close = self._before_socket_close
        if not read_in_loop:
            self._greenlets = [gevent.spawn(connection.read_forever, self.events.deliver)]
        self._watch.start()

    def _before_socket_close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self._stop_greenlets()

    # -- the turn driver's transport
    def stream(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        """Send one turn's audio (see :class:`voiceharness.turn.StreamPlan`); raises ConnectionError."""
        if plan.pace == "fast":
            return self._stream_fast(plan, microphone)
        if self.network is not None:
            return self._stream_shaped(plan, microphone)
        return self.pacer.stream(self, plan, microphone)

    def _stream_shaped(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        """Real-time pace on a shaped link: frame k is handed to the link at start + k * frame length
        (the microphone's pace, as the pacer's), from this user's greenlet: the link queues what it
        cannot carry yet (:class:`ShapedConnection`), so the pacer's one-write-per-frame path is
        left to the connections that are not shaped."""
        session = self.session
        connection = self.connection
        frames = self.pacer.frames_for(plan)
        silence = self.pacer.silence_frame(plan.chunk_samples)
        clock = time.monotonic
        stats = self.pacer.stats  # the process's send lateness counts the shaped streams' hand-overs too
        start = clock()
        connection.uplink.reset_backlog_max(start)
        late_max_s = 0.0
        sent = 0
        # The microphone is asked for frame k at its due time (after the sleep), as the pacer asks
        # it: the stream ends, and the end marker goes, one frame length after the last frame.
        for index, frame in microphone.frames(plan, frames, silence, clock):
            due = start + index * plan.frame_s
            connection.send_frame(frame)
            now = clock()
            late_max_s = max(late_max_s, now - due)
            stats.add(now, now - due)
            if index == plan.speech_end_frame:
                session.speech_ended(now)
            sent += 1
            wait = due + plan.frame_s - clock()
            if wait > 0:
                gevent.sleep(wait)
        return StreamReport(sent, late_max_s * 1000.0,
                            uplink_backlog_max_ms=uplink.backlog_ms(connection.uplink.backlog_max_bytes,
                                                                    plan.chunk_samples))

    def _stream_fast(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        """As fast as the socket takes it: the speech, then the trailing silence; an open
        microphone then goes on at real-time pace until the reply is over."""
        session = self.session
        frames = self.pacer.frames_for(plan)
        silence = self.pacer.silence_frame(plan.chunk_samples)
        clock = time.monotonic
        sent = 0
        for index, frame in microphone.frames(plan, frames, silence, clock):
            if index >= len(frames):
                gevent.sleep(plan.frame_s)  # the open microphone's silence goes at real-time pace
            elif index % 16 == 15:
                gevent.sleep(0)  # let the readers run
            self.connection.send_frame(frame)
            sent += 1
            if index == plan.speech_end_frame:
                session.speech_ended(clock())
        return StreamReport(sent)

    def send_text(self, text: str) -> None:
        """A text message (the end marker), framed once per process."""
        self.connection.send_frame(self.pacer.preframer.text(text))

    def send_preframed(self, frame: bytes) -> None:
        """One frame built ahead of time (a pause's silence outside a turn)."""
        self.connection.send_frame(frame)

    def last_sent_at(self) -> float:
        return self.connection.last_sent_at

    def unsent_bytes(self) -> int | None:
        return self.connection.unsent_bytes()

    def _on_events(self) -> None:
        """The session produced events: wake a turn that waits in :meth:`wait`; a turn parked by the
        pacer (its microphone closed there) only when it is over or its next deadline came nearer."""
        self._activity.set()
        parked = self.parked
        if parked is not None:
            parked.turn_moved()

    def wait(self, until: float) -> None:
        """Sleep until ``until`` (monotonic s) or until the session produced events, whichever is first."""
        timeout = until - time.monotonic()
        if timeout > 0 and not self._activity.is_set():
            self._activity.wait(timeout)
        self._activity.clear()

    def abort(self, reason: str) -> None:
        """End the connection now because sending failed (the turn in progress: recording_stopped)."""
        self.events.deliver(self.connection.lost(None, reason))

    def _stop_greenlets(self) -> None:
        current = gevent.getcurrent()
        for greenlet in self._greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)

    # -- closing
    def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "bye") -> None:
        """Close from our side; the turn in progress (if any) must be ended by the caller first.

        Only the connection's reader (its watcher in gevent's loop, or its reader greenlet) reads
        the socket, so we send the close frame and let the reader see the gateway's answer,
        waiting at most a second for it.
        """
        connection = self.connection
        if not connection.closed:
            connection.send_close(code, reason)
            deadline = time.monotonic() + 1.0
            while not connection.closed and time.monotonic() < deadline:
                self.wait(deadline)
        self.events.deliver(connection.lost(code, reason))
        self._stop_greenlets()


# ----------------------------------------------------------------------------- a shaped link

# A shaped downlink delivers what the socket read in pieces of this size (a TCP segment's payload
# on a 1,500-byte MTU), each when the emulated link has carried it.
SEGMENT_BYTES = 1448


class ShapedConnection(Connection):
    """A :class:`~voiceharness.connection.Connection` whose bytes cross an emulated link in both
    directions (:mod:`voiceharness.network`, the ``--network`` profiles), without root.

    * **Uplink**: :meth:`send_frame` hands a frame to the uplink :class:`~voiceharness.network.Link`
      and returns at once — as a real client's application hands audio to its modem. The moment
      is the frame's ``last_sent_at`` (and the end of speech is stamped then): the roundtrip is
      what the user on that link experiences, the link's backlog and delay included. A *sender*
      greenlet writes each frame to the socket at its delivery time, in order; nothing is dropped.
    * **Downlink**: a *pump* greenlet reads the socket as bytes arrive and queues them with their
      delivery time on the downlink link; :meth:`receive` (the reader greenlet's) hands them to
      the frame reader and the session at that time, in order. Pings and pongs cross both links,
      so the ping shows the profile's roundtrip.
    * The opening handshake (TCP, the WebSocket upgrade) is not shaped: ``connect_ms`` is the
      machine's own.

    :meth:`unsent_bytes` adds the uplink link's backlog (bytes not yet left it) to the kernel's.
    """

    def __init__(self, *args, profile: NetworkProfile, seed: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.profile = profile
        self.uplink, self.downlink = profile.links(seed)
        self._outbox: collections.deque[tuple[float, bytes]] = collections.deque()  # (delivery, frame)
        self._outbox_ready = gevent.event.Event()
        self._inbox: collections.deque[tuple[float, bytes | OSError]] = collections.deque()  # (delivery, data)
        self._inbox_ready = gevent.event.Event()
        self._send_error: OSError | None = None
        self._link_greenlets: list[gevent.Greenlet] = []
        self._pumped_after_open = False

    def open(self, *, send_header: bool = True) -> None:
        super().open(send_header=send_header)  # the header waits in the outbox for the sender
        self.start_link()

    def start_link(self) -> None:
        """Start the link's sender and pump on the open socket (:meth:`open` does)."""
        self._link_greenlets = [gevent.spawn(self._send_loop), gevent.spawn(self._pump_loop)]

    # -- uplink
    def send_frame(self, frame: bytes | memoryview, *, already_written: int = 0, lock_held: bool = False,
                   control: bool = False) -> None:
        """Hand one frame to the uplink link (never blocks). Raises ConnectionError when closed."""
        assert not already_written and not lock_held, "a shaped connection is never written by the pacer"
        if self.sock is None or self.closed:
            raise ConnectionError("connection closed")
        if self._send_error is not None:
            raise ConnectionError(f"send failed: {self._send_error}")
        now = time.monotonic()
        self._outbox.append((self.uplink.send(now, len(frame)), bytes(frame)))
        if not control:
            self.last_sent_at = now
        self._outbox_ready.set()

    def _send_loop(self) -> None:
        outbox, ready, clock = self._outbox, self._outbox_ready, time.monotonic
        while not self.closed:
            if not outbox:
                ready.clear()
                ready.wait()
                continue
            delivery, frame = outbox[0]
            wait = delivery - clock()
            if wait > 0:
                gevent.sleep(wait)
                continue
            outbox.popleft()
            try:
                # control=True: the write stamps nothing; the frame's hand-over was stamped in send_frame.
                Connection.send_frame(self, frame, control=True)
            except (OSError, ConnectionError) as error:  # the reader sees the socket fail and reports it
                self._send_error = error if isinstance(error, OSError) else OSError(str(error))
                return

    def direct_write_target(self):
        raise ConnectionError("a shaped connection is written by its link's sender, not the pacer")

    def unsent_bytes(self) -> int | None:
        kernel = super().unsent_bytes()
        return (kernel or 0) + self.uplink.backlog_bytes(time.monotonic())

    # -- downlink
    def _pump_loop(self) -> None:
        sock, inbox, ready, clock, downlink = self.sock, self._inbox, self._inbox_ready, time.monotonic, self.downlink
        while sock is not None:
            try:
                data: bytes | OSError = sock.recv(READ_BYTES)
            except OSError as error:
                data = error
            now = clock()
            if not isinstance(data, bytes) or not data:
                # the end of the stream (or its failure) arrives after what came before it
                inbox.append((downlink.send(now, 0), data))
                ready.set()
                return
            # A read holds what the kernel had (a whole reply, maybe): cut into segments, each
            # delivered when the link has carried it, as a real link delivers them one by one (a
            # read delivered whole would hold its first message back until its last byte came).
            for offset in range(0, len(data), SEGMENT_BYTES):
                segment = data[offset : offset + SEGMENT_BYTES] if len(data) > SEGMENT_BYTES else data
                inbox.append((downlink.send(now, len(segment)), segment))
            ready.set()

    def receive(self) -> list[object]:
        if self.sock is None or self.closed:
            return []
        if self.reader.buffered and not self._pumped_after_open:  # what came with the upgrade's response
            self._pumped_after_open = True
            return self.frames_received(time.monotonic())
        self._pumped_after_open = True
        inbox, ready, clock = self._inbox, self._inbox_ready, time.monotonic
        while True:
            if self.closed:
                return []
            if not inbox:
                ready.clear()
                ready.wait()
                continue
            wait = inbox[0][0] - clock()
            if wait <= 0:
                break
            gevent.sleep(wait)
        now = clock()
        while inbox and inbox[0][0] <= now:  # every segment due, in order
            data = inbox[0][1]
            if isinstance(data, OSError) or not data:
                break
            inbox.popleft()
            self.reader.feed(data)
        else:
            return self.frames_received(now)
        events = self.frames_received(now)  # what came before the end, then the end
        if self.closed:
            return events
        inbox.popleft()
        if isinstance(data, OSError):
            return events + self.lost(None, f"connection lost: {data or type(data).__name__}")
        return events + self.lost(None, "connection lost: the gateway closed the socket without a close frame")

    def lost(self, code: int | None, reason: str, *,
             abandon: tuple[protocol.Abandon, str] | None = None) -> list[object]:
        events = super().lost(code, reason, abandon=abandon)
        current = gevent.getcurrent()
        for greenlet in self._link_greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)
        self._outbox_ready.set()
        self._inbox_ready.set()
        return events


# ----------------------------------------------------------------------------- the pacer


class _Stream:
    __slots__ = ("cancelled", "chunk_samples", "conn", "connection", "count", "counted", "deadline", "done", "due", "fd",
                 "frame_s", "frames", "index", "late_max_s", "lock", "microphone", "open_mic", "sent", "session",
                 "silence", "speech_end", "start", "timer")

    def __init__(self, connection: VoiceConnection, frames: Sequence[bytes], plan: StreamPlan, silence: bytes,
                 start: float, microphone: Microphone) -> None:
        self.connection = connection
        self.conn = connection.connection
        self.session = connection.session
        self.microphone = microphone
        self.frames = frames  # the utterance, then the plan's minimum trailing silence
        self.count = len(frames)
        self.speech_end = plan.speech_end_frame
        self.open_mic = microphone.open_mic  # then silence goes on past the frames while wanted
        self.silence = silence
        self.index = 0
        self.sent = 0
        self.start = start
        self.due = start
        self.frame_s = plan.frame_s
        self.late_max_s = 0.0
        # Where a frame is written without blocking: the socket's descriptor (-1 on TLS, whose
        # records only the SSL object may write) and the send lock a ping or pong would hold.
        self.fd, self.lock = self.conn.direct_write_target()
        self.chunk_samples = plan.chunk_samples
        self.done = gevent.event.AsyncResult()
        self.cancelled = False  # its user greenlet was killed (end of the run): drop it
        self.counted = True  # in the pacer's count of streams in progress (Pacer.active)
        self.deadline = math.inf  # parked: the session's next deadline when the pacer closed the microphone
        self.timer = None  # parked: gevent's loop timer for that deadline

    def report(self) -> StreamReport:
        """What the stream sent, and its latest frame's worst lateness."""
        return StreamReport(self.sent, self.late_max_s * 1000.0)

    # -- parked: the pacer closed the microphone; the user's greenlet sleeps on in Pacer.stream
    def park(self, now: float) -> None:
        """Keep the user's greenlet asleep until its turn is over, or until the session's next
        deadline (the reply's timeout, or a nearer one an event brings: the reply's gap)."""
        deadline = self.session.next_deadline()
        if deadline is None or not self.session.in_turn:
            self.done.set(None)
            return
        self.deadline = deadline
        self.timer = gevent.get_hub().loop.timer(max(0.0, deadline - now))
        self.timer.start(self.unpark)
        self.connection.parked = self

    def turn_moved(self) -> None:
        """Events came (the connection's wake): wake the user when its turn is over or the session's
        next deadline is nearer than the one the timer waits for (it runs the turn's wait from there)."""
        session = self.session
        if session.in_turn:
            deadline = session.next_deadline()
            if deadline is not None and deadline >= self.deadline:
                return
        self.unpark()

    def unpark(self) -> None:
        """Stop waiting for the turn here; wake the user's greenlet (once)."""
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.stop()
            timer.close()
        if self.connection.parked is self:
            self.connection.parked = None
        if not self.done.ready():
            self.done.set(None)

    def next_frame(self, now: float) -> bytes | None:
        """The frame to send now, or None when the stream is over: past the speech, the
        microphone decides (:class:`voiceharness.turn.Microphone`)."""
        index = self.index
        if index > self.speech_end:
            if not self.microphone.wants_audio(now):
                return None
            if index >= self.count:
                return self.silence if self.open_mic else None
        return self.frames[index]


class Pacer:
    """Sends the frames of every stream of this process at their due times, from one greenlet."""

    def __init__(self, preframer: framing.Preframer | None = None, *, collector: Collector | None = None) -> None:
        self.preframer = preframer or framing.Preframer()
        self.collector = collector  # its pauses are reported with the lateness they cause
        self.stats = LatenessStats()
        self._slots: list[list[_Stream]] = [[] for _ in range(SLOTS)]
        self._tick = 0  # the next tick to send: ticks before it are done
        self._streams = 0  # in the wheel
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self.active = 0
        self.slow_streams = 0  # streams that had to leave the pacer (socket full)
        self._keep_alive: list[object] = []  # frame tuples whose id() keys the cache

    # -- what users call
    def frames_for(self, plan: StreamPlan) -> tuple[bytes, ...]:
        """The pre-framed bytes of a plan's frames plus its minimum trailing silence.

        The speech is framed once per utterance (the plan's key, or the identity of its frame
        tuple, kept alive by the cache) and chunk size; the silence is one shared frame. The
        tuple joined here holds references only, so the bytes themselves exist once per process.
        """
        speech = self.speech_frames(plan)
        if not plan.min_silence_frames:
            return speech
        key = (plan.key if plan.key is not None else id(plan.frames), plan.chunk_samples, plan.min_silence_frames)
        return self.preframer.cached(key, lambda: speech + (self.silence_frame(plan.chunk_samples),) * plan.min_silence_frames)

    def speech_frames(self, plan: StreamPlan) -> tuple[bytes, ...]:
        key = plan.key if plan.key is not None else id(plan.frames)

        def build() -> tuple[bytes, ...]:
            if plan.key is None:
                self._keep_alive.append(plan.frames)
            return framing.preframe(plan.frames, self.preframer.mask_key)

        return self.preframer.cached((key, plan.chunk_samples), build)

    def preframe_speech(self, utterances, chunk_samples: int) -> None:
        """Frame these utterances' speech now, before any user starts."""
        for utterance in utterances:
            frames = utterance.frames(chunk_samples)
            self.speech_frames(StreamPlan(frames=frames, speech_end_frame=0, chunk_samples=chunk_samples,
                                          key=utterance))
        self.silence_frame(chunk_samples)

    def silence_frame(self, chunk_samples: int) -> bytes:
        return self.preframer.frame(("silence", chunk_samples), bytes(2 * chunk_samples))

    def stream(self, connection: VoiceConnection, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        """Send ``plan`` on ``connection``, frame k due at start + k * frame length; block until sent.

        Raises ConnectionError when the connection closed or a write failed.
        """
        frames = self.frames_for(plan)
        if not frames:
            return StreamReport(0)
        start = time.monotonic()
        stream = _Stream(connection, frames, plan, self.silence_frame(plan.chunk_samples), start, microphone)
        start_tick = int(start / TICK_S)
        if not self._streams:
            self._tick = start_tick  # the wheel was empty: it turns from here
        self._schedule(stream, start_tick)
        self._streams += 1
        self.active += 1
        self.stats.streams_max = max(self.stats.streams_max, self.active)
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        else:
            self._wake.set()
        try:
            stream.done.get()
        finally:
            if stream.counted:  # (a stream the pacer ended and parked was counted out there)
                self.active -= 1
            stream.cancelled = True  # no-op when done; else the pacer drops it at its next frame
            stream.unpark()  # the user was killed while parked: no timer, no wake-up left behind
        return stream.report()

    def _schedule(self, stream: _Stream, tick: int) -> None:
        """Put ``stream`` in the slot of ``tick``, or of the next tick to send when that one is past."""
        tick = max(tick, self._tick)
        self._slots[tick % SLOTS].append(stream)

    # -- the pacer greenlet
    def _run(self) -> None:
        clock = time.monotonic
        sleep = gevent.sleep
        wake = self._wake
        while True:
            if not self._streams:
                wake.clear()
                wake.wait()
                continue
            now = clock()
            # Send the ticks that are over: every frame in them is due (none goes out early).
            last = int(now / TICK_S) - 1
            sent = 0
            while self._tick <= last:
                tick = self._tick
                slot = self._slots[tick % SLOTS]
                if slot:
                    self._slots[tick % SLOTS] = []
                    sent += self._send_slot(slot, tick)
                self._tick = tick + 1
                if sent >= MAX_BATCH:
                    sleep(0)  # behind schedule: let readers run before the next batch
                    sent = 0
            wait = (self._tick + 1) * TICK_S - clock()
            sleep(max(0, wait))

    def _send_slot(self, streams: list[_Stream], tick: int) -> int:
        """Write one frame of each stream of a slot; reschedule each for its next frame. The hot
        path of the harness: one ``os.write`` on the socket per frame, the lateness booked inline."""
        clock = time.monotonic
        write = os.write
        stats = self.stats
        second, row = -1, None
        slots = self._slots
        sent_here = 0
        for stream in streams:
            if stream.cancelled:
                self._streams -= 1
                continue
            due = stream.due
            index = stream.index
            try:
                if index > stream.speech_end or index >= stream.count:
                    frame = stream.next_frame(clock())
                    if frame is None:
                        self._streams -= 1
                        self._end_stream(stream)
                        continue
                else:
                    frame = stream.frames[index]
                conn = stream.conn
                if conn.closed:
                    raise ConnectionError("connection closed")
                fd = stream.fd
                if fd < 0 or stream.lock.locked():
                    written = 0  # a TLS socket, or a ping or pong half written: the slow path
                else:
                    try:
                        written = write(fd, frame)
                    except BlockingIOError:
                        written = 0
                    except OSError as error:  # the peer reset it: the reader reports the drop
                        raise ConnectionError(f"send failed: {error}") from None
            except Exception as error:  # noqa: BLE001 — one stream ends (in its own user's greenlet), never the pacer
                self._streams -= 1
                stream.done.set_exception(error)
                continue
            if written != len(frame):
                if written:  # cut short: hold the socket until the rest is written
                    stream.lock.acquire(False)
                self._streams -= 1
                self.slow_streams += 1
                gevent.spawn(self._finish_slowly, stream, frame, due, written)
                continue
            now = clock()
            conn.last_sent_at = now
            late = now - due
            if late > stream.late_max_s:  # noqa: PLR1730 (once per frame: a compare is cheaper than max())
                stream.late_max_s = late
            if index == stream.speech_end:
                try:
                    stream.session.speech_ended(now)
                except Exception as error:  # noqa: BLE001 — a harness bug: its user's turn reports it
                    self._streams -= 1
                    stream.done.set_exception(error)
                    continue
            index += 1
            stream.index = index
            stream.sent += 1
            sent_here += 1
            # The lateness histogram of this second (LatenessStats.add, inline).
            if int(now) != second:
                second = int(now)
                row = stats.row_for(second)
            late_us = int(late * 1e6)
            bin_index = late_us // 100 if late_us > 0 else 0
            row[bin_index if bin_index < BINS else BINS - 1] += 1
            row[BINS] += 1
            if late_us > row[BINS + 1]:  # noqa: PLR1730
                row[BINS + 1] = late_us
            due = stream.start + index * stream.frame_s
            stream.due = due
            next_tick = int(due / TICK_S)
            # Pacer._schedule, inline: the next tick is always after this one, which is not past.
            slots[(next_tick if next_tick > tick else tick + 1) % SLOTS].append(stream)
        return sent_here

    def _end_stream(self, stream: _Stream) -> None:
        """The stream's last frame is out. When the end marker goes into the socket whole without
        blocking, close the microphone here and let the user's greenlet sleep on until its turn is
        over (one wake-up a turn instead of two: it has nothing to do in between); otherwise hand
        the stream back to it, and :func:`voiceharness.turn.run_turn` does both as it always did."""
        session = stream.session
        conn = stream.conn
        microphone = stream.microphone
        fd = stream.fd
        if not microphone.close_at_stream_end or not session.in_turn or conn.closed or fd < 0 or stream.lock.locked():
            stream.done.set(None)
            return
        try:
            backlog_ms = uplink.backlog_ms(conn.unsent_bytes(), stream.chunk_samples)
            marker = microphone.end_marker
            if marker is not None:
                frame = self.preframer.text(marker)
                handed_at = time.monotonic()  # stamped as handed over, as Connection.send_frame does
                try:
                    written = conn.write_now(frame)
                except OSError:  # broken: the user's greenlet sends it, and sees the error
                    written = 0
                if written != len(frame):
                    if written:  # cut short (the send lock held): finish it, then close, from a greenlet
                        gevent.spawn(self._end_slowly, stream, frame, written, backlog_ms)
                    else:
                        stream.done.set(None)
                    return
                conn.last_sent_at = handed_at
            now = time.monotonic()
            microphone.close(now, backlog_ms, stream.report())
        except Exception as error:  # noqa: BLE001 — a harness bug: its user's turn reports it
            stream.done.set_exception(error)
            return
        self.active -= 1  # no longer streaming (its user may still wait for the reply)
        stream.counted = False
        stream.park(now)

    @staticmethod
    def _end_slowly(stream: _Stream, frame: bytes, written: int, backlog_ms: float) -> None:
        """The end marker the socket took only in part: the rest with a blocking write, then the
        microphone closed, and the user's greenlet woken (its turn's wait runs from there)."""
        try:
            stream.conn.send_frame(frame, already_written=written, lock_held=True)
            stream.microphone.close(time.monotonic(), backlog_ms, stream.report())
        except Exception as error:  # noqa: BLE001 — handed to the stream's own user greenlet
            stream.done.set_exception(error)
            return
        stream.done.set(None)

    @staticmethod
    def _sent(stream: _Stream, now: float, due: float) -> None:
        """Book one frame handed to the socket (the slow path): the end of speech, the latest frame."""
        late = now - due
        if late > stream.late_max_s:  # noqa: PLR1730
            stream.late_max_s = late
        if stream.index == stream.speech_end:
            stream.session.speech_ended(now)
        stream.index += 1
        stream.sent += 1

    def _finish_slowly(self, stream: _Stream, frame: bytes, due: float, written: int) -> None:
        """A stream whose socket was full (or busy, or TLS): finish it here with blocking writes
        and its own timer."""
        conn = stream.conn
        clock = time.monotonic
        try:
            conn.send_frame(frame, already_written=written, lock_held=written > 0)
            now = clock()
            self._sent(stream, now, due)
            self.stats.add(now, now - due)
            while True:
                due = stream.start + stream.index * stream.frame_s
                wait = due - clock()
                if wait > 0:
                    gevent.sleep(wait)
                frame = stream.next_frame(clock())
                if frame is None:
                    break
                conn.send_frame(frame)
                now = clock()
                self._sent(stream, now, due)
                self.stats.add(now, now - due)
                if conn.closed:
                    raise ConnectionError("connection closed while streaming")
        except Exception as error:  # noqa: BLE001 — handed to the stream's own user greenlet
            stream.done.set_exception(error)
            return
        stream.done.set(None)

    # -- the end of the run
    def report(self, logger: logging.Logger | None = None) -> None:
        """Log the run's send lateness (a warning when the load generator could not keep up) and,
        with ``VOICE_PACER_STATS=PATH`` in the environment, write it as JSON for the benchmarks."""
        summary = self.stats.summary()
        if not summary["frames"]:
            return
        pauses = self.collector.pauses if self.collector is not None else None
        message = (f"pacer: {summary['frames']} frames sent, send lateness p50 {summary['p50_ms']:.1f} ms, "
                   f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms")
        if pauses is not None:
            message += f"; {pauses.count} collector pauses, longest {pauses.max_ms:.1f} ms"
        logger = logger or log
        if summary["p99_ms"] > SATURATED_LATENESS_P99_MS:
            logger.warning("%s: load generator saturated — server numbers not trustworthy", message)
        else:
            logger.info("%s", message)
        path = os.environ.get(STATS_ENV)
        if path:
            with open(path, "w", encoding="utf-8") as file:
                json.dump({**self.stats.to_json(), "slow_streams": self.slow_streams,
                           "preframed_bytes": self.preframer.cached_bytes,
                           "collector": pauses.to_json() if pauses is not None else {}}, file)
