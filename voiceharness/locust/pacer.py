"""The process-wide pacer: one greenlet sends every due audio frame of every streaming user.

The first harness paced each user with its own timer (one ``gevent.sleep`` per frame per
user) and framed and masked every frame in Python (websocket-client's ``send_binary``). At
a thousand real-time streams a worker spent its time waking greenlets and XORing bytes, and
its send lateness p99 passed 15 ms. Here:

* the corpus audio is framed once per process (:mod:`voiceharness.framing`, one mask key per
  process) and every user sends the same ready-made ``bytes``;
* ONE pacer greenlet per process keeps a heap of ``[due time, order, stream]`` and, each time
  it wakes, writes every frame that is due, each with one non-blocking ``socket.send`` under
  the connection's send lock (:meth:`VoiceConnection.try_send_preframed`). A stream's heap
  entry is a list updated in place, not a new tuple per frame: CPython's collector counts
  allocations minus deallocations, so a new survivor per frame replacing an old object left
  its youngest generation growing to 50,000-70,000 objects between collections, each one a
  13-18 ms pause at 2,000 streams;
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

import heapq
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from itertools import count

import gevent
import gevent.event
from locust import events

from voiceharness import framing
from voiceharness.lateness import LatenessStats
from voiceharness.locust.collector import COLLECTOR
from voiceharness.turn import StreamPlan, StreamReport

log = logging.getLogger("voice.pacer")

STATS_ENV = "VOICE_PACER_STATS"
# Past this p99 send lateness the load generator did not keep up; its numbers are suspect.
SATURATED_LATENESS_P99_MS = 5.0
# Frames written before the pacer yields once, so readers (reply timestamps) are not starved.
MAX_BATCH = 128
# The pacer wakes at most once per tick. Each wake-up costs a context switch, a timer and two
# greenlet switches whatever the number of frames due, so at a few hundred streams the tick sets
# the pacer's cost: at N = 250, 1 ms -> 2 ms took frames per CPU-second from ~32k to ~35k, for
# +0.6 ms of median send lateness (p50 1.3 ms, p99 2.6 ms; bench/NOTES.md).
TICK_S = 0.002
# Waits up to this long are a plain sleep, not interruptible by a new stream (see Pacer._run).
SHORT_WAIT_S = 2 * TICK_S


class _Stream:
    __slots__ = ("cancelled", "connection", "count", "done", "frame_s", "frames", "index", "late_max_s",
                 "open_mic", "sent", "session", "silence", "speech_end", "start")

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
        self.frame_s = plan.frame_s
        self.late_max_s = 0.0
        self.done = gevent.event.AsyncResult()
        self.cancelled = False  # its user greenlet was killed (end of the run): drop it

    def next_frame(self, now: float) -> bytes | None:
        """The frame to send now, or None when the stream is over: past the speech, the session
        (its reply, its clock) decides whether the microphone still sends."""
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

    def __init__(self, preframer: framing.Preframer | None = None) -> None:
        self.preframer = preframer or framing.Preframer()
        self.stats = LatenessStats()
        self._heap: list[list] = []  # [due, order, stream], compared as lists: due, then order
        self._order = count()
        self._wake = gevent.event.Event()
        self._wake_at = math.inf
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
        heapq.heappush(self._heap, [start, next(self._order), stream])
        self.active += 1
        self.stats.streams_max = max(self.stats.streams_max, self.active)
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        elif start < self._wake_at:
            self._wake.set()
        try:
            stream.done.get()
        finally:
            self.active -= 1
            stream.cancelled = True  # no-op when done; else the pacer drops it at its next frame
        return StreamReport(stream.sent, stream.late_max_s * 1000.0)

    # -- the pacer greenlet
    def _run(self) -> None:
        heap = self._heap
        clock = time.monotonic
        wake = self._wake
        sleep = gevent.sleep
        next_tick = 0.0
        self._wake_at = -math.inf  # awake: stream() need not signal
        while True:
            if not heap:
                self._wake_at = math.inf
                wake.clear()
                wake.wait()
                self._wake_at = -math.inf
                continue
            now = clock()
            # Wake at most once a TICK_S: every wake-up costs a timer and two greenlet switches,
            # so frames due within a tick go out together (lateness < TICK_S from batching).
            wake_at = max(heap[0][0], next_tick)
            if wake_at > now:
                if wake_at - now <= SHORT_WAIT_S:
                    # A plain timer: Event.wait(timeout) ends by throwing a Timeout into this
                    # greenlet, which at one wake-up a tick was most of the pacer's own cost
                    # (N = 250: ~29k -> ~32k frames per CPU-second). A stream added meanwhile
                    # waits at most this long for its first frame.
                    sleep(wake_at - now)
                    continue
                self._wake_at = wake_at
                wake.clear()
                wake.wait(wake_at - now)
                self._wake_at = -math.inf
                continue
            next_tick = now + TICK_S
            self._send_due(now)
            if heap and heap[0][0] <= clock():
                gevent.sleep(0)  # behind schedule: let readers run before the next batch

    def _send_due(self, now: float) -> None:
        heap = self._heap
        clock = time.monotonic
        add = self.stats.add
        sent_here = 0
        while heap and sent_here < MAX_BATCH:
            entry = heap[0]
            due, _order, stream = entry
            if due > now:
                now = clock()
                if due > now:
                    return
            if stream.cancelled:
                heapq.heappop(heap)
                continue
            connection = stream.connection
            try:
                frame = stream.next_frame(now)
                if frame is None:
                    heapq.heappop(heap)
                    stream.done.set(None)
                    continue
                sent = connection.try_send_preframed(frame)
                if sent == len(frame):
                    now = clock()
                    self._sent(stream, now, due)
            except ConnectionError as error:  # one broken stream ends, never the pacer
                heapq.heappop(heap)
                stream.done.set_exception(error)
                continue
            except Exception as error:  # noqa: BLE001 — a harness bug: its user's turn reports it
                heapq.heappop(heap)
                stream.done.set_exception(error)
                continue
            if sent != len(frame):
                heapq.heappop(heap)
                self.slow_streams += 1
                gevent.spawn(self._finish_slowly, stream, frame, due, sent)
                continue
            add(now, now - due)
            sent_here += 1
            entry[0] = stream.start + stream.index * stream.frame_s
            heapq.heapreplace(heap, entry)

    @staticmethod
    def _sent(stream: _Stream, now: float, due: float) -> None:
        """Book one frame handed to the socket: the end of speech, the stream's latest frame."""
        late = now - due
        if late > stream.late_max_s:  # noqa: PLR1730 (once per frame: a compare is cheaper than max())
            stream.late_max_s = late
        if stream.index == stream.speech_end:
            stream.session.speech_ended(now)
        stream.index += 1
        stream.sent += 1

    def _finish_slowly(self, stream: _Stream, frame: bytes, due: float, sent: int) -> None:
        """A stream whose socket was full: finish it here with blocking writes and its own timer."""
        connection = stream.connection
        clock = time.monotonic
        try:
            if sent:
                connection.finish_preframed(frame, sent)
            else:
                connection.send_preframed(frame)
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
                if connection.closed.is_set():
                    raise ConnectionError("connection closed while streaming")
        except Exception as error:  # noqa: BLE001 — handed to the stream's own user greenlet
            stream.done.set_exception(error)
            return
        stream.done.set(None)


PACER = Pacer()


def _write_stats(path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump({**PACER.stats.to_json(), "slow_streams": PACER.slow_streams,
                   "preframed_bytes": PACER.preframer.cached_bytes,
                   "collector": COLLECTOR.pauses.to_json()}, file)


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    summary = PACER.stats.summary()
    if not summary["frames"]:
        return
    message = (f"pacer: {summary['frames']} frames sent, send lateness p50 {summary['p50_ms']:.1f} ms, "
               f"p99 {summary['p99_ms']:.1f} ms, max {summary['max_ms']:.1f} ms; "
               f"{COLLECTOR.pauses.count} collector pauses, longest {COLLECTOR.pauses.max_ms:.1f} ms")
    if summary["p99_ms"] > SATURATED_LATENESS_P99_MS:
        log.warning("%s: load generator saturated — server numbers not trustworthy", message)
    else:
        log.info("%s", message)
    path = os.environ.get(STATS_ENV)
    if path:
        _write_stats(path)
