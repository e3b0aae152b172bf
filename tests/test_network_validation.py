"""The harness's link emulation (--network) against the kernel's, in a namespace (root, tests only).

One link, 200 kbit/s up (below the 257 kbit/s of real-time PCM16 frames) with a 4 kB bucket and
50 ms each way, built twice between the harness and the reference gateway (fast sink) inside a
namespace of the test's own (tests/netns.py):

* **kernel**: ``tc tbf rate 200kbit burst 4kb`` on the host end of the veth (the uplink), its
  queue long enough (latency 10 s) that it never drops — TCP's stream is then shaped, not cut;
  the delay by a delaying proxy on loopback (50 ms each way: ``tc netem`` is not in this
  kernel; tests/fault_proxy.py). What is validated against the kernel is the **rate**; the delay
  is validated against the proxy.
* **harness**: no tbf, no proxy: ``--network uplink_kbps=200,burst_bytes=4096,one_way_delay_ms=50``.

Compared turn by turn, as the residual of each turn's roundtrip over its fluid drain time
(tests/test_locust_network.py: the stream's bytes plus the marker, minus the bucket, at the rate,
counted from the end of speech): the residual is the delays and the gateway, the same in both.
The kernel's tbf counts each packet's Ethernet, IP and TCP headers (66 bytes on a 1,448-byte
segment: 4.6 %) where the harness counts WebSocket bytes, so its drain is predicted at
200 x 1448/1514 kbit/s. Tolerance on the medians: one frame (64 ms: the harness moves whole
frames, the kernel segments) + 20 ms (the proxy's and the tbf's timers, two medians of a
loaded machine). The uplink backlog: the harness's recorded backlog against the kernel's,
which the socket cannot see (it sits in tbf's queue, not the socket's), implied by when the
last byte arrived: (roundtrip - residual - client tail) x rate. docs/networks.md has the numbers.
"""

from __future__ import annotations

import contextlib
import csv
import statistics

import pytest
from conftest import run_locust
from fault_proxy import DelayProxy
from netns import Netns, requires_root

from audio_corpus.manifest import load_corpus
from voiceharness import uplink

pytestmark = [pytest.mark.slow, pytest.mark.netns, requires_root]

RATE_KBPS = 200
BURST_BYTES = 4096
DELAY_MS = 50
FRAME_S = 0.064
CHUNK = 1024
MARKER_WIRE_BYTES = len(b'{"type": "end"}') + 2 + 4
KERNEL_WIRE_SHARE = 1448 / (1448 + 66)  # a full TCP segment's payload over its bytes on the wire
TOLERANCE_MS = 64 + 20
SAME_LENGTH_UTTERANCES = "greeting_hello_jarvis_en-us_160,greeting_hello_jarvis_en-us-f3_160"


def _wire(payload_bytes: int) -> int:
    return payload_bytes + (2 if payload_bytes < 126 else 4) + 4


def _turns(run) -> list[dict]:
    with open(run.file("_turns.csv"), newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["success"] == "1"]
    assert len(rows) >= 6, run.output[-3000:]
    return rows


def _figures(rows: list[dict], rate_bytes_per_s: float) -> list[dict]:
    """Per turn: the residual (roundtrip minus the fluid drain) and the backlog when the stream ended."""
    corpus = {u.id: u for u in load_corpus(select=",".join({row["utterance_id"] for row in rows}))}
    figures = []
    for row in rows:
        utterance = corpus[row["utterance_id"]]
        frames = utterance.frames(CHUNK)
        sent = int(row["chunks_sent"])
        stream_bytes = sum(_wire(len(f)) for f in frames[:sent]) + (sent - len(frames)) * (2048 + 8)
        speech_end_s = utterance.speech_end_frame(CHUNK) * FRAME_S
        drain_s = (stream_bytes + MARKER_WIRE_BYTES - BURST_BYTES) / rate_bytes_per_s - speech_end_s
        roundtrip_ms = float(row["roundtrip_ms"])
        figures.append({"residual_ms": roundtrip_ms - drain_s * 1000, "roundtrip_ms": roundtrip_ms,
                        "recorded_backlog_ms": float(row["uplink_backlog_ms"]),
                        "drain_after_stream_ms": drain_s * 1000 - float(row["client_tail_ms"]),
                        "ping_ms": float(row["ping_ms"])})
    return figures


