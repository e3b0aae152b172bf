"""``python -m bench.profile --n 1000 [--client asyncio_fair]``: where a client's CPU goes, from a sampling profile.

Runs the capacity benchmark's harness client (``bench/locustfile_capacity.py``: N real-time
voices, turns back to back), or its fair asyncio baseline, against ``bench/sink.py``, waits
until every voice is streaming, then samples the client's process with py-spy (``pip install
py-spy``; it reads the process from outside, so the figures are the process's own) for
``--seconds``, and reads the process's CPU time over the same window. It prints each stage's
share of the samples and its CPU µs per frame sent (share × CPU time ÷ N × 15.625 frames a
second × seconds) — inclusive (the function and all it calls) and self — for the functions
that make up a frame's and a reply's path, and the functions with the most samples of their
own; the collapsed stacks (py-spy's ``raw`` format, which its and other flame graph tools
draw) stay in ``--out``.

The stage list is what bench/NOTES.md's profile tables quote; the collapsed stacks hold
everything else (``grep``-able: one stack per line, its sample count last).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import capacity, common

# (label, what identifies the frame in py-spy's collapsed stacks: "function (file" prefix)
HARNESS_STAGES = (
    ("pacer: one slot of frames (Pacer._send_slot)", "_send_slot (voiceharness/locust/transport.py"),
    ("reader: a connection's read loop (read_forever)", "read_forever (voiceharness/connection.py"),
    ("  frame reading (FrameReader.next)", "next (voiceharness/connection.py"),
    ("  the session's handling (ClientSession.receive)", "receive (voiceharness/protocol.py"),
    ("  delivering events to the turn (deliver)", "deliver (voiceharness/turn.py"),
    ("  reply audio (ReplyRecording.add)", "add (voiceharness/turn.py"),
    ("turn: run_turn", "run_turn (voiceharness/turn.py"),
    ("  the verdict (judge_turn)", "judge_turn (voiceharness/judge.py"),
    ("  the record and timings (_finish)", "_finish (voiceharness/turn.py"),
    ("reporting a turn (VoiceClient._report)", "_report (voiceharness/locust/client.py"),
    ("  the turn sink (TurnSink.add)", "add (voiceharness/locust/records.py"),
    ("  Locust's request events (EventHook.fire)", "fire (locust/event.py"),
    ("the turns file (TurnSink.flush)", "flush (voiceharness/locust/records.py"),
    ("gevent's hub (libev loop)", "run (gevent/hub.py"),
)

FAIR_STAGES = (
    ("scheduler: frames due, written (Scheduler.tick)", "Scheduler.tick (bench/baseline_asyncio_fair.py"),
    ("  the frame's write (transport.write)", "write (asyncio/selector_events.py"),
    ("reader: data_received (parse, replies, turn end)", "data_received (bench/baseline_asyncio_fair.py"),
    ("  reply parsing (StreamState.feed)", "feed (bench/baseline_stream.py"),
    ("  the next turn (_next_turn)", "_next_turn (bench/baseline_asyncio_fair.py"),
    ("the event loop (select, callbacks)", "_run_once (asyncio/base_events.py"),
    ("  waiting in select", "select (selectors.py"),
)
STAGES = {"harness": HARNESS_STAGES, "asyncio_fair": FAIR_STAGES}
FRAMES_PER_S = 1000.0 / 64  # 1,024-sample frames of 16 kHz audio


def parse_collapsed(path: Path) -> tuple[int, list[tuple[list[str], int]]]:
    stacks = []
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
        total += int(count)
    return total, stacks


def shares(total: int, stacks: list[tuple[list[str], int]], stages=HARNESS_STAGES) -> list[tuple[str, float, float]]:
    """Each stage's inclusive and self share (percent of all samples)."""
    rows = []
    for label, needle in stages:
        inclusive = sum(count for frames, count in stacks if any(needle in frame for frame in frames))
        own = sum(count for frames, count in stacks if needle in frames[-1])
        rows.append((label, 100 * inclusive / total, 100 * own / total))
    return rows


def top_self(total: int, stacks: list[tuple[list[str], int]], limit: int = 15) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        counts[frames[-1].split(":")[0]] += count
    return [(frame, 100 * count / total) for frame, count in counts.most_common(limit)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="real-time voices")
    parser.add_argument("--client", choices=sorted(STAGES), default="harness")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to sample")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=None, help="where the collapsed stacks and logs go")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("bench.profile: py-spy is not installed: .venv/bin/pip install py-spy")
    out = args.out or Path(tempfile.mkdtemp(prefix=f"profile-{args.n}-"))
    out.mkdir(parents=True, exist_ok=True)
    port = common.free_port()
    sink = common.sink_service(port, out).start()
    ramp_s = max(2.0, args.n / 400)
    run_s = ramp_s + 5 + args.seconds + 5
    command, env = capacity._client_command(args.client, args.n, port, run_s - ramp_s, ramp_s, out / "run",
                                            out / "stats.json", processes=1)
    collapsed = out / "profile.txt"
    try:
        with open(out / "client.log", "wb") as log:
            client = common.start(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(ramp_s + 5)
        process = psutil.Process(client.pid)
        cpu_before = sum(process.cpu_times()[:2])
        sampled_at = time.monotonic()
        subprocess.run([py_spy, "record", "--pid", str(client.pid), "--duration", str(int(args.seconds)),
                        "--rate", str(args.rate), "--nonblocking", "--format", "raw", "--output", str(collapsed)],
                       check=True, capture_output=True)
        cpu_s = sum(process.cpu_times()[:2]) - cpu_before
        window_s = time.monotonic() - sampled_at
        client.wait(timeout=run_s + 60)
    finally:
        sink.stop()
    total, stacks = parse_collapsed(collapsed)
    frames = args.n * FRAMES_PER_S * window_s
    us_per_frame = cpu_s * 1e6 / frames
    print(f"{args.client}, {args.n} voices: {total} samples over {window_s:.0f} s, {100 * cpu_s / window_s:.0f} % of a "
          f"core, {us_per_frame:.1f} µs of CPU per frame ({out})")
    print(f"{'stage':52} {'inclusive':>9} {'self':>6} {'µs/frame incl.':>15}")
    for label, inclusive, own in shares(total, stacks, STAGES[args.client]):
        print(f"{label:52} {inclusive:8.1f}% {own:5.1f}% {inclusive / 100 * us_per_frame:14.1f}")
    print("top self:")
    for frame, share in top_self(total, stacks):
        print(f"  {share:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
