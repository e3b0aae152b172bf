"""Upper-bound load generator: a bare socket writer of pre-framed bytes, one pacing loop.

No Locust, no gevent, no WebSocket library after the handshake: N plain sockets, the corpus
pre-framed once (:mod:`voiceharness.framing`), and one loop that sleeps until the next due
frame, writes every due frame of every stream with one ``send`` each, and throws away
whatever the sink answered. Turns do not wait for replies (the end marker goes out and the
next utterance starts at once). It shows what the send path alone costs in Python on this
machine; nothing real can be cheaper.

    python -m bench.baseline_raw --host 127.0.0.1 --port 7099 --streams 2000 --duration-s 30 --stats out.json
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import os
import random
import selectors
import socket
import time

from audio_corpus import load_corpus
from voiceharness import framing, guide, protocol
from voiceharness.lateness import LatenessStats

FRAME_S = guide.CHUNK_SAMPLES / guide.SAMPLE_RATE_HZ


def _open(host: str, port: int, path: str, header: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.split(b"\r\n", 1)[0].decode(errors="replace"))
    sock.sendall(header)
    sock.setblocking(False)
    return sock


def run(host: str, port: int, path: str, streams: int, duration_s: float, ramp_s: float) -> tuple[LatenessStats, dict]:
    preframer = framing.Preframer()
    marker = framing.client_frame(protocol.end_marker_message(), preframer.mask_key)
    turns = [preframer.frames(u.id, u.frames(guide.CHUNK_SAMPLES)) + (marker,) for u in load_corpus(select="GREETING")]
    stats = LatenessStats()
    selector = selectors.DefaultSelector()
    sockets = []
    clock = time.monotonic
    heap: list[tuple[float, int]] = []
    plan: list[list] = []  # per stream: [turn frames, index, turn start]
    rng = random.Random()
    ramp_start = clock()
    for number in range(streams):
        wait = ramp_start + ramp_s * number / streams - clock()
        if wait > 0:
            time.sleep(wait)
        header = framing.client_frame(protocol.ClientSession().header_message(as_binary=True), preframer.mask_key)
        sock = _open(host, port, path, header)
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_READ)
        start = clock()
        plan.append([rng.choice(turns), 0, start])
        heap.append((start, number))
    heapq.heapify(heap)
    stop_at = clock() + duration_s
    blocked = 0
    while True:
        now = clock()
        if now >= stop_at:
            break
        due, number = heap[0]
        if due > now:
            for key, _events in selector.select(min(due - now, 0.05)):
                try:
                    key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    pass
            continue
        entry = plan[number]
        frames, index, start = entry
        frame = frames[index]
        sock = sockets[number]
        try:
            sent = sock.send(frame)
        except BlockingIOError:
            sent = 0
        if sent != len(frame):
            blocked += 1
            sock.setblocking(True)
            sock.sendall(frame[sent:])
            sock.setblocking(False)
        now = clock()
        if frame is not marker:
            stats.add(now, now - due)
        index += 1
        if index == len(frames):
            entry[0], entry[1], entry[2] = rng.choice(turns), 0, start + index * FRAME_S
            heapq.heapreplace(heap, (entry[2], number))
        else:
            entry[1] = index
            next_due = start + index * FRAME_S if frames[index] is not marker else now
            heapq.heapreplace(heap, (next_due, number))
    for sock in sockets:
        sock.close()
    stats.streams_max = streams
    return stats, {"connected": streams, "blocked_sends": blocked, "errors": 0}


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
