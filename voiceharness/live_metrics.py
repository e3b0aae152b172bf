"""The run's voice metrics as Prometheus metrics: turn records and resource samples in, series out.

:class:`VoiceMetrics` counts what the process that owns a run's records receives — every turn
record, as :func:`voiceharness.turns.record_row` makes it, and every load generator's resource
sample — in a prometheus_client registry of its own. :mod:`voiceharness.locust.metrics` feeds
it during a Locust run and serves the registry at ``/metrics`` (``--voice-metrics-port``).
Nothing here imports Locust.

Labels are ``intent`` (the turn's *expected* intent: a bounded set from the corpus, never what
a gateway answered), ``dialect`` and ``worker`` (``host:pid``); never utterance ids or
transcripts.

==============================================  =========  ==============================================
metric                                          type       what
==============================================  =========  ==============================================
``voiceharness_roundtrip_ms``                   histogram  end of speech → first reply audio
``voiceharness_audible_ms``                     histogram  end of speech → first audible reply sample
``voiceharness_intent_ms``                      histogram  end of speech → the intent
``voiceharness_reply_ms``                       histogram  end of speech → last reply audio (full reply)
``voiceharness_ping_ms``                        histogram  the connection's latest ping → pong, per turn
``voiceharness_connect_ms``                     histogram  TCP + TLS + upgrade, per new connection
``voiceharness_turns_total``                    counter    turns by ``outcome``: success, failure, run_stopped
``voiceharness_diagnoses_total``                counter    failed turns by ``diagnosis`` code
``voiceharness_intent_checked_total``           counter    judged turns that expected an intent
``voiceharness_intent_correct_total``           counter    ... whose recognised intent was the expected one
``voiceharness_reconnections_total``            counter    reconnects of the users' connections
``voiceharness_users``                          gauge      users running now (all load generators)
``voiceharness_workers``                        gauge      load generators connected (1 when standalone)
``voiceharness_loadgen_users``                  gauge      users on each load generator
``voiceharness_loadgen_cpu_percent``            gauge      CPU of each load generator over its last sample
``voiceharness_loadgen_resident_memory_bytes``  gauge      RSS of each load generator
``voiceharness_loadgen_send_lateness_p99_ms``   gauge      p99 frame send lateness since its last sample
``voiceharness_loadgen_frames_sent_total``      counter    audio frames each load generator sent
``voiceharness_calls_total``                    counter    open-model calls by ``outcome``: completed, failed,
                                                           run_stopped, not_started_on_time, harness_limit
``voiceharness_call_failures_total``            counter    failed calls by the ``diagnosis`` of their failed turn
``voiceharness_calls_active``                   gauge      open-model calls in progress (all load generators)
``voiceharness_network_roundtrip_ms``           histogram  roundtrip by ``network`` profile (``--network`` turns)
``voiceharness_network_uplink_backlog_ms``      histogram  the emulated uplink's backlog at the stream's end, by profile
``voiceharness_network_turns_total``            counter    turns by ``network`` profile and ``outcome``
==============================================  =========  ==============================================

The ``network_*`` series exist only for turns run on an emulated link (``--network``,
docs/networks.md), labelled by its profile: a bounded set (the named profiles and ``custom``).

Conventions, the analysis's (:mod:`analysis.metrics`):

* Times are milliseconds, as the guide and the gateway's ``voice_roundtrip_ms`` have them. The
  histograms' bucket edges include the guide's band edges (roundtrip 100/500/1000 ms, ping
  50/100/200 ms), so a band's share is exact; the roundtrip's edges are the gateway's own, so
  the two compare bucket for bucket.
* Turns cut short by the end of the run (``run_stopped``) are counted in ``turns_total`` only;
  the timings, diagnoses and intent counters hold the judged turns, so
  ``histogram_quantile(0.95, ...)`` is the analysis's exact p95 to within a bucket.
* Reconnections: a record carries its user's reconnections so far; the counter adds each
  user's increase, so it is the sum over users of their largest value.
* Counters only grow: a worker that leaves keeps what it counted. The load-generator gauges
  of a worker whose samples stopped coming disappear after :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voiceharness.live_stats import RUN_STOPPED

PREFIX = "voiceharness"
LABELS = ("intent", "dialect", "worker")
NO_INTENT = "(none)"  # a turn that expected no particular intent (as the analysis shows it)
UNCLASSIFIED = "unclassified"  # a failed turn without a diagnosis code (as the analysis says)
# Load generators sample every 2 s (voiceharness.locust.resources); five missed samples: gone.
STALE_AFTER_S = 10.0

# The gateway's voice_roundtrip_ms edges (gateway/metrics.py), which hold the guide's band edges.
ROUNDTRIP_BUCKETS_MS = (25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
# The guide's latency band edges (50/100/200 ms) and finer ones below: loopback pings take ~1 ms.
PING_BUCKETS_MS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)
# A full reply lasts as long as its audio is streamed: seconds.
REPLY_BUCKETS_MS = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000)
CONNECT_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# turn-record column -> (metric name without the prefix, help, bucket edges)
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "roundtrip_ms": ("roundtrip_ms", "End of speech to the first reply audio, per turn (ms)", ROUNDTRIP_BUCKETS_MS),
    "audible_ms": ("audible_ms", "End of speech to the first audible reply sample, per turn (ms)",
                   ROUNDTRIP_BUCKETS_MS),
    "intent_ms": ("intent_ms", "End of speech to the intent, per turn (ms)", ROUNDTRIP_BUCKETS_MS),
    "reply_ms": ("reply_ms", "End of speech to the last reply audio (the full reply), per turn (ms)",
                 REPLY_BUCKETS_MS),
    "ping_ms": ("ping_ms", "The connection's latest WebSocket ping to pong, at the end of each turn (ms)",
                PING_BUCKETS_MS),
    "connect_ms": ("connect_ms", "TCP + TLS + WebSocket upgrade, per new connection (ms)", CONNECT_BUCKETS_MS),
}

# Audio queued in an emulated uplink: a frame (64 ms) to seconds (3g queues ~40 % of a command)
BACKLOG_BUCKETS_MS = (64, 128, 256, 512, 1000, 2000, 4000, 8000)

# resource-sample key -> (metric name without the prefix, help, scale to the metric's unit)
LOADGEN_GAUGES: dict[str, tuple[str, str, float]] = {
    "users": ("loadgen_users", "Users on each load generator", 1.0),
    "worker_cpu_percent": ("loadgen_cpu_percent",
                           "CPU of each load generator over its last sample (% of one core)", 1.0),
    "worker_rss_mb": ("loadgen_resident_memory_bytes", "Resident memory of each load generator", 2.0**20),
    "send_lateness_p99_ms": ("loadgen_send_lateness_p99_ms",
                             "p99 lateness of the audio frames each load generator sent since its last sample (ms)",
                             1.0),
}


def number(value: Any) -> float:
    """A record or sample cell as a float; NaN when empty (not observed) or not a number."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def outcome(row: dict[str, Any]) -> str:
    """``success``, ``failure`` or ``run_stopped``: how the analysis counts a turn."""
    if number(row.get("success")) > 0:
        return "success"
    return RUN_STOPPED if row.get("failure") == RUN_STOPPED else "failure"


