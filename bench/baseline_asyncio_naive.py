"""The naive asyncio baseline: what most people write first — one task per stream, a library for the rest.

This is how the seed project's own end-to-end tests talk to the gateway: per stream, a
``websockets`` connection (``compression=None``: permessage-deflate costs >= 25 % more CPU
on PCM that does not compress; the library's keep-alive pings every 3 s, the harness's
interval), the JSON header, then per turn a corpus utterance at real-time pace with one
``asyncio.sleep`` per frame and the library framing and masking every frame, the end
marker once the last frame's audio is over, and the reply read message by message (each receive wrapped in
``asyncio.wait_for``) and parsed — JSON metadata, reply audio (the first one times the
turn's roundtrip), ``reply_end`` — before the next turn starts at once. The same work per
stream as the harness and the fair baseline (``bench/baseline_asyncio_fair.py``); only the
design differs. Send lateness goes into the same per-second histograms as the harness's
pacer (:mod:`voiceharness.lateness`).

    python -m bench.baseline_asyncio_naive --url ws://127.0.0.1:7099/ws/audio --streams 500 \\
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
from bench.baseline_stream import FRAME_S, PING_INTERVAL_S, StreamState, turns_summary
from voiceharness import guide, protocol
from voiceharness.lateness import LatenessStats

END_MARKER = protocol.end_marker_message()


async def _stream(url: str, utterances: list, stats: LatenessStats, counters: dict[str, int], state: StreamState,
                  stop_at: float, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    clock = time.monotonic
    rng = random.Random()
    order = list(utterances)
    rng.shuffle(order)
    try:
        async with connect(url, compression=None, ping_interval=PING_INTERVAL_S, max_size=None, open_timeout=30) as ws:
            counters["connected"] += 1
            await ws.send(protocol.ClientSession().header_message(as_binary=True))
            for utterance in itertools.cycle(order):
                if clock() >= stop_at:
                    break
                start = clock()
                speech_end = utterance.speech_end_frame(guide.CHUNK_SAMPLES)
                speech_end_at = start
                for index, frame in enumerate(utterance.frames(guide.CHUNK_SAMPLES)):
                    due = start + index * FRAME_S
                    wait = due - clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await ws.send(frame)
                    now = clock()
                    stats.add(now, now - due)
                    if index == speech_end:
                        speech_end_at = now
                wait = start + (index + 1) * FRAME_S - clock()  # the last frame's audio is over, as the harness
                if wait > 0:
                    await asyncio.sleep(wait)
                await ws.send(END_MARKER)
                first_audio = True
                while True:  # the reply: metadata, audio, reply_end
                    message = await asyncio.wait_for(ws.recv(), 10)
                    if message[:1] in (b"{", "{"):
                        data = json.loads(message)
                        if isinstance(data, dict) and data.get("type") == "reply_end":
                            break
                    elif first_audio:
                        first_audio = False
                        state.roundtrips_ms.append((clock() - speech_end_at) * 1000.0)
                state.turns += 1
            if ws.latency:  # the library's own last ping round trip (it keeps only the last)
                state.ping_ms.append(ws.latency * 1000.0)
    except Exception:  # noqa: BLE001 (counted; a baseline must not stop on one bad stream)
        if clock() < stop_at:
            counters["errors"] += 1


async def run(url: str, streams: int, duration_s: float, ramp_s: float) -> tuple[LatenessStats, dict[str, object]]:
    utterances = list(load_corpus(select="GREETING"))
    for utterance in utterances:
        utterance.frames(guide.CHUNK_SAMPLES)  # build the shared frame views before the clock starts
    stats = LatenessStats()
    counters = {"connected": 0, "errors": 0}
    states = [StreamState() for _ in range(streams)]
    stop_at = time.monotonic() + ramp_s + duration_s
    tasks = [
        asyncio.create_task(_stream(url, utterances, stats, counters, states[i], stop_at, ramp_s * i / streams))
        for i in range(streams)
    ]
    await asyncio.gather(*tasks)
    stats.streams_max = counters["connected"]
    return stats, {**counters, **turns_summary(states)}


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
