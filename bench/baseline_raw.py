"""Upper-bound load generator: bare sockets, one selector loop, pre-framed bytes — the same turns.

No Locust, no gevent, no asyncio, no WebSocket library: N plain sockets, the corpus framed and
masked once (:class:`bench.baseline_stream.PreframedCorpus`), and one loop that sleeps in
``select`` until the next due frame or reply, writes every due frame of every stream with one
``send`` each, and reads the replies. Each stream does the same work as the harness's users
(issue 15 item 6): when the utterance's last frame's audio is over, the end marker, then the sink's reply read and parsed
(:class:`bench.baseline_stream.StreamState`: metadata, audio, ``reply_end``, the roundtrip
timed) before the next utterance starts, and a ping every 3 s. It shows what that work costs
in Python with nothing between the loop and the system calls; nothing real can be cheaper.

    python -m bench.baseline_raw --host 127.0.0.1 --port 7099 --streams 2000 --duration-s 30 --stats out.json
"""

from __future__ import annotations

import argparse
import collections
import heapq
import json
import random
import selectors
import socket
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


def _open(host: str, port: int, path: str, header: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    request, accept = upgrade_request(host, port, path)
    sock.sendall(request)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    check_upgrade(head, accept)
    if rest:
        raise ConnectionError("the server spoke before the header")
    sock.sendall(header)
    sock.setblocking(False)
    return sock


def _send(sock: socket.socket, frame: bytes) -> bool:
    """Write one whole frame; True when the socket did not take it at once (then it blocks)."""
    try:
        sent = sock.send(frame)
    except BlockingIOError:
        sent = 0
    if sent == len(frame):
        return False
    sock.setblocking(True)
    sock.sendall(frame[sent:])
    sock.setblocking(False)
    return True


def run(host: str, port: int, path: str, streams: int, duration_s: float, ramp_s: float) -> tuple[LatenessStats, dict]:
    corpus = PreframedCorpus()
    marker = corpus.end_marker
    stats = LatenessStats()
    add = stats.add
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    states: list[StreamState] = []
    clock = time.monotonic
    heap: list[list] = []  # [due, stream number]
    pings: collections.deque[tuple[float, int]] = collections.deque()  # (due, stream): FIFO is time order
    rng = random.Random()
    started = clock()
    stop_at = started + ramp_s + duration_s
    counters = {"connected": 0, "blocked_sends": 0, "errors": 0, "ping_counter": 0}

    def begin(number: int, now: float) -> None:
        states[number].begin_turn(rng.choice(corpus.utterances), now)
        heapq.heappush(heap, [now, number])

    while True:
        now = clock()
        if now >= stop_at:
            break
        # Connect the streams whose ramp slot has come (blocking handshake: a fraction of a ms on loopback).
        while len(sockets) < streams and started + ramp_s * len(sockets) / streams <= now:
            try:
                sock = _open(host, port, path, corpus.header())
            except (OSError, ConnectionError):
                counters["errors"] += 1
                streams -= 1
                continue
            number = len(sockets)
            sockets.append(sock)
            states.append(StreamState())
            selector.register(sock, selectors.EVENT_READ, number)
            counters["connected"] += 1
            now = clock()
            pings.append((now, number))
            begin(number, now)
        next_connect = started + ramp_s * len(sockets) / streams if len(sockets) < streams else stop_at
        while pings and pings[0][0] <= now:
            _due, number = pings.popleft()
            counters["ping_counter"] += 1
            payload = counters["ping_counter"].to_bytes(4, "big")
            states[number].ping_sent(payload, now)
            counters["blocked_sends"] += _send(sockets[number], corpus.ping(payload))
            pings.append((now + PING_INTERVAL_S, number))
        wake = min(heap[0][0] if heap else stop_at, pings[0][0] if pings else stop_at, next_connect, stop_at)
        # Read what arrived (waiting for it only until the next due frame): replies start the next turns.
        for key, _events in selector.select(max(0.0, min(wake - now, 0.05))):
            number = key.data
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(key.fileobj)
                counters["errors"] += 1
                continue
            state = states[number]
            was_awaiting = state.awaiting_reply
            reply = state.feed(data, clock(), corpus)
            if reply:
                counters["blocked_sends"] += _send(sockets[number], reply)
            if was_awaiting and not state.awaiting_reply:
                begin(number, clock())
        now = clock()
        while heap and heap[0][0] <= now:
            entry = heap[0]
            due, number = entry
            state = states[number]
            index = state.index
            if index == state.count:  # the last frame's audio is over: the end marker, as the harness
                heapq.heappop(heap)
                counters["blocked_sends"] += _send(sockets[number], marker)
                state.awaiting_reply = True
                continue
            counters["blocked_sends"] += _send(sockets[number], state.frames[index])
            now = clock()
            add(now, now - due)
            if index == state.speech_end:
                state.speech_end_at = now
            index += 1
            state.index = index
            entry[0] = state.start + index * FRAME_S
            heapq.heapreplace(heap, entry)
    for sock in sockets:
        sock.close()
    stats.streams_max = counters["connected"]
    del counters["ping_counter"]
    return stats, {**counters, **turns_summary(states)}


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
    stats, counters = run(args.host, args.port, args.path, args.streams, args.duration_s, args.ramp_s)
    with open(args.stats, "w", encoding="utf-8") as file:
        json.dump({**stats.to_json(), **counters}, file)


if __name__ == "__main__":
    main()
