"""The gateway's Prometheus metrics, served as text at ``GET /metrics``.

Each :class:`GatewayMetrics` owns its registry, so several gateways can live in one
process (the tests start many) without clashing in prometheus_client's global registry.
Times are histograms in seconds, as Prometheus names them (``*_seconds``), except
``voice_roundtrip_ms``, which keeps the name and unit the SmartJARVIS gateway logs it under.

CPU and memory, two views:

* ``process_cpu_seconds_total``, ``process_resident_memory_bytes`` (prometheus_client's
  standard process metrics): the gateway's main process only -- the event loop, the sockets,
  endpointing. Not recognition or synthesis.
* ``gateway_process_tree_cpu_seconds_total``: user + system CPU of the whole process tree --
  the main process, its pipeline worker processes (pocketsphinx decoding) and the espeak-ng
  processes they run -- including children that have already exited (the kernel adds a
  reaped child's CPU to its parent's ``children_*`` times, which are summed too). This is the
  gateway's CPU cost. ``gateway_process_tree_resident_memory_bytes``: the sum of the RSS of
  the processes alive now (pages shared between them, e.g. a model mapped by every worker,
  count once per process, so it overstates physical use); ``gateway_process_tree_processes``:
  how many those are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "VOICE_ROUNDTRIP_BUCKETS_MS", "GatewayMetrics", "ProcessTreeCollector"]

STAGES = ("recognize", "nlu", "synth", "total")
_STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
# The guide's roundtrip band edges (100 ms excellent, 500 ms good, 1 s slow) are bucket edges,
# so a band's share is exact from the histogram; the others give the P95 its resolution.
VOICE_ROUNDTRIP_BUCKETS_MS = (
    25,
    50,
    75,
    100,
    150,
    200,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
)


class ProcessTreeCollector(Collector):
    """CPU and RSS of a process and all its descendants, read at scrape time (see the module docstring)."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid or os.getpid())
        self._cpu_seconds_max = 0.0

    def collect(self) -> Iterator[Metric]:
        cpu_seconds = rss_bytes = 0.0
        count = 0
        try:
            tree = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            tree = [self._process]
        for process in tree:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except psutil.Error:  # exited between the listing and the read: counted by its parent once reaped
                continue
            cpu_seconds += times.user + times.system + times.children_user + times.children_system
            rss_bytes += rss
            count += 1
        # A child that exits between two scrapes is briefly in neither sum (gone from the
        # tree, not yet reaped into its parent's children_* times): a counter never goes down.
        self._cpu_seconds_max = max(self._cpu_seconds_max, cpu_seconds)
        cpu = CounterMetricFamily(
            "gateway_process_tree_cpu_seconds",
            "User + system CPU of the gateway's main process, its pipeline workers and their "
            "children (espeak-ng), exited ones included",
        )
        cpu.add_metric([], self._cpu_seconds_max)
        yield cpu
        yield GaugeMetricFamily(
            "gateway_process_tree_resident_memory_bytes",
            "Sum of the resident memory of the gateway's live processes (shared pages count once per process)",
            value=rss_bytes,
        )
        yield GaugeMetricFamily(
            "gateway_process_tree_processes", "Live processes in the gateway's process tree", value=count
        )


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # CPU and memory of the gateway process: the guide's performance scenario watches them.
        ProcessCollector(registry=r)
        # ... and of the whole tree: the worker processes are where recognition runs.
        r.register(ProcessTreeCollector())
        self.sessions_active = Gauge("voicegw_sessions_active", "Open WebSocket sessions", registry=r)
        self.sessions_total = Counter("voicegw_sessions", "WebSocket sessions accepted", registry=r)
        self.upgrades_refused = Counter(
            "voicegw_upgrades_refused", "WebSocket upgrades refused, by HTTP status", ["status"], registry=r
        )
        self.protocol_errors = Counter(
            "voicegw_protocol_errors",
            "Sessions closed for a protocol error, by close code",
            ["code"],
            registry=r,
        )
        self.frames_received = Counter("voicegw_audio_frames_received", "PCM16 frames received", registry=r)
        self.queue_drops = Counter(
            "voicegw_queue_dropped_frames",
            "Audio frames dropped from a full session queue (oldest first)",
            registry=r,
        )
        self.utterances = Counter(
            "voicegw_utterances",
            "Utterances ended, by reason (silence, marker, max_length)",
            ["reason"],
            registry=r,
        )
        self.turns = Counter("voicegw_turns", "Replies sent, by intent", ["intent"], registry=r)
        self.turn_errors = Counter("voicegw_turn_errors", "Turns whose pipeline call failed", registry=r)
        self.stage_seconds = Histogram(
            "voicegw_stage_seconds",
            "Time per turn stage: recognize, nlu, synth (pipeline) and total (end of utterance to reply sent)",
            ["stage"],
            buckets=_STAGE_BUCKETS_S,
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "voicegw_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer",
            buckets=_LAG_BUCKETS_S,
            registry=r,
        )
        self.loop_lag_max_seconds = Gauge(
            "voicegw_event_loop_lag_max_seconds",
            "Largest event-loop lag since the gateway started",
            registry=r,
        )
        self.ready = Gauge("voicegw_ready", "1 when /readyz answers 200", registry=r)
        self.voice_roundtrip_ms = Histogram(
            "voice_roundtrip_ms",
            "Per reply, milliseconds from the last audio message received on the session to the "
            "reply sent (the SmartJARVIS gateway's definition and name; while a client still "
            "streams silence, it counts from the latest silence message)",
            buckets=VOICE_ROUNDTRIP_BUCKETS_MS,
            registry=r,
        )
        for stage in STAGES:  # so every stage shows in /metrics before the first turn
            self.stage_seconds.labels(stage)

    def observe_stage_ms(self, stage: str, milliseconds: float) -> None:
        self.stage_seconds.labels(stage).observe(max(0.0, milliseconds) / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