def test_the_harness_shapes_rate_and_delay_as_the_kernel_and_a_delaying_proxy_do(tmp_path):
    # Both runs play the same two utterances (23 frames each): the backlog grows with a stream's
    # length, so medians over whatever each run's corpus order drew (20-26 frames) differed by
    # up to 100 ms between two runs of the same link.
    common = ("--tags", "basic", "--utterances", SAME_LENGTH_UTTERANCES, "--think-time-ms", "600-800",
              "--ping-interval-ms", "10000")
    with contextlib.ExitStack() as stack:
        kernel_ns = stack.enter_context(Netns())
        harness_ns = stack.enter_context(Netns())
        _, kernel_port = kernel_ns.start_gateway("--fast-sink", log_path=tmp_path / "kernel-gateway.log")
        _, harness_port = harness_ns.start_gateway("--fast-sink", log_path=tmp_path / "harness-gateway.log")
        kernel_ns.tbf(f"{RATE_KBPS}kbit", burst="4kb", latency="10s")
        proxy = stack.enter_context(DelayProxy((kernel_ns.ns_ip, kernel_port), upstream_delay_ms=DELAY_MS,
                                               downstream_delay_ms=DELAY_MS))
        kernel = run_locust(tmp_path / "kernel", f"ws://127.0.0.1:{proxy.port}", *common, users=1, spawn_rate=1,
                            run_time="90s", stop_after_turns=8)
        harness = run_locust(tmp_path / "harness", f"ws://{harness_ns.ns_ip}:{harness_port}", *common, "--network",
                             f"uplink_kbps={RATE_KBPS},burst_bytes={BURST_BYTES},one_way_delay_ms={DELAY_MS}",
                             users=1, spawn_rate=1, run_time="90s", stop_after_turns=8)
    rate = RATE_KBPS * 125
    for run in (kernel, harness):
        assert {row["utterance_id"] for row in _turns(run)} <= set(SAME_LENGTH_UTTERANCES.split(","))
    kernel_figures = _figures(_turns(kernel), rate * KERNEL_WIRE_SHARE)
    harness_figures = _figures(_turns(harness), rate)

    def median(figures: list[dict], name: str) -> float:
        return statistics.median(f[name] for f in figures)

    kernel_residual, harness_residual = median(kernel_figures, "residual_ms"), median(harness_figures, "residual_ms")
    kernel_backlog = statistics.median(
        (f["drain_after_stream_ms"] + f["residual_ms"] - kernel_residual) for f in kernel_figures)
    harness_backlog = median(harness_figures, "recorded_backlog_ms")
    # the same stream's backlog, in ms of audio: the kernel's carried at its own (header-loaded) rate
    kernel_backlog_audio_ms = uplink.backlog_ms(kernel_backlog / 1000 * rate * KERNEL_WIRE_SHARE, CHUNK)
    print(f"\nkernel (tbf {RATE_KBPS} kbit/s + proxy {DELAY_MS} ms each way): roundtrip median "
          f"{median(kernel_figures, 'roundtrip_ms'):.0f} ms, residual {kernel_residual:.0f} ms, backlog (implied) "
          f"{kernel_backlog_audio_ms:.0f} ms, ping {median(kernel_figures, 'ping_ms'):.0f} ms"
          f"\nharness (--network): roundtrip median {median(harness_figures, 'roundtrip_ms'):.0f} ms, residual "
          f"{harness_residual:.0f} ms, backlog (recorded) {harness_backlog:.0f} ms, ping "
          f"{median(harness_figures, 'ping_ms'):.0f} ms")
    # The delays: both residuals hold the two one-way delays (and the gateway's ~1 ms).
    assert 2 * DELAY_MS <= harness_residual, harness_residual
    assert 2 * DELAY_MS <= kernel_residual, kernel_residual
    assert abs(kernel_residual - harness_residual) <= TOLERANCE_MS, (kernel_residual, harness_residual)
    assert abs(kernel_backlog_audio_ms - harness_backlog) <= TOLERANCE_MS, (kernel_backlog_audio_ms, harness_backlog)
    # about a backlog, not two zeros: 22 % of a 1.3-1.7 s stream is 290-370 ms, less the 4 kB bucket (128 ms)
    assert harness_backlog > 100, harness_backlog
