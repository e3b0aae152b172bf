"""voiceharness.locust.metrics: the live metrics of real Locust runs, scraped by a real Prometheus.

* A 60 s run against the reference gateway (real recognition and synthesis; the gateway forces
  GREETING on every turn, so the corpus's other utterances fail with a diagnosis) is scraped
  every second by Debian's Prometheus, started by scripts/prometheus.sh. Afterwards the turn
  counters equal the turns file's rows by outcome, and histogram_quantile's p95 agrees with
  ``python -m analysis``'s exact p95 within one bucket; every query of the Grafana dashboard,
  run with promtool at a moment of the run, returns data.
* A distributed run (master + 2 workers) and a single-process run each expose, at their end,
  the totals of their own turns file: per outcome, diagnosis, worker, timing and intent.
* ``--otel`` with the OpenTelemetry SDK's OTLP exporter, to a receiver in this test: the run
  ends cleanly, and Locust's request-duration histogram holds at most 20 request names (intents).
"""

from __future__ import annotations

import csv
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter

import pytest
from conftest import LOCUST, LOCUSTFILE, PYTHON, ROOT, free_port, run_locust
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import PrometheusServer

from voiceharness import guide
from voiceharness.live_metrics import HISTOGRAMS, ROUNDTRIP_BUCKETS_MS

pytestmark = pytest.mark.slow

DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "voice-harness.json").read_text())
# Grafana's variables as Grafana would fill them for a 1 s scrape interval and a one-minute view
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__range": "1m"}


def read_turns(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def outcome(row: dict[str, str]) -> str:
    if row["success"] == "1":
        return "success"
    return "run_stopped" if row["failure"] == "run_stopped" else "failure"


def expected_totals(rows: list[dict[str, str]]) -> dict:
    """What the endpoint must say at the end, worked out from the turns file alone."""
    judged = [row for row in rows if outcome(row) != "run_stopped"]
    with_intent = [row for row in judged if row["expected_intent"]]
    reconnections: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["worker"], row["user"])
        reconnections[key] = max(reconnections.get(key, 0), int(row["reconnections"] or 0))
    return {
        "turns": Counter(outcome(row) for row in rows),
        "turns_by_worker": Counter(row["worker"] for row in rows),
        "diagnoses": Counter(row["failure"] or "unclassified" for row in judged if outcome(row) == "failure"),
        "timings": {column: sum(1 for row in judged if row[column] != "") for column in HISTOGRAMS},
        "intent_checked": len(with_intent),
        "intent_correct": sum(1 for row in with_intent if row["intent"] == row["expected_intent"]),
        "reconnections": sum(reconnections.values()),
    }


def scraped_totals(text: str) -> dict:
    """The same figures, read from one scrape of the endpoint."""
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def total(name: str, **labels) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    def by(name: str, label: str) -> Counter:
        counts: Counter = Counter()
        for s in samples:
            if s.name == name and s.value:
                counts[s.labels[label]] += int(s.value)
        return counts

    return {
        "turns": by("voiceharness_turns_total", "outcome"),
        "turns_by_worker": by("voiceharness_turns_total", "worker"),
        "diagnoses": by("voiceharness_diagnoses_total", "diagnosis"),
        "timings": {column: int(total(f"voiceharness_{name}_count")) for column, (name, _h, _b) in HISTOGRAMS.items()},
        "intent_checked": int(total("voiceharness_intent_checked_total")),
        "intent_correct": int(total("voiceharness_intent_correct_total")),
        "reconnections": int(total("voiceharness_reconnections_total")),
    }


def bucket_index(value_ms: float, edges=ROUNDTRIP_BUCKETS_MS) -> int:
    """Which bucket (le edge) holds a value: 0 for <= the first edge, len(edges) for +Inf."""
    return next((i for i, edge in enumerate(edges) if value_ms <= edge), len(edges))


class Scraper:
    """Scrapes an endpoint until the process serving it exits; keeps the last page it got."""

    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.process = process
        self.last = ""
        self.scrapes = 0

    def run(self, timeout_s: float = 240) -> str:
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    self.last = response.read().decode()
                    self.scrapes += 1
            except OSError:
                pass
            time.sleep(0.25)
        return self.last


