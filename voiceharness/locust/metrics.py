"""``--voice-metrics-port PORT``: the run's voice metrics for Prometheus, live, at ``/metrics``.

The endpoint lives on the process that owns the run's records — the master in a distributed
run, the only process otherwise — and counts what already reaches that process: every turn
record (:meth:`TurnSink.add_listener <voiceharness.locust.records.TurnSink.add_listener>`;
workers ship theirs to the master) and every load generator's resource sample
(:meth:`ResourceMonitor.add_listener <voiceharness.locust.resources.ResourceMonitor.add_listener>`).
So a worker that joins adds its label values and one that leaves keeps what it counted; the
counters are the master's and never reset while it runs. The metrics, their labels and
conventions are :mod:`voiceharness.live_metrics`'s.

Options (added to Locust's parser with the harness's others): ``--voice-metrics-port``
(0: off), ``--voice-metrics-host`` (default all interfaces, as Locust's web UI), and
``--voice-metrics-linger-s S``: keep serving S seconds after the run's last records came in,
before the process exits, so a Prometheus that scrapes at least every S/2 seconds sees the
final counts of a headless run. On a worker the options do nothing: its records are the master's.

The runtime (``environment.voice``) starts the server and connects it to its turn sink and its
resource monitor; it stops it at the end of the run, after the linger.

The server is gevent's WSGI server (the one Locust's web UI runs on) with prometheus_client's
WSGI app, so a scrape is a greenlet of this process like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gevent
from gevent.pywsgi import WSGIServer
from prometheus_client import disable_created_metrics, make_wsgi_app

from voiceharness.errors import UsageError
from voiceharness.live_metrics import VoiceMetrics

log = logging.getLogger("voice.metrics")


class MetricsServer:
    """``/metrics`` of a :class:`VoiceMetrics` registry, beside Locust's own web UI."""

    def __init__(self, metrics: VoiceMetrics, host: str, port: int, linger_s: float = 0.0) -> None:
        self.metrics = metrics
        self.linger_s = linger_s
        self.server = WSGIServer((host, port), make_wsgi_app(metrics.registry), log=None, error_log=log)

    def start(self) -> None:
        try:
            self.server.start()
        except OSError as error:
            host, port = self.server.address[:2]
            raise UsageError(f"--voice-metrics-port {port}: cannot listen on {host or '*'}:{port} "
                             f"({error.strerror or error}); pick a free port") from None

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def linger_and_stop(self) -> None:
        """At the end of the run: serve the final counts ``linger_s`` more, then stop."""
        if self.linger_s > 0:
            log.info("voice metrics: serving the final counts %.0f s more (--voice-metrics-linger-s)", self.linger_s)
            gevent.sleep(self.linger_s)
        self.stop()


@dataclass(frozen=True)
class MetricsOptions:
    """``--voice-metrics-port`` (0: off), ``--voice-metrics-host``, ``--voice-metrics-linger-s``."""

    port: int = 0
    host: str = ""
    linger_s: float = 0.0

    @classmethod
    def from_options(cls, options) -> MetricsOptions:
        """From Locust's parsed options; raises UsageError on a bad value."""
        port = getattr(options, "voice_metrics_port", 0) or 0
        linger_s = getattr(options, "voice_metrics_linger_s", 0.0) or 0.0
        if port and not 0 < port < 65536:
            raise UsageError(f"--voice-metrics-port {port}: give a TCP port, 1-65535")
        if linger_s < 0:
            raise UsageError(f"--voice-metrics-linger-s must be 0 or more, got {linger_s}")
        return cls(port=port, host=getattr(options, "voice_metrics_host", "") or "", linger_s=linger_s)


def add_metrics_options(parser) -> None:
    parser.add_argument("--voice-metrics-port", type=int, default=0, include_in_web_ui=False,
                        help="Serve the run's voice metrics for Prometheus at http://HOST:PORT/metrics, on the process "
                             "that owns the records (the master, or the only process). Default 0: off")
    parser.add_argument("--voice-metrics-host", default="", include_in_web_ui=False,
                        help="Address the metrics endpoint listens on (default: all interfaces, as the web UI)")
    parser.add_argument("--voice-metrics-linger-s", type=float, default=0.0, include_in_web_ui=False,
                        help="Keep serving the metrics this long after the run's last records, before exiting, so "
                             "Prometheus scrapes the final counts (twice its scrape interval). Default 0")


def serve(environment, options: MetricsOptions) -> MetricsServer:
    """Start serving this process's voice metrics (the caller feeds them records and samples)."""
    from locust.runners import MasterRunner

    runner = environment.runner
    # Each counter's *_created sample would be one more series per label set, which no panel reads.
    disable_created_metrics()
    metrics = VoiceMetrics(
        users=lambda: runner.user_count if runner is not None else 0,
        workers=lambda: runner.worker_count if isinstance(runner, MasterRunner) else 1,
        active_calls=lambda: environment.voice.calls.active_calls() if getattr(environment, "voice", None) else 0,
    )
    server = MetricsServer(metrics, options.host, options.port, options.linger_s)
    server.start()
    log.info("voice metrics for Prometheus: http://%s:%d/metrics", options.host or "0.0.0.0", server.port)
    return server