class VoiceMetrics:
    """The live metrics of one run, in a registry of their own (several can live in one process).

    ``users()`` and ``workers()`` are read at scrape time (Locust's runner in a run).
    """

    def __init__(self, *, users: Callable[[], float] = lambda: 0, workers: Callable[[], float] = lambda: 1,
                 active_calls: Callable[[], float] = lambda: 0, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.histograms = {
            column: Histogram(f"{PREFIX}_{name}", text, LABELS, buckets=buckets, registry=r)
            for column, (name, text, buckets) in HISTOGRAMS.items()
        }
        self.turns = Counter(f"{PREFIX}_turns", "Turns ended, by outcome (success, failure, run_stopped)",
                             (*LABELS, "outcome"), registry=r)
        self.diagnoses = Counter(f"{PREFIX}_diagnoses", "Failed turns, by diagnosis code",
                                 (*LABELS, "diagnosis"), registry=r)
        self.intent_checked = Counter(f"{PREFIX}_intent_checked", "Judged turns that expected an intent",
                                      LABELS, registry=r)
        self.intent_correct = Counter(f"{PREFIX}_intent_correct",
                                      "Judged turns whose recognised intent was the expected one", LABELS, registry=r)
        self.reconnections = Counter(f"{PREFIX}_reconnections", "Reconnects of the users' connections",
                                     ("dialect", "worker"), registry=r)
        self.calls = Counter(f"{PREFIX}_calls", "Open-model calls offered, by outcome", ("worker", "outcome"),
                             registry=r)
        self.call_failures = Counter(f"{PREFIX}_call_failures", "Failed open-model calls, by the diagnosis of "
                                     "their failed turn", ("worker", "diagnosis"), registry=r)
        self.network_roundtrip = Histogram(f"{PREFIX}_network_roundtrip_ms",
                                           "End of speech to the first reply audio, by --network profile (ms)",
                                           ("network",), buckets=ROUNDTRIP_BUCKETS_MS, registry=r)
        self.network_backlog = Histogram(f"{PREFIX}_network_uplink_backlog_ms",
                                         "Audio queued in the emulated uplink at the stream's end, by --network "
                                         "profile (ms of audio)", ("network",), buckets=BACKLOG_BUCKETS_MS, registry=r)
        self.network_turns = Counter(f"{PREFIX}_network_turns", "Turns ended, by --network profile and outcome",
                                     ("network", "outcome"), registry=r)
        self.load_generators = LoadGenerators(users=users, workers=workers, active_calls=active_calls)
        r.register(self.load_generators)
        # (worker, user) -> that user's reconnections so far: a record carries the running total
        self._reconnections_seen: dict[tuple[str, str], float] = {}

    def observe_turn(self, row: dict[str, Any]) -> None:
        """Count one turn record (a row of the turns file)."""
        worker = str(row.get("worker") or "")
        dialect = str(row.get("dialect") or "")
        labels = (str(row.get("expected_intent") or NO_INTENT), dialect, worker)
        result = outcome(row)
        self.turns.labels(*labels, result).inc()
        self._count_reconnections(row, dialect, worker)
        profile = str(row.get("network_profile") or "")
        if profile:
            self._observe_network(row, profile, result)
        if result == RUN_STOPPED:
            return
        if result == "failure":
            self.diagnoses.labels(*labels, str(row.get("failure") or UNCLASSIFIED)).inc()
        for column, histogram in self.histograms.items():
            value = number(row.get(column))
            if not math.isnan(value):
                histogram.labels(*labels).observe(value)
        if row.get("expected_intent"):
            self.intent_checked.labels(*labels).inc()
            correct = self.intent_correct.labels(*labels)  # at 0 until one is right: accuracy 0, not no data
            if row.get("intent") == row.get("expected_intent"):
                correct.inc()

    def _observe_network(self, row: dict[str, Any], profile: str, result: str) -> None:
        self.network_turns.labels(profile, result).inc()
        if result == RUN_STOPPED:
            return
        for value, histogram in ((number(row.get("roundtrip_ms")), self.network_roundtrip),
                                 (number(row.get("uplink_backlog_ms")), self.network_backlog)):
            if not math.isnan(value):
                histogram.labels(profile).observe(value)

    def _count_reconnections(self, row: dict[str, Any], dialect: str, worker: str) -> None:
        counter = self.reconnections.labels(dialect, worker)  # there, at 0, from a worker's first turn
        total = number(row.get("reconnections"))
        if math.isnan(total):
            return
        key = (worker, str(row.get("user")))
        before = self._reconnections_seen.get(key, 0.0)
        if total > before:
            counter.inc(total - before)
            self._reconnections_seen[key] = total

    def observe_call(self, row: dict[str, Any]) -> None:
        """Count one call record (a row of the calls file, :mod:`voiceharness.calls`)."""
        worker = str(row.get("worker") or "")
        result = str(row.get("outcome") or "")
        self.calls.labels(worker, result).inc()
        if result == "failed":
            self.call_failures.labels(worker, str(row.get("diagnosis") or UNCLASSIFIED)).inc()

    def observe_sample(self, sample: dict[str, Any], *, now: float | None = None) -> None:
        """Take one load generator's resource sample (``now``: when it came, monotonic seconds)."""
        self.load_generators.accept(sample, now=now)


class LoadGenerators(Collector):
    """Users and load-generator gauges, read at scrape time: the run's user count, and each
    worker's latest resource sample while it keeps sending them."""

    def __init__(self, *, users: Callable[[], float], workers: Callable[[], float],
                 active_calls: Callable[[], float] = lambda: 0) -> None:
        self.users = users
        self.workers = workers
        self.active_calls = active_calls
        self.latest: dict[str, tuple[float, dict[str, Any]]] = {}  # worker -> (monotonic s received, sample)
        self.frames_sent: dict[str, int] = {}

    def accept(self, sample: dict[str, Any], *, now: float | None = None) -> None:
        worker = str(sample.get("worker") or "")
        self.latest[worker] = (time.monotonic() if now is None else now, sample)
        frames = number(sample.get("frames_sent"))
        if not math.isnan(frames):
            self.frames_sent[worker] = self.frames_sent.get(worker, 0) + int(frames)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_users", "Users running now, on every load generator", value=self.users())
        yield GaugeMetricFamily(f"{PREFIX}_workers", "Load generators connected (1 in a standalone run)",
                                value=self.workers())
        yield GaugeMetricFamily(f"{PREFIX}_calls_active", "Open-model calls in progress, on every load generator",
                                value=self.active_calls())
        now = time.monotonic()
        fresh = sorted((worker, sample) for worker, (received, sample) in self.latest.items()
                       if now - received <= STALE_AFTER_S)
        for key, (name, text, scale) in LOADGEN_GAUGES.items():
            family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=["worker"])
            for worker, sample in fresh:
                value = number(sample.get(key))
                if not math.isnan(value):  # e.g. no frames sent in the interval: no lateness to report
                    family.add_metric([worker], value * scale)
            yield family
        frames = CounterMetricFamily(f"{PREFIX}_loadgen_frames_sent", "Audio frames each load generator sent",
                                     labels=["worker"])
        for worker, count in sorted(self.frames_sent.items()):
            frames.add_metric([worker], count)
        yield frames
