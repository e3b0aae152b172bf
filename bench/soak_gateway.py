"""``python -m bench.soak_gateway --minutes 10``: the reference gateway at twice the load it can serve.

Not run in CI (``tests/test_gateway_load.py`` runs the same load for seconds). It starts a
gateway with small limits and a slow pipeline (``tests.slow_pipeline:SlowPipeline`` in a
thread pool: each turn sleeps, so the pipeline serves ``--workers`` turns at a time), then
runs ``--users`` (default 2 × ``--max-sessions``) simulated microphones for ``--minutes``:

* each user connects (a refused upgrade, HTTP 503, is *shed*: retry after 1–2 s), sends the
  header and streams utterances (1 s of tone, 0.7 s of silence) continuously at ``--pace``
  × real time while a reader counts replies; after ``--session-s`` it closes and reconnects,
  so sessions churn and shed users get their turn;
* every ``--sample-s`` seconds it records the gateway's RSS, open file descriptors and
  threads (psutil), ``/readyz`` and the counters of ``/metrics``.

The result goes to ``bench/results/soak.json``: the samples and a summary (RSS at start, at
end, max; the RSS slope after the first minute; frames dropped; upgrades shed; how often
``/readyz`` said 503 under load, and what it says once the load is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.common import REPO, RESULTS, free_port, gateway_service, machine

SLOW_PIPELINE = "tests.slow_pipeline:SlowPipeline"
FRAME_SAMPLES = 1024
SAMPLE_RATE_HZ = 16_000
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def utterance_frames(speech_s: float = 1.0, silence_s: float = 0.7) -> list[bytes]:
    """One command as 64 ms PCM16 frames: a -20 dBFS 300 Hz tone, then silence for the VAD."""
    n = int(speech_s * SAMPLE_RATE_HZ)
    tone = (3277 * np.sin(2 * np.pi * 300 * np.arange(n) / SAMPLE_RATE_HZ)).astype("<i2")
    pcm = np.concatenate([tone, np.zeros(int(silence_s * SAMPLE_RATE_HZ), "<i2")]).tobytes()
    step = FRAME_SAMPLES * 2
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def header(session_id: str | None = None) -> bytes:
    sid = session_id or str(uuid.uuid4())
    body = {"sessionId": sid, "correlationId": str(uuid.uuid4()), "sampleRate": 16000, "protocolVersion": 1}
    return json.dumps(body).encode("utf-8")


def read_metrics(port: int) -> dict[str, float]:
    """``/metrics`` as ``{"name{labels}": value}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode("utf-8").strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8").strip()


@dataclass
class LoadStats:
    sessions_opened: int = 0
    shed_503: int = 0
    frames_sent: int = 0
    replies: int = 0
    errors: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "sessions_opened": self.sessions_opened,
            "upgrades_shed_503": self.shed_503,
            "frames_sent": self.frames_sent,
            "replies_received": self.replies,
            "errors": dict(self.errors),
        }


async def _read_replies(ws, stats: LoadStats) -> None:
    try:
        async for message in ws:
            if isinstance(message, bytes) and message[:1] == b"{" and b'"intent"' in message or isinstance(message, str) and '"intent"' in message:
                stats.replies += 1
    except ConnectionClosed:
        pass


async def _user(url: str, stats: LoadStats, stop_at: float, *, pace: float, session_s: float) -> None:
    frames = utterance_frames()
    interval_s = FRAME_S / pace
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            async with connect(url, compression=None, open_timeout=5, max_size=None, ping_interval=None) as ws:
                stats.sessions_opened += 1
                await ws.send(header())
                reader = asyncio.create_task(_read_replies(ws, stats))
                session_end = min(stop_at, loop.time() + session_s)
                next_send = loop.time()
                try:
                    while loop.time() < session_end:
                        for frame in frames:
                            await ws.send(frame)
                            stats.frames_sent += 1
                            next_send += interval_s
                            await asyncio.sleep(max(0.0, next_send - loop.time()))
                            if loop.time() >= session_end:
                                break
                finally:
                    await ws.close()
                    reader.cancel()
        except InvalidStatus as error:
            status = error.response.status_code
            if status == 503:
                stats.shed_503 += 1
            else:
                stats.errors[f"http_{status}"] += 1
            await asyncio.sleep(1.0 + random.random())
        except (OSError, TimeoutError, ConnectionClosed) as error:
            stats.errors[type(error).__name__] += 1
            await asyncio.sleep(1.0 + random.random())


def sample(port: int, process: psutil.Process, started: float) -> dict[str, object]:
    metrics = read_metrics(port)
    status, body = readyz(port)
    with process.oneshot():
        rss = process.memory_info().rss
        fds = process.num_fds()
        threads = process.num_threads()
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": round(rss / 2**20, 2),
        "fds": fds,
        "threads": threads,
        "readyz": status,
        "readyz_body": body,
        "sessions_active": metrics.get("voicegw_sessions_active", 0.0),
        "sessions_total": metrics.get("voicegw_sessions_total", 0.0),
        "dropped_frames_total": metrics.get("voicegw_queue_dropped_frames_total", 0.0),
        "upgrades_refused_503": metrics.get('voicegw_upgrades_refused_total{status="503"}', 0.0),
        "frames_received_total": metrics.get("voicegw_audio_frames_received_total", 0.0),
        "turns_total": sum(v for k, v in metrics.items() if k.startswith("voicegw_turns_total")),
    }