# --- a 60 s run scraped by Prometheus, and the dashboard's queries --------------------------------


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory):
    """A 60 s run of 10 users against the reference gateway, scraped every second by Prometheus: the
    closed-loop scenarios and a caller user (calls arriving at 1/s); 9 users on the wifi network
    profile, 1 on 4g, so that the dashboard's by-profile panels have data too."""
    from conftest import Gateway

    directory = tmp_path_factory.mktemp("prometheus-run")
    # Real recognition and synthesis; the intent is forced to GREETING, so "hello jarvis" succeeds
    # and the corpus's other commands fail with wrong_intent: every panel has something to show.
    gateway = Gateway(free_port(), ("--fault-wrong-intent", "GREETING"), directory / "gateway.log").start()
    metrics_port = free_port()
    prometheus = PrometheusServer(directory / "prometheus", {"voiceharness": f"127.0.0.1:{metrics_port}",
                                                             "gateway": f"127.0.0.1:{gateway.port}"})
    try:
        prometheus.wait_ready()
        prefix = directory / "run"
        run = run_locust(prefix, gateway.url, "--voice-metrics-port", str(metrics_port),
                         "--voice-metrics-host", "127.0.0.1", "--voice-metrics-linger-s", "4",
                         "--turns-per-connection", "3",  # reconnections to count
                         # and open-model calls beside the closed-loop users, for the Calls panels
                         "--call-rate", "1/s", "--call-turns", "1-2", "--call-streams", "1",
                         "--network", "wifi:9,4g:1",  # the by-profile panels' series (docs/networks.md)
                         users=10, spawn_rate=5, run_time="60s", timeout_s=300,
                         locustfile=f"{LOCUSTFILE},{ROOT / 'locustfiles' / 'calls.py'}")
        ended_at = time.time()
        yield run, prometheus, ended_at
    finally:
        prometheus.stop()
        gateway.stop()


def test_prometheus_counts_every_turn_of_the_turns_file_by_outcome(scraped_run):
    run, prometheus, _ended_at = scraped_run
    assert "Traceback" not in run.output, run.output[-3000:]
    rows = read_turns(run.file("_turns.csv"))
    expected = expected_totals(rows)
    assert expected["turns"]["success"] > 5 and expected["turns"]["failure"] > 5, expected["turns"]
    # last_over_time: the last value Prometheus scraped, before the run's end made its series stale
    final = prometheus.by_label("sum by (outcome) (last_over_time(voiceharness_turns_total[10m]))", "outcome")
    assert {k: int(v) for k, v in final.items() if v} == dict(expected["turns"])
    diagnoses = prometheus.by_label("sum by (diagnosis) (last_over_time(voiceharness_diagnoses_total[10m]))",
                                    "diagnosis")
    assert {k: int(v) for k, v in diagnoses.items()} == dict(expected["diagnoses"])
    reconnections = prometheus.scalar("sum(last_over_time(voiceharness_reconnections_total[10m]))")
    assert int(reconnections) == expected["reconnections"] > 0


