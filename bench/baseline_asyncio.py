"""Baseline load generator: a plain asyncio ``websockets`` client, one task per stream.

This is how the seed project's own end-to-end tests talk to the gateway, and what most people
would write first: per stream, connect (``compression=None``: permessage-deflate costs
>= 25 % more CPU on PCM that does not compress), send the JSON header, then per turn stream a
corpus utterance at real-time pace with one ``asyncio.sleep`` per frame, send the end
marker, read the reply up to ``reply_end``, and start the next turn at once — the same work
the capacity benchmark's Locust users do. Send lateness goes into the same per-second
histograms as the harness's pacer (:mod:`voiceharness.lateness`).

    python -m bench.baseline_asyncio --url ws://127.0.0.1:7099/ws/audio --streams 500 \\
        --duration-s 30 --ramp-s 2 --stats out.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time

from websockets.asyncio.client import connect

from audio_corpus import load_corpus
from voiceharness import guide, protocol
from voiceharness.lateness import LatenessStats

FRAME_S = guide.CHUNK_SAMPLES / guide.SAMPLE_RATE_HZ
END_MARKER = protocol.end_marker_message()


async def _stream(url: str, utterances: list, stats: LatenessStats, counters: dict[str, int], stop_at: float,
                  delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    clock = time.monotonic
    rng = random.Random()
    order = list(utterances)
    rng.shuffle(order)
    try:
        async with connect(url, compression=None, ping_interval=2.0, max_size=None, open_timeout=30) as ws:
            counters["connected"] += 1
            await ws.send(protocol.ClientSession().header_message(as_binary=True))
            for utterance in itertools.cycle(order):
                if clock() >= stop_at:
                    return
                start = clock()
                for index, frame in enumerate(utterance.frames(guide.CHUNK_SAMPLES)):
                    due = start + index * FRAME_S
                    wait = due - clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await ws.send(frame)
                    now = clock()
                    stats.add(now, now - due)
                await ws.send(END_MARKER)
                while True:  # the reply: metadata, audio, reply_end
                    message = await asyncio.wait_for(ws.recv(), 10)
                    if message[:1] in (b"{", "{") and b"reply_end" in (message if isinstance(message, bytes) else message.encode()):
                        break
                counters["turns"] += 1
    except Exception:  # noqa: BLE001 (counted; a baseline must not stop on one bad stream)
        counters["errors"] += 1


async def run(url: str, streams: int, duration_s: float, ramp_s: float) -> tuple[LatenessStats, dict[str, int]]:
    corpus = load_corpus(select="GREETING")
    utterances = list(corpus)
    for utterance in utterances:
        utterance.frames(guide.CHUNK_SAMPLES)  # build the shared frame views before the clock starts
    stats = LatenessStats()
    counters = {"connected": 0, "turns": 0, "errors": 0}
    stop_at = time.monotonic() + ramp_s + duration_s
    tasks = [
        asyncio.create_task(_stream(url, utterances, stats, counters, stop_at, ramp_s * i / streams))
        for i in range(streams)
    ]
    await asyncio.gather(*tasks)
    stats.streams_max = counters["connected"]
    return stats, counters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--duration-s", type=float, default=30)
    parser.add_argument("--ramp-s", type=float, default=2)
    parser.add_argument("--stats", required=True)
    args = parser.parse_args(argv)
    stats, counters = asyncio.run(run(args.url, args.streams, args.duration_s, args.ramp_s))
    with open(args.stats, "w", encoding="utf-8") as file:
        json.dump({**stats.to_json(), **counters}, file)


if __name__ == "__main__":
    main()