async def run_load(
    port: int, gateway_pid: int, *, users: int, duration_s: float, pace: float = 2.0,
    session_s: float = 20.0, sample_s: float = 10.0, on_sample=None,
) -> dict[str, object]:
    """Run ``users`` microphones against the gateway on ``port`` for ``duration_s``; samples and totals."""
    url = f"ws://127.0.0.1:{port}/ws/audio"
    process = psutil.Process(gateway_pid)
    stats = LoadStats()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    stop_at = loop.time() + duration_s
    samples = [await asyncio.to_thread(sample, port, process, started)]
    tasks = [
        asyncio.create_task(_user(url, stats, stop_at, pace=pace, session_s=session_s * (0.75 + random.random() / 2)))
        for _ in range(users)
    ]
    while loop.time() < stop_at:
        await asyncio.sleep(min(sample_s, max(0.0, stop_at - loop.time())))
        samples.append(await asyncio.to_thread(sample, port, process, started))
        if on_sample is not None:
            on_sample(samples[-1])
    await asyncio.gather(*tasks, return_exceptions=True)
    # Load gone: wait for the gateway to notice every close, then ask it again.
    for _ in range(50):
        after = await asyncio.to_thread(sample, port, process, started)
        if after["sessions_active"] == 0:
            break
        await asyncio.sleep(0.2)
    return {"samples": samples, "after": after, "load": stats.as_dict()}


def summarize(result: dict, *, warmup_s: float = 60.0) -> dict[str, object]:
    samples = result["samples"]
    loaded = samples[1:] or samples
    rss = [s["rss_mb"] for s in samples]
    late = [s for s in samples if s["t_s"] >= warmup_s] or samples[-2:]
    slope = 0.0
    if len(late) >= 2:
        t = np.array([s["t_s"] for s in late]) / 60.0
        slope = float(np.polyfit(t, np.array([s["rss_mb"] for s in late]), 1)[0])
    after = result["after"]
    return {
        "rss_mb_start": rss[0],
        "rss_mb_first_loaded": loaded[0]["rss_mb"],
        "rss_mb_end": rss[-1],
        "rss_mb_max": max(rss),
        "rss_mb_per_min_after_warmup": round(slope, 3),
        "fds_start": samples[0]["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "fds_after": samples[-1]["fds"],
        "threads_max": max(s["threads"] for s in samples),
        "sessions_active_max": max(s["sessions_active"] for s in samples),
        "dropped_frames_total": after["dropped_frames_total"],
        "upgrades_refused_503": after["upgrades_refused_503"],
        "sessions_total": after["sessions_total"],
        "frames_received_total": after["frames_received_total"],
        "turns_total": after["turns_total"],
        "readyz_503_samples_under_load": sum(1 for s in loaded if s["readyz"] == 503),
        "samples_under_load": len(loaded),
        "readyz_after_load": after["readyz"],
        "fds_after_load": after["fds"],
        "rss_mb_after_load": after["rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--max-sessions", type=int, default=20, help="the gateway's --max-sessions (default 20)")
    parser.add_argument("--users", type=int, default=0, help="simulated microphones (default 2 × --max-sessions)")
    parser.add_argument("--pipeline-ms", type=float, default=1500.0, help="time the slow pipeline takes per turn")
    parser.add_argument("--workers", type=int, default=2, help="pipeline threads (turns served at a time)")
    parser.add_argument("--queue-frames", type=int, default=50, help="the gateway's --queue-frames (default 50)")
    parser.add_argument("--pace", type=float, default=2.0, help="audio sent at this many × real time (default 2)")
    parser.add_argument("--session-s", type=float, default=20.0, help="mean session length before a reconnect")
    parser.add_argument("--sample-s", type=float, default=10.0, help="sampling interval (default 10 s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    users = args.users or 2 * args.max_sessions
    port = free_port()
    log_dir = RESULTS / "tmp"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["VOICEGW_SLOW_PIPELINE_MS"] = str(args.pipeline_ms)
    gateway_args = (
        "--max-sessions", str(args.max_sessions), "--queue-frames", str(args.queue_frames),
        "--pipeline", SLOW_PIPELINE, "--executor", "thread", "--workers", str(args.workers),
    )
    gateway = gateway_service(port, log_dir, *gateway_args).start()

    def show(s: dict) -> None:
        print(
            f"t={s['t_s']:>6}s rss={s['rss_mb']} MB fds={s['fds']} sessions={s['sessions_active']:.0f} "
            f"readyz={s['readyz']} dropped={s['dropped_frames_total']:.0f} shed={s['upgrades_refused_503']:.0f}",
            flush=True,
        )

    try:
        result = asyncio.run(
            run_load(port, gateway.pid, users=users, duration_s=args.minutes * 60, pace=args.pace,
                     session_s=args.session_s, sample_s=args.sample_s, on_sample=show)
        )
    finally:
        gateway.stop()
    log_text = gateway.log_path.read_text(errors="replace")
    report = {
        "what": "reference gateway at 2x the sessions it serves, slow pipeline, audio faster than real time",
        "command": "python -m bench.soak_gateway " + " ".join(argv if argv is not None else sys.argv[1:]),
        "gateway_args": list(gateway_args),
        "slow_pipeline_ms": args.pipeline_ms,
        "users": users,
        "minutes": args.minutes,
        "pace": args.pace,
        "machine": machine(),
        "summary": summarize(result),
        "load": result["load"],
        "tracebacks_in_gateway_log": log_text.count("Traceback"),
        "samples": result["samples"],
        "after": result["after"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
