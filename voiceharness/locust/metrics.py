"""The run's voice metrics, live, for Prometheus: ``--voice-metrics-port PORT`` serves ``/metrics``.

The endpoint lives on the process that owns the run's records — the master in a distributed
run, the only process otherwise — and is fed by what already reaches that process: every turn
record (:meth:`~voiceharness.locust.records.TurnSink.add_listener`; workers ship theirs to the
master) and every resource sample (:meth:`~voiceharness.locust.resources.ResourceMonitor.add_listener`).
So a worker that joins adds its label values and one that leaves keeps what it counted: the
counters are the master's, never reset while it runs. Labels are ``intent`` (the turn's
*expected* intent: a bounded set from the corpus, never what a gateway says), ``dialect`` and
``worker`` (``host:pid``); never utterance ids or transcripts.

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
``voiceharness_intent_checked_total``           counter    turns with an expected intent
``voiceharness_intent_correct_total``           counter    ... whose recognised intent was the expected one
``voiceharness_reconnections_total``            counter    reconnects of the users' connections
``voiceharness_users``                          gauge      users running now (all workers)
``voiceharness_workers``                        gauge      load generators connected (1 when standalone)
``voiceharness_loadgen_users``                  gauge      users on each load generator
``voiceharness_loadgen_cpu_percent``            gauge      CPU of each load generator over its last sample
``voiceharness_loadgen_resident_memory_bytes``  gauge      RSS of each load generator
``voiceharness_loadgen_send_lateness_p99_ms``   gauge      p99 frame send lateness since its last sample
``voiceharness_loadgen_frames_sent_total``      counter    audio frames each load generator sent
==============================================  =========  ==============================================

Times are milliseconds, as the guide and the gateway's ``voice_roundtrip_ms`` have them; the
histograms' bucket edges include the guide's band edges (roundtrip 100/500/1000 ms, ping
50/100/200 ms), so a band's share is exact, and the roundtrip's edges are the gateway's own.
Turns cut short by the end of the run (``run_stopped``) are counted in ``turns_total`` only,
as the analysis counts them apart; the timings and intent counters hold the judged turns,
so ``histogram_quantile(0.95, ...)`` is the analysis's p95 to within a bucket. The
load-generator gauges of a worker whose samples stopped coming (it left) disappear after
:data:`STALE_AFTER_S`.

``--voice-metrics-linger-s S`` keeps serving S seconds after the run's last records came in,
before the process exits, so a Prometheus scraping every S/2 seconds sees the final counts
of a headless run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import gevent
from gevent.pywsgi import WSGIServer
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voiceharness import guide
from voiceharness.errors import UsageError
from voiceharness.live_stats import RUN_STOPPED
from voiceharness.locust import resources
from voiceharness.locust.records import TurnSink

log = logging.getLogger("voice.metrics")

PREFIX = "voiceharness"
LABELS = ("intent", "dialect", "worker")
NO_INTENT = "(none)"  # a turn that expected no particular intent
UNCLASSIFIED = "unclassified"  # a failed turn without a diagnosis code (as the analysis says)
# A worker's gauges go when no sample came for this long (it samples every 2 s).
STALE_AFTER_S = 5 * resources.SAMPLE_INTERVAL_S

# The gateway's voice_roundtrip_ms edges (gateway/metrics.py), so the two compare bucket for
# bucket; they hold the guide's roundtrip band edges.
ROUNDTRIP_BUCKETS_MS = (25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
# The guide's latency band edges (50/100/200 ms) and finer ones below: loopback pings take ~1 ms.
PING_BUCKETS_MS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)
# A full reply lasts as long as its audio is streamed: seconds.
REPLY_BUCKETS_MS = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000)
CONNECT_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
assert set(guide.ROUNDTRIP_EDGES_MS) <= set(ROUNDTRIP_BUCKETS_MS)
assert set(guide.LATENCY_EDGES_MS) <= set(PING_BUCKETS_MS)

# turn-record column -> (metric name, help, buckets)
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "roundtrip_ms": ("roundtrip_ms", "End of speech to the first reply audio, per turn (ms)", ROUNDTRIP_BUCKETS_MS),
    "audible_ms": ("audible_ms", "End of speech to the first audible reply sample, per turn (ms)",
                   ROUNDTRIP_BUCKETS_MS),
    "intent_ms": ("intent_ms", "End of speech to the intent, per turn (ms)", ROUNDTRIP_BUCKETS_MS),
    "reply_ms": ("reply_ms", "End of speech to the last reply audio (the full reply), per turn (ms)",
                 REPLY_BUCKETS_MS),
    "ping_ms": ("ping_ms", "The connection's latest WebSocket ping to pong at the end of each turn (ms)",
                PING_BUCKETS_MS),
    "connect_ms": ("connect_ms", "TCP + TLS + WebSocket upgrade, per new connection (ms)", CONNECT_BUCKETS_MS),
}


def _number(value: Any) -> float:
    """A record cell as a float; NaN when empty (not observed) or not a number."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def outcome(row: dict[str, Any]) -> str:
    """success, failure or run_stopped: how the analysis counts a turn."""
    if _number(row.get("success")) > 0:
        return "success"
    return "run_stopped" if row.get("failure") == RUN_STOPPED else "failure"


