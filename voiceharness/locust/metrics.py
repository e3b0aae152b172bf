"""``--voice-metrics-port PORT``: the run's voice metrics for Prometheus, live, at ``/metrics``.

The endpoint lives on the process that owns the run's records — the master in a distributed
run, the only process otherwise — and counts what already reaches that process: every turn
record (:meth:`TurnSink.add_listener <voiceharness.locust.records.TurnSink.add_listener>`;
workers ship theirs to the master) and every load generator's resource sample
(:meth:`ResourceMonitor.add_listener <voiceharness.locust.resources.ResourceMonitor.add_listener>`).
So a worker that joins adds its label values and one that leaves keeps what it counted; the
counters are the master's and never reset while it runs. The metrics, their labels and
conventions are :mod:`voiceharness.live_metrics`'s.

Options (this module's own ``init_command_line_parser`` listener): ``--voice-metrics-port``
(0: off), ``--voice-metrics-host`` (default all interfaces, as Locust's web UI), and
``--voice-metrics-linger-s S``: keep serving S seconds after the run's last records came in,
before the process exits, so a Prometheus that scrapes at least every S/2 seconds sees the
final counts of a headless run. On a worker the options do nothing: its records are the master's.

The server is gevent's WSGI server (the one Locust's web UI runs on) with prometheus_client's
WSGI app, so a scrape is a greenlet of this process like any other.
"""

from __future__ import annotations

import logging

import gevent
from gevent.pywsgi import WSGIServer
from locust import events
from locust.runners import MasterRunner, WorkerRunner
from prometheus_client import disable_created_metrics, make_wsgi_app

from voiceharness.errors import UsageError
from voiceharness.live_metrics import VoiceMetrics
from voiceharness.locust.records import TurnSink
from voiceharness.locust.resources import ResourceMonitor

log = logging.getLogger("voice.metrics")


class MetricsServer:
    """``/metrics`` of a :class:`VoiceMetrics` registry, beside Locust's own web UI."""

    def __init__(self, metrics: VoiceMetrics, host: str, port: int) -> None:
        self.metrics = metrics
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


class _State:
    metrics: VoiceMetrics | None = None
    server: MetricsServer | None = None
    linger_s = 0.0


@events.init_command_line_parser.add_listener
def add_metrics_options(parser) -> None:
    parser.add_argument("--voice-metrics-port", type=int, default=0, include_in_web_ui=False,
                        help="Serve the run's voice metrics for Prometheus at http://HOST:PORT/metrics, on the process "
                             "that owns the records (the master, or the only process). Default 0: off")
    parser.add_argument("--voice-metrics-host", default="", include_in_web_ui=False,
                        help="Address the metrics endpoint listens on (default: all interfaces, as the web UI)")
    parser.add_argument("--voice-metrics-linger-s", type=float, default=0.0, include_in_web_ui=False,
                        help="Keep serving the metrics this long after the run's last records, before exiting, so "
                             "Prometheus scrapes the final counts (twice its scrape interval). Default 0")


def install(environment, *, host: str, port: int, linger_s: float = 0.0) -> MetricsServer:
    """Count this process's records and samples from now on, and serve them on ``host:port``."""
    runner = environment.runner
    # Each counter's *_created sample would be one more series per label set, which no panel reads.
    disable_created_metrics()
    metrics = VoiceMetrics(
        users=lambda: runner.user_count if runner is not None else 0,
        workers=lambda: runner.worker_count if isinstance(runner, MasterRunner) else 1,
    )
    server = MetricsServer(metrics, host, port)
    server.start()
    _State.metrics, _State.server, _State.linger_s = metrics, server, linger_s
    log.info("voice metrics for Prometheus: http://%s:%d/metrics", host or "0.0.0.0", server.port)
    return server


def _on_turn(row) -> None:
    if _State.metrics is not None:
        _State.metrics.observe_turn(row)


def _on_sample(sample) -> None:
    if _State.metrics is not None:
        _State.metrics.observe_sample(sample)


# Once per process; they count nothing until install() made the metrics.
TurnSink.add_listener(_on_turn)
ResourceMonitor.add_listener(_on_sample)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    options = environment.parsed_options
    port = getattr(options, "voice_metrics_port", 0) if options is not None else 0
    if not port:
        return
    if isinstance(environment.runner, WorkerRunner):
        log.debug("--voice-metrics-port is served by the master, which has the records; not by a worker")
        return
    try:
        if not 0 < port < 65536:
            raise UsageError(f"--voice-metrics-port {port}: give a TCP port, 1-65535")
        if options.voice_metrics_linger_s < 0:
            raise UsageError(f"--voice-metrics-linger-s must be 0 or more, got {options.voice_metrics_linger_s}")
        install(environment, host=options.voice_metrics_host, port=port, linger_s=options.voice_metrics_linger_s)
    except UsageError as error:
        log.error("%s", error)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()
        raise SystemExit(2) from None


# Added at import, so before run_status's init-time ``quitting`` listener, and Locust fires
# ``quitting`` in reverse order: this runs once the users are stopped and the master has waited
# for the workers' last records, and keeps the endpoint up for Prometheus's last scrape.
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
