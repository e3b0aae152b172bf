"""The fair asyncio baseline: the best asyncio design we know for N real-time voices in one process.

The harness's send path is one pacer and pre-framed, pre-masked bytes; comparing it with an
asyncio client that gives every stream its own timer and lets a WebSocket library frame and
mask every frame compares designs, not runtimes (issue 15 item 6). This client uses the same
design as the harness, in asyncio:

* the corpus framed and masked once per process (:class:`bench.baseline_stream.PreframedCorpus`);
* ONE scheduler for every stream: a heap of ``[due, order, stream]`` entries, run by a
  ``loop.call_at`` callback that wakes at most once per :data:`TICK_S` (the harness's 2 ms
  tick) and writes every due frame with ``transport.write`` (a ``send`` system call when the
  socket takes it); after :data:`MAX_BATCH` frames it yields so replies are read;
* the end marker when the last frame's audio is over (one frame period after that frame, as
  the harness's pacer ends a stream);
* each connection an ``asyncio.Protocol`` that parses the sink's replies (JSON metadata, reply
  audio, ``reply_end``), answers pings, times each turn's roundtrip and starts the next turn
  when ``reply_end`` arrives, and pings every 3 s (``loop.call_later``), as the harness does.

Send lateness goes into the same per-second histograms as the harness's pacer
(:mod:`voiceharness.lateness`).

    python -m bench.baseline_asyncio_fair --port 7099 --streams 2000 --duration-s 30 --ramp-s 5 --stats out.json
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import random
import time

from bench.baseline_stream import (
    FRAME_S,
    PING_INTERVAL_S,
    PreframedCorpus,
    StreamState,
    check_upgrade,
    turns_summary,
    upgrade_request,
)
from voiceharness import guide
from voiceharness.lateness import LatenessStats

TICK_S = 0.002  # the harness pacer's tick (voiceharness/locust/transport.py)
MAX_BATCH = 128  # frames written before yielding to the readers, as the harness's pacer


class Scheduler:
    """Sends every due frame of every stream from one ``call_at`` callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop, corpus: PreframedCorpus, stats: LatenessStats) -> None:
        self.loop = loop
        self.corpus = corpus
        self.stats = stats
        self.heap: list[list] = []
        self.order = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")
        self.next_tick = 0.0
        self.buffered_markers = 0  # end markers written while the transport still held unsent bytes
        self.stopped = False

    def add(self, connection: Connection, due: float) -> None:
        heapq.heappush(self.heap, [due, next(self.order), connection])
        at = max(due, self.next_tick)
        if at < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = at
            self.timer = self.loop.call_at(at, self.tick)

    def tick(self) -> None:
        self.timer, self.timer_at = None, float("inf")
        if self.stopped:
            return
        heap = self.heap
        clock = time.monotonic
        add = self.stats.add
        marker = self.corpus.end_marker
        now = clock()
        self.next_tick = now + TICK_S
        sent = 0
        while heap and sent < MAX_BATCH:
            entry = heap[0]
            due, _order, connection = entry
            if due > now:
                now = clock()
                if due > now:
                    break
            transport = connection.transport
            if transport is None or transport.is_closing():
                heapq.heappop(heap)
                continue
            state = connection.state
            index = state.index
            if index == state.count:  # the last frame's audio is over: the end marker, as the harness
                heapq.heappop(heap)
                transport.write(marker)
                if transport.get_write_buffer_size():
                    self.buffered_markers += 1
                state.awaiting_reply = True
                continue
            transport.write(state.frames[index])
            now = clock()
            add(now, now - due)
            if index == state.speech_end:
                state.speech_end_at = now
            sent += 1
            index += 1
            state.index = index
            entry[0] = state.start + index * FRAME_S
            heapq.heapreplace(heap, entry)
        if heap:
            if sent == MAX_BATCH and heap[0][0] <= clock():
                self.timer_at = now
                self.timer = self.loop.call_soon(self.tick)  # behind: let the readers run first
            else:
                self.timer_at = max(heap[0][0], self.next_tick)
                self.timer = self.loop.call_at(self.timer_at, self.tick)