class VoiceMetrics:
    """The metrics of one run, in a registry of their own (several can live in one process)."""

    def __init__(self, environment=None, registry: CollectorRegistry | None = None) -> None:
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
        self.load_generators = LoadGenerators(environment)
        r.register(self.load_generators)
        # (worker, user) -> that user's reconnections so far: a record carries the running total
        self._reconnections_seen: dict[tuple[str, str], int] = {}

    def observe_turn(self, row: dict[str, Any]) -> None:
        """Count one turn record (a row of the turns file, as :func:`voiceharness.turns.record_row` makes it)."""
        worker = str(row.get("worker") or "")
        dialect = str(row.get("dialect") or "")
        labels = (str(row.get("expected_intent") or NO_INTENT), dialect, worker)
        result = outcome(row)
        self.turns.labels(*labels, result).inc()
        self._count_reconnections(row, dialect, worker)
        if result == "run_stopped":
            return
        if result == "failure":
            self.diagnoses.labels(*labels, str(row.get("failure") or UNCLASSIFIED)).inc()
        for column, histogram in self.histograms.items():
            value = _number(row.get(column))
            if not math.isnan(value):
                histogram.labels(*labels).observe(value)
        if row.get("expected_intent"):
            self.intent_checked.labels(*labels).inc()
            if row.get("intent") == row.get("expected_intent"):
                self.intent_correct.labels(*labels).inc()

    def _count_reconnections(self, row: dict[str, Any], dialect: str, worker: str) -> None:
        counter = self.reconnections.labels(dialect, worker)  # there, at 0, from a worker's first turn
        total = _number(row.get("reconnections"))
        if math.isnan(total):
            return
        key = (worker, str(row.get("user")))
        before = self._reconnections_seen.get(key, 0)
        if total > before:
            counter.inc(total - before)
            self._reconnections_seen[key] = int(total)

    def observe_sample(self, sample: dict[str, Any]) -> None:
        self.load_generators.accept(sample)


class LoadGenerators(Collector):
    """Users and load-generator gauges, read at scrape time: the runner's user count, and each
    worker's latest resource sample while it keeps sending them."""

    def __init__(self, environment=None) -> None:
        self.environment = environment
        self.latest: dict[str, tuple[float, dict[str, Any]]] = {}  # worker -> (monotonic s received, sample)
        self.frames_sent: dict[str, int] = {}

    def accept(self, sample: dict[str, Any]) -> None:
        worker = str(sample.get("worker") or "")
        self.latest[worker] = (time.monotonic(), sample)
        frames = _number(sample.get("frames_sent"))
        if not math.isnan(frames):
            self.frames_sent[worker] = self.frames_sent.get(worker, 0) + int(frames)

    def collect(self) -> Iterator[Metric]:
        runner = self.environment.runner if self.environment is not None else None
        now = time.monotonic()
        fresh = {worker: sample for worker, (received, sample) in self.latest.items()
                 if now - received <= STALE_AFTER_S}
        users = GaugeMetricFamily(f"{PREFIX}_users", "Users running now, on every load generator")
        users.add_metric([], runner.user_count if runner is not None else 0)
        yield users
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "Load generators connected (1 in a standalone run)")
        workers.add_metric([], runner.worker_count if isinstance(runner, MasterRunner) else 1)
        yield workers
        gauges = {
            "users": GaugeMetricFamily(f"{PREFIX}_loadgen_users", "Users on each load generator", labels=["worker"]),
            "worker_cpu_percent": GaugeMetricFamily(
                f"{PREFIX}_loadgen_cpu_percent", "CPU of each load generator over its last sample (% of one core)",
                labels=["worker"]),
            "worker_rss_mb": GaugeMetricFamily(
                f"{PREFIX}_loadgen_resident_memory_bytes", "Resident memory of each load generator",
                labels=["worker"]),
            "send_lateness_p99_ms": GaugeMetricFamily(
                f"{PREFIX}_loadgen_send_lateness_p99_ms",
                "p99 lateness of the audio frames each load generator sent since its last sample (ms)",
                labels=["worker"]),
        }
        scale = {"worker_rss_mb": 2**20}
        for worker, sample in sorted(fresh.items()):
            for key, family in gauges.items():
                value = _number(sample.get(key))
                if not math.isnan(value):  # no frames sent in the interval: no lateness to report
                    family.add_metric([worker], value * scale.get(key, 1))
        yield from gauges.values()
        frames = CounterMetricFamily(f"{PREFIX}_loadgen_frames_sent", "Audio frames each load generator sent",
                                     labels=["worker"])
        for worker, count in sorted(self.frames_sent.items()):
            frames.add_metric([worker], count)
        yield frames


