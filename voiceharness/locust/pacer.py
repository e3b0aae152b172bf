"""The process-wide pacer: one greenlet sends every due audio frame of every streaming user.

The first harness paced each user with its own timer (one ``gevent.sleep`` per frame per
user) and framed and masked every frame in Python (websocket-client's ``send_binary``). At
a thousand real-time streams a worker spent its time waking greenlets and XORing bytes, and
its send lateness p99 passed 15 ms. Here:

* the corpus audio is framed once per process (:mod:`voiceharness.framing`, one mask key per
  process) and every user sends the same ready-made ``bytes``;
* ONE pacer greenlet per process keeps a timing wheel — a slot per 2 ms tick, each stream in
  the slot of its next frame's due time — and, once per tick, writes one frame of every stream
  in the slots that are over: an ``os.write`` on the socket's descriptor, non-blocking, when no
  ping or pong holds the connection's send lock (:meth:`VoiceConnection.direct_write_target`).
  No heap, no per-frame method call into the connection or the statistics: this loop is where
  a load generator's CPU goes (bench/NOTES.md);
* the user greenlet that owns a stream just waits on an ``AsyncResult`` until its stream has
  been sent, then closes the microphone and waits for the reply (:func:`voiceharness.turn.run_turn`).

The frame holding the last speech sample tells the session its time (``session.speech_ended``:
every reply timing counts from it), and each stream keeps its latest frame's lateness. Past
the speech, the session decides before each frame whether the microphone still sends: its
trailing silence stops when the reply's audio starts (``closed`` microphone) or goes on until
the reply is over (``open``, as the browser tester's). A stream whose socket is full (a slow or stalled
gateway) is not allowed to stall the others: it leaves the pacer and finishes on its own
greenlet with blocking writes and its own timer, its lateness recorded as it happens.

The pacer also keeps process-wide send-lateness statistics (a 0.1 ms histogram per second of
the run: :class:`voiceharness.lateness.LatenessStats`). At the end of a run it logs p50/p99/max and warns when the
load generator could not keep up; with ``VOICE_PACER_STATS=PATH`` in the environment it also
writes them as JSON (the benchmarks in ``bench/`` read that file).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence

import gevent
import gevent.event

from voiceharness import framing
from voiceharness.lateness import BINS, LatenessStats
from voiceharness.locust.collector import Collector
from voiceharness.turn import StreamPlan, StreamReport

log = logging.getLogger("voice.pacer")

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


class _Stream:
    __slots__ = ("cancelled", "connection", "count", "done", "due", "fd", "frame_s", "frames", "index",
                 "late_max_s", "lock", "open_mic", "sent", "session", "silence", "speech_end", "start")

    def __init__(self, connection, frames: Sequence[bytes], plan: StreamPlan, silence: bytes, start: float) -> None:
        self.connection = connection
        self.session = connection.session
        self.frames = frames  # the utterance, then the plan's minimum trailing silence
        self.count = len(frames)
        self.speech_end = plan.speech_end_frame
        self.open_mic = self.session.mic_stays_open  # then silence goes on past the frames while wanted
        self.silence = silence
        self.index = 0
        self.sent = 0
        self.start = start
        self.due = start
        self.frame_s = plan.frame_s
        self.late_max_s = 0.0
        # Where a frame is written without blocking: the socket's descriptor (-1 on TLS, whose
        # records only the SSL object may write) and the send lock a ping or pong would hold.
        self.fd, self.lock = connection.direct_write_target()
        self.done = gevent.event.AsyncResult()
        self.cancelled = False  # its user greenlet was killed (end of the run): drop it

    def next_frame(self, now: float) -> bytes | None:
        """The frame to send now, or None when the stream is over: past the speech, the session
        (its reply, its clock) decides whether the microphone still sends
        (the rule of :func:`voiceharness.turn.microphone`)."""
        index = self.index
        if index > self.speech_end:
            session = self.session
            self.connection.deliver(session.poll(now))
            if not session.wants_audio(now):
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
        tuple joined here holds references only, so the bytes themselves exist once per
        process — and once for all of Locust's ``--processes`` when framed before the fork
        (:func:`preframe_speech`).
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
        """Frame these utterances' speech now (before Locust forks its ``--processes``: shared pages)."""
        for utterance in utterances:
            frames = utterance.frames(chunk_samples)
            self.speech_frames(StreamPlan(frames=frames, speech_end_frame=0, chunk_samples=chunk_samples,
                                          key=utterance))
        self.silence_frame(chunk_samples)

    def silence_frame(self, chunk_samples: int) -> bytes:
        return self.preframer.frame(("silence", chunk_samples), bytes(2 * chunk_samples))

    def stream(self, connection, plan: StreamPlan) -> StreamReport:
        """Send ``plan`` on ``connection``, frame k due at start + k * frame length; block until sent.

        Raises ConnectionError when the connection closed or a write failed.
        """
        frames = self.frames_for(plan)
        if not frames:
            return StreamReport(0)
        start = time.monotonic()
        stream = _Stream(connection, frames, plan, self.silence_frame(plan.chunk_samples), start)
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
            self.active -= 1
            stream.cancelled = True  # no-op when done; else the pacer drops it at its next frame
        return StreamReport(stream.sent, stream.late_max_s * 1000.0)

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
        schedule = self._schedule
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
                        stream.done.set(None)
                        continue
                else:
                    frame = stream.frames[index]
                connection = stream.connection
                if connection.is_closed:
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
            schedule(stream, next_tick if next_tick > tick else tick + 1)
        return sent_here

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
        connection = stream.connection
        clock = time.monotonic
        try:
            connection.send_preframed(frame, already_written=written, lock_held=written > 0)
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
                connection.send_preframed(frame)
                now = clock()
                self._sent(stream, now, due)
                self.stats.add(now, now - due)
                if connection.is_closed:
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