class Connection(asyncio.Protocol):
    """One simulated voice: upgrade, header, then turns back to back until the run stops."""

    def __init__(self, scheduler: Scheduler, rng: random.Random, accept: bytes, request: bytes,
                 counters: dict[str, int]) -> None:
        self.scheduler = scheduler
        self.corpus = scheduler.corpus
        self.rng = rng
        self.accept = accept
        self.request = request
        self.counters = counters
        self.state = StreamState()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.handshake = bytearray()
        self.ping_counter = 0
        self.ping_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.upgraded:
            self.handshake += data
            end = self.handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                check_upgrade(bytes(self.handshake[:end]), self.accept)
            except ConnectionError:
                self.counters["errors"] += 1
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            data = bytes(self.handshake[end + 4 :])
            self.handshake.clear()
            self.counters["connected"] += 1
            assert self.transport is not None
            self.transport.write(self.corpus.header())
            self._ping()
            self._next_turn(now)
            if not data:
                return
        state = self.state
        was_awaiting = state.awaiting_reply
        reply = state.feed(data, now, self.corpus)
        if reply and self.transport is not None:
            self.transport.write(reply)
        if was_awaiting and not state.awaiting_reply:
            self._next_turn(time.monotonic())

    def _next_turn(self, now: float) -> None:
        if self.scheduler.stopped:
            return
        self.state.begin_turn(self.rng.choice(self.corpus.utterances), now)
        self.scheduler.add(self, now)

    def _ping(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.scheduler.stopped:
            return
        self.ping_counter += 1
        payload = self.ping_counter.to_bytes(4, "big")
        self.state.ping_sent(payload, time.monotonic())
        transport.write(self.corpus.ping(payload))
        self.ping_timer = self.scheduler.loop.call_later(PING_INTERVAL_S, self._ping)

    def connection_lost(self, exc) -> None:
        self.transport = None
        if self.ping_timer is not None:
            self.ping_timer.cancel()
        if not self.scheduler.stopped:
            self.counters["errors"] += 1


async def run(host: str, port: int, path: str, streams: int, duration_s: float,
              ramp_s: float) -> tuple[LatenessStats, dict[str, object]]:
    loop = asyncio.get_running_loop()
    corpus = PreframedCorpus()
    stats = LatenessStats()
    scheduler = Scheduler(loop, corpus, stats)
    counters = {"connected": 0, "errors": 0}
    rng = random.Random()
    connections: list[Connection] = []

    async def open_one(delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        request, accept = upgrade_request(host, port, path)
        try:
            _transport, connection = await loop.create_connection(
                lambda: Connection(scheduler, rng, accept, request, counters), host, port)
        except OSError:
            counters["errors"] += 1
            return
        connections.append(connection)

    stop_at = loop.time() + ramp_s + duration_s
    await asyncio.gather(*(open_one(ramp_s * i / streams) for i in range(streams)))
    await asyncio.sleep(max(0.0, stop_at - loop.time()))
    scheduler.stopped = True
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    await asyncio.sleep(0.1)
    stats.streams_max = counters["connected"]
    return stats, {**counters, "buffered_markers": scheduler.buffered_markers,
                   **turns_summary([c.state for c in connections])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=guide.WS_PATH_GATEWAY)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--duration-s", type=float, default=30)
    parser.add_argument("--ramp-s", type=float, default=2)
    parser.add_argument("--stats", required=True)
    args = parser.parse_args(argv)
    stats, counters = asyncio.run(run(args.host, args.port, args.path, args.streams, args.duration_s, args.ramp_s))
    with open(args.stats, "w", encoding="utf-8") as file:
        json.dump({**stats.to_json(), **counters}, file)


if __name__ == "__main__":
    main()
