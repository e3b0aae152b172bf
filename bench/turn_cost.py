"""``python -m bench.turn_cost``: the CPU one turn's bookkeeping costs, stage by stage, in µs.

A micro-benchmark of the per-turn path of a Locust user, with no socket and no gateway: the
real :class:`~voiceharness.protocol.ClientSession` is fed the capacity benchmark's reply (the
fast sink's metadata, 100 ms of tone, ``reply_end``: ``bench/sink.py``) and the real turn
code runs on it — the meter folding the reply, the verdict and the record
(``voiceharness.turn._finish``), then the reporting of a Locust user
(:meth:`VoiceClient._report`: the turn sink, the live statistics, Locust's request events, with
a real Locust environment and its local runner's statistics), and the turns file's batch
write. Each stage is timed over ``--turns`` turns, ``--repeat`` times; the best run (the
least disturbed by other work on the machine), the median and the spread are printed in µs
per turn.

It measures the harness's own Python, one process, no network: what a turn costs beyond its
frames. The capacity benchmark (``python -m bench capacity``) measures the whole.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from locust import User
from locust.env import Environment

from bench import sink
from voiceharness import framing, judge, protocol, turns
from voiceharness.judge import Expectation
from voiceharness.locust import attach
from voiceharness.locust.client import VoiceClient
from voiceharness.turn import TurnMeter, _finish
from voiceharness.turns import TurnContext


class _BenchUser(User):
    abstract = True


def _reply_messages() -> list[bytes]:
    """The fast sink's reply, as the messages a client reads (payloads, unmasked)."""
    data = sink.reply_bytes()
    messages, position = [], 0
    while position < len(data):
        opcode, _, length, _, header = framing.parse_frame_header(data[position:])
        payload = data[position + header: position + header + length]
        messages.append(payload.decode() if opcode == framing.OPCODE_TEXT else payload)
        position += header + length
    return messages


def _turn(session: protocol.ClientSession, messages: list[bytes], t0: float) -> tuple[TurnMeter, float]:
    """One turn's session and meter work: begin, end of speech, mic closed, the reply folded."""
    meter = TurnMeter(keep_reply_audio=None, sent_at=lambda: t0 + 1.0, ping_ms=1.0)
    session.begin_turn(t0)
    session.speech_ended(t0 + 1.0)
    for event in session.close_mic(t0 + 1.01):
        meter.fold(event)
    now = t0 + 1.05
    for message in messages:
        for event in session.receive(message, now):
            meter.fold(event)
    return meter, now


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    messages = _reply_messages()
    workdir = Path(tempfile.mkdtemp(prefix="turn_cost_"))
    environment = Environment(user_classes=[_BenchUser])
    environment.create_local_runner()
    runtime = attach(environment, host="ws://127.0.0.1:9", csv_prefix=str(workdir / "run"), utterances="GREETING")
    client = VoiceClient(_BenchUser(environment))
    expectation = Expectation(intent="GREETING")
    context = TurnContext(timestamp=time.time(), worker=runtime.worker_name, user=1, connection_id="c1",
                          scenario="corpus", utterance_id="greeting_01", request_name="greeting_01",
                          expected_intent="GREETING", speech_ms=1000.0, dialect="reference")

    def session() -> protocol.ClientSession:
        return protocol.ClientSession(reply_timeout_s=10.0, reply_gap_s=2.0)

    stages: dict[str, list[float]] = {}

    def timed(name: str, run) -> None:
        best = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run()
            best.append((time.perf_counter() - started) / args.turns * 1e6)
        stages[name] = best

    n = args.turns

    def receive_and_fold() -> None:
        s = session()
        t0 = 1000.0
        for i in range(n):
            _turn(s, messages, t0 + 2 * i)

    s_prepared = session()
    meters = []
    for i in range(n):
        meter, _ = _turn(s_prepared, messages, 1000.0 + 2 * i)
        meters.append(meter)

    def finish() -> None:
        for meter in meters:
            _finish(s_prepared, meter, None, math.nan, expectation, context, what=None)

    records = [_finish(s_prepared, meter, None, math.nan, expectation, context, what=None).record for meter in meters]

    def report() -> None:
        for _ in records:
            runtime.run_status.turn_started()  # as say() does: each reported turn was started
        for record in records:
            client._report(record)
        runtime.sink.unwritten.clear()

    def cells() -> None:
        for record in records:
            turns.record_cells(record)

    def live() -> None:
        for record in records:
            runtime.sink.live.add(turns.record_row(record))

    def fire() -> None:
        fire_request = environment.events.request.fire
        for record in records:
            for kind in ("intent", "roundtrip", "audible", "reply"):
                fire_request(request_type=kind, name=record.request_name, response_time=record.roundtrip_ms,
                             response_length=0, exception=None, context={})

    def file_batch() -> None:
        rows = [turns.record_cells(record) for record in records]
        runtime.sink.writer.write_cells(rows)

    timed("reply received and folded (session.receive + TurnMeter.fold)", receive_and_fold)
    timed("verdict and record (_finish)", finish)
    timed("reporting (VoiceClient._report, all of it)", report)
    timed("  the record's cells (record_cells)", cells)
    timed("  live statistics (record_row + LiveStats.add)", live)
    timed("  Locust's four request events", fire)
    timed("the turns file, batched (cells + csv)", file_batch)
    judge.judge_turn  # noqa: B018 — imported for the reader: the verdict is in _finish
    print(f"µs per turn, best and median [min-max] of {args.repeat} runs of {n} turns:")
    for name, values in stages.items():
        print(f"  {name:<62} {min(values):6.1f}  {statistics.median(values):6.1f} [{min(values):.1f}-{max(values):.1f}]")
    runtime.shutdown()


if __name__ == "__main__":
    main()