class MetricsServer:
    """``/metrics`` of a :class:`VoiceMetrics` on gevent's WSGI server, beside Locust's own web UI."""

    def __init__(self, metrics: VoiceMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        app = make_wsgi_app(metrics.registry)
        self.server = WSGIServer((host, port), app, log=None, error_log=log)

    def start(self) -> None:
        try:
            self.server.start()
        except OSError as error:
            host, port = self.server.address[:2]
            raise UsageError(f"--voice-metrics-port {port}: cannot listen on {host or '*'}:{port} ({error.strerror}); "
                             "pick a free port") from None

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.stop(timeout=1)


class _State:
    metrics: VoiceMetrics | None = None
    server: MetricsServer | None = None
    linger_s = 0.0


@events.init_command_line_parser.add_listener
def add_metrics_options(parser) -> None:
    parser.add_argument("--voice-metrics-port", type=int, default=0, include_in_web_ui=False,
                        help="Serve the run's voice metrics for Prometheus at http://HOST:PORT/metrics on the process "
                             "that owns the records (the master, or the only process); default 0: off")
    parser.add_argument("--voice-metrics-host", default="", include_in_web_ui=False,
                        help="Address the metrics endpoint listens on (default: all interfaces, as the web UI)")
    parser.add_argument("--voice-metrics-linger-s", type=float, default=0.0, include_in_web_ui=False,
                        help="Keep serving the metrics this long after the run's last records, before exiting, so "
                             "Prometheus scrapes the final counts (give twice the scrape interval; default 0)")


def install(environment, *, host: str = "", port: int = 0, linger_s: float = 0.0) -> VoiceMetrics:
    """Count this process's records and samples; serve them on ``port`` when it is not 0 (0 in tests)."""
    # Each counter's *_created sample is one more series per label set, which no panel reads.
    disable_created_metrics()
    metrics = VoiceMetrics(environment)
    _State.metrics, _State.linger_s = metrics, linger_s
    if port:
        server = MetricsServer(metrics, host, port)
        server.start()
        _State.server = server
        log.info("voice metrics for Prometheus: http://%s:%d/metrics", host or "0.0.0.0", server.port)
    return metrics


def _on_turn(row: dict[str, Any]) -> None:
    if _State.metrics is not None:
        _State.metrics.observe_turn(row)


def _on_sample(sample: dict[str, Any]) -> None:
    if _State.metrics is not None:
        _State.metrics.observe_sample(sample)


# Once per process; they do nothing until install() made the metrics (only with --voice-metrics-port).
TurnSink.add_listener(_on_turn)
resources.ResourceMonitor.add_listener(_on_sample)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:
        return
    port = getattr(options, "voice_metrics_port", 0) or 0
    if not port:
        return
    if isinstance(environment.runner, WorkerRunner):
        log.debug("--voice-metrics-port is served by the master, which has the records; not by a worker")
        return
    if not 0 < port < 65536:
        _fail(environment, UsageError(f"--voice-metrics-port {port}: give a TCP port, 1-65535"))
    if options.voice_metrics_linger_s < 0:
        _fail(environment, UsageError(f"--voice-metrics-linger-s must be 0 or more, got {options.voice_metrics_linger_s}"))
    try:
        install(environment, host=options.voice_metrics_host, port=port, linger_s=options.voice_metrics_linger_s)
    except UsageError as error:
        _fail(environment, error)


def _fail(environment, error: UsageError) -> None:
    log.error("%s", error)
    environment.process_exit_code = 2
    if environment.runner is not None:
        environment.runner.quit()
    raise SystemExit(2)


# Module-level, so it is added before the init-time ``quitting`` listener of run_status (Locust
# fires ``quitting`` in reverse order): by now the users are stopped and the master has waited
# for the workers' last records; this keeps the endpoint up for Prometheus's last scrape.
@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    server = _State.server
    if server is None:
        return
    if _State.linger_s > 0:
        log.info("voice metrics: serving the final counts %.0f s more (--voice-metrics-linger-s)", _State.linger_s)
        gevent.sleep(_State.linger_s)
    server.stop()
    _State.server = None
