"""CPU and memory of the load generator — and of the gateway when it runs on this machine.

The guide's performance scenario says "watch CPU and memory". A load test is also only as
true as its load generator: a saturated worker sends late and reports the gateway as slow.
Every ``SAMPLE_INTERVAL_S`` each Locust process that runs users samples its own CPU share
and RSS (psutil), and — when the gateway's host is a loopback address — the gateway's
``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` from its ``/metrics``.
Samples go to ``PREFIX_resources.csv`` (through the master in a distributed run) and the
latest ones to the Voice quality tab.
"""

from __future__ import annotations

import csv
import logging
import os
import time
import urllib.request
from typing import Any

import gevent
import psutil
from locust import events
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("voice.resources")

SAMPLE_INTERVAL_S = 2.0
MESSAGE_TYPE = "voice_resources"
COLUMNS = ("timestamp", "worker", "users", "worker_cpu_percent", "worker_rss_mb",
           "gateway_cpu_percent", "gateway_rss_mb")
# Above this CPU share a worker's timers slip and its numbers stop being trustworthy.
SATURATED_CPU_PERCENT = 70.0
_LOOPBACK = ("127.", "localhost", "::1", "[::1]")


def _gateway_metrics_url(settings) -> str | None:
    if not settings.host.startswith(_LOOPBACK):
        return None
    scheme = "https" if settings.protocol == "wss" else "http"
    return f"{scheme}://{settings.host}:{settings.port}/metrics"


def _read_gateway(url: str) -> tuple[float, float] | None:
    """(cpu seconds, rss bytes) from a Prometheus text page, or None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            text = response.read().decode("utf-8", "replace")
    except Exception:
        return None
    cpu = rss = None
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            cpu = float(line.split()[1])
        elif line.startswith("process_resident_memory_bytes "):
            rss = float(line.split()[1])
    return (cpu, rss) if cpu is not None and rss is not None else None


class ResourceMonitor:
    def __init__(self, environment, settings, worker_name: str, path: str | None) -> None:
        self.environment = environment
        self.worker_name = worker_name
        self.gateway_url = _gateway_metrics_url(settings)
        self.latest: dict[str, dict[str, Any]] = {}
        self.peak_cpu: dict[str, float] = {}
        self._file = None
        self._writer = None
        if path and not isinstance(environment.runner, WorkerRunner):
            self._file = open(path, "w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._writer.writeheader()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if not isinstance(self.environment.runner, MasterRunner):
            self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        process = psutil.Process(os.getpid())
        process.cpu_percent(None)
        last_gateway: tuple[float, float] | None = None
        last_time = time.monotonic()
        while True:
            gevent.sleep(SAMPLE_INTERVAL_S)
            now = time.monotonic()
            sample: dict[str, Any] = {
                "timestamp": round(time.time(), 3),
                "worker": self.worker_name,
                "users": self.environment.runner.user_count if self.environment.runner else 0,
                "worker_cpu_percent": round(process.cpu_percent(None), 1),
                "worker_rss_mb": round(process.memory_info().rss / 2**20, 1),
                "gateway_cpu_percent": "",
                "gateway_rss_mb": "",
            }
            if self.gateway_url:
                # Reading the page is blocking I/O; gevent's patched socket makes it cooperative.
                reading = _read_gateway(self.gateway_url)
                if reading is not None:
                    if last_gateway is not None:
                        sample["gateway_cpu_percent"] = round(100 * (reading[0] - last_gateway[0]) / (now - last_time), 1)
                    sample["gateway_rss_mb"] = round(reading[1] / 2**20, 1)
                last_gateway = reading
            last_time = now
            if isinstance(self.environment.runner, WorkerRunner):
                try:
                    self.environment.runner.send_message(MESSAGE_TYPE, sample)
                except Exception:
                    pass
            else:
                self.accept(sample)

    def accept(self, sample: dict[str, Any]) -> None:
        worker = str(sample.get("worker"))
        self.latest[worker] = sample
        cpu = float(sample.get("worker_cpu_percent") or 0.0)
        self.peak_cpu[worker] = max(self.peak_cpu.get(worker, 0.0), cpu)
        if cpu > SATURATED_CPU_PERCENT:
            log.warning("load generator %s at %.0f%% CPU: it may send late; numbers may not be trustworthy",
                        worker, cpu)
        if self._writer is not None:
            self._writer.writerow({k: sample.get(k, "") for k in COLUMNS})
            self._file.flush()

    def on_message(self, environment, msg, **_kwargs) -> None:
        self.accept(dict(msg.data))

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for worker, sample in sorted(self.latest.items()):
            rows.append({
                "section": "Resources",
                "item": f"load generator {worker}",
                "turns": f"{sample['users']} users",
                "share": f"CPU {sample['worker_cpu_percent']}% (peak {self.peak_cpu.get(worker, 0):.0f}%)",
                "detail": f"RSS {sample['worker_rss_mb']} MB"
                + ("; SATURATED: numbers not trustworthy" if self.peak_cpu.get(worker, 0) > SATURATED_CPU_PERCENT else ""),
            })
            if sample.get("gateway_rss_mb") not in ("", None):
                rows.append({
                    "section": "Resources",
                    "item": "gateway (local)",
                    "turns": "",
                    "share": f"CPU {sample['gateway_cpu_percent'] or '-'}%",
                    "detail": f"RSS {sample['gateway_rss_mb']} MB",
                })
        return rows

    def close(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        if self._file is not None:
            self._file.close()
            self._file = None


MONITOR: ResourceMonitor | None = None


def install(environment, settings, worker_name: str, path: str | None) -> ResourceMonitor:
    global MONITOR
    MONITOR = ResourceMonitor(environment, settings, worker_name, path)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(MESSAGE_TYPE, MONITOR.on_message)
    MONITOR.start()
    return MONITOR


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    if MONITOR is not None:
        MONITOR.close()