def test_histogram_quantile_p95_agrees_with_the_analysis_within_one_bucket(scraped_run, tmp_path):
    run, prometheus, _ended_at = scraped_run
    report_path = tmp_path / "report.json"
    analysed = subprocess.run([PYTHON, "-m", "analysis", str(run.prefix), "--no-html", "--json", str(report_path),
                               "--junit", str(tmp_path / "junit.xml"), "-q"],
                              check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report_path.exists(), analysed.stdout + analysed.stderr
    (report,) = json.loads(report_path.read_text())["runs"]
    exact_p95 = report["metrics"]["roundtrip"]["percentiles"]["p95"]
    scraped_p95 = prometheus.scalar(
        "histogram_quantile(0.95, sum by (le) (last_over_time(voiceharness_roundtrip_ms_bucket[10m])))")
    print(f"roundtrip p95: analysis (exact) {exact_p95:.1f} ms, histogram_quantile {scraped_p95:.1f} ms")
    assert abs(bucket_index(scraped_p95) - bucket_index(exact_p95)) <= 1, (scraped_p95, exact_p95)
    count = prometheus.scalar("sum(last_over_time(voiceharness_roundtrip_ms_count[10m]))")
    assert int(count) == expected_totals(read_turns(run.file("_turns.csv")))["timings"]["roundtrip_ms"]
    # the band shares are exact: the guide's edges are bucket edges
    good_or_better = prometheus.scalar(
        f'sum(last_over_time(voiceharness_roundtrip_ms_bucket{{le="{guide.ROUNDTRIP_EDGES_MS[1]:.1f}"}}[10m]))')
    rows = [r for r in read_turns(run.file("_turns.csv")) if r["roundtrip_ms"] and outcome(r) != "run_stopped"]
    assert int(good_or_better) == sum(1 for r in rows if float(r["roundtrip_ms"]) <= guide.ROUNDTRIP_EDGES_MS[1])


def test_every_dashboard_query_returns_data_from_the_run(scraped_run):
    _run, prometheus, ended_at = scraped_run
    # A moment while the users ran: before the linger and the stop, after a minute of load.
    at = ended_at - 4 - 12
    empty = []
    queries = 0
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            queries += 1
            if not prometheus.query(expr, at):
                empty.append(f"{panel['title']}: {expr}")
    assert queries >= 30
    assert not empty, "queries without data:\n" + "\n".join(empty)


# --- distributed and single-process runs: each one's totals are its own turns file's ---------------


# Locust's master counts a worker missing after 3 s without a heartbeat, and a headless master
# whose workers are all missing stops the test. A worker sets itself up (corpus, imports) only
# once connected, and its heartbeats wait meanwhile: on a loaded machine (load 9-13 on 2 cores,
# other engineers' suites) that took 8.5 s. So the workers join one at a time, each once the one
# before is set up: the first keeps the run alive while the next sets itself up.
def _run_with_endpoint(command: list[str], metrics_port: int, workers: list[list[str]] = (),
                       log_dir=None) -> tuple[str, str]:
    master = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(master.stdout), daemon=True)
    reader.start()
    worker_processes = []
    try:
        for index, argv in enumerate(workers):
            log = log_dir / f"worker-{index}.log"
            with open(log, "wb") as file:
                worker_processes.append(subprocess.Popen(argv, cwd=ROOT, stdout=file, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 120
            while "Voice harness:" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline and worker_processes[-1].poll() is None, log.read_text()[-2000:]
                time.sleep(0.2)
        last = Scraper(metrics_port, master).run()
    finally:
        for process in (master, *worker_processes):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        reader.join(10)
    return last, "".join(output)


def test_distributed_and_single_process_runs_expose_their_turns_files_totals(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-delay-ms", "20")
    common = ["-f", LOCUSTFILE, "--host", gateway.url]
    run_args = ["--headless", "-u", "6", "-r", "6", "-t", "20s", "--only-summary", "--think-time-ms", "200-600",
                "--turns-per-connection", "3", "--tags", "basic", "corpus"]
    totals = {}
    for mode in ("single", "distributed"):
        prefix = tmp_path / mode
        metrics_port = free_port()
        endpoint = ["--voice-metrics-port", str(metrics_port), "--voice-metrics-host", "127.0.0.1",
                    "--voice-metrics-linger-s", "3"]
        if mode == "single":
            last, output = _run_with_endpoint([LOCUST, *common, *run_args, *endpoint, "--csv", str(prefix)],
                                              metrics_port)
        else:
            master_port = free_port()
            # the workers get the same metrics options, as one set of arguments for every pod would
            # give them: only the master serves (a worker binding the port would fail the master)
            worker = [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port),
                      *endpoint]
            last, output = _run_with_endpoint(
                [LOCUST, *common, *run_args, *endpoint, "--csv", str(prefix), "--master",
                 "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port), "--expect-workers", "2"],
                metrics_port, workers=[worker, worker], log_dir=tmp_path)
        assert "Traceback" not in output, output[-3000:]
        rows = read_turns(f"{prefix}_turns.csv")
        expected = expected_totals(rows)
        assert last, f"{mode}: the endpoint was never scraped"
        assert scraped_totals(last) == expected, mode
        totals[mode] = expected
    assert len(totals["distributed"]["turns_by_worker"]) == 2, "both workers' turns reached the master's endpoint"
    assert len(totals["single"]["turns_by_worker"]) == 1
    for mode in totals:
        assert totals[mode]["turns"]["success"] and totals[mode]["turns"]["failure"], totals[mode]["turns"]


def test_a_taken_metrics_port_is_one_line_and_exit_2(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_locust(tmp_path / "taken", gateway.url, "--voice-metrics-port", str(port),
                         "--voice-metrics-host", "127.0.0.1", users=1, run_time="5s", timeout_s=120)
    assert run.returncode == 2, run.output[-2000:]
    assert f"--voice-metrics-port {port}: cannot listen on 127.0.0.1:{port}" in run.output
    assert "Traceback" not in run.output


# --- Locust's own OpenTelemetry export ------------------------------------------------------------


class _OtlpReceiver(http.server.ThreadingHTTPServer):
    """Collects OTLP/HTTP metric exports (protobuf) on loopback."""

    def __init__(self) -> None:
        self.metric_exports: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _OtlpHandler)


class _OtlpHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        if self.path == "/v1/metrics":
            self.server.metric_exports.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def request_names(exports: list[bytes]) -> set[str]:
    """The ``name`` attribute of every data point of Locust's request-duration histogram."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    names = set()
    for body in exports:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != "locust.client.duration":
                        continue
                    for point in metric.histogram.data_points:
                        for attribute in point.attributes:
                            if attribute.key == "name":
                                names.add(attribute.value.string_value)
    return names


def test_otel_export_names_requests_by_intent_and_keeps_within_20_names(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink")
    receiver = _OtlpReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_SERVICE_NAME": "voice-harness-test",
        }
        # The whole corpus (65 utterances) would be 65 names by utterance; by intent they are a handful.
        run = run_locust(tmp_path / "otel", gateway.url, "--otel", "--tags", "corpus", users=4, run_time="12s",
                         timeout_s=180, env=env)
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert "OpenTelemetry enabled" in run.output, run.output[-3000:]
    assert "Traceback" not in run.output and not re.search(r"Failed to export|Exception while exporting", run.output)
    names = request_names(receiver.metric_exports)
    intents = set(guide.INTENTS)
    assert names & intents, names
    assert len(names) <= 20 and "Too many unique request names" not in names, names
    assert names <= intents | {"connect", "ping", "time to recover"}, names
    with open(run.file("_stats.csv"), newline="", encoding="utf-8") as file:
        stat_names = {row["Name"] for row in csv.DictReader(file) if row["Type"] == "roundtrip"}
    assert stat_names and stat_names <= intents, "under --otel Locust's own table is by intent too"

