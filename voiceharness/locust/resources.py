"""CPU and memory of the load generator — and of the gateway when it runs on this machine.

The guide's performance scenario says "watch CPU and memory". A load test is also only as
true as its load generator: a saturated worker sends late and reports the gateway as slow.
Every ``SAMPLE_INTERVAL_S`` each Locust process that runs users samples its own CPU share
and RSS (psutil), and — when the gateway's host is a loopback address — the gateway's CPU
and memory from its ``/metrics``: its whole process tree where it exports that (the reference
gateway's ``gateway_process_tree_*``: its recognition workers included), else the main
process's ``process_cpu_seconds_total`` / ``process_resident_memory_bytes``; the
``gateway_scope`` column says which.
Each sample also carries the process's frame send lateness over the seconds since the previous
sample (p99 and frames, from the pacer's per-second histograms): whether it kept real time
*now*, not only over the whole run.
Samples go to ``PREFIX_resources.csv`` (through the master in a distributed run) and the
latest ones to the Voice quality tab; :meth:`ResourceMonitor.add_listener` hands each one to
whatever else wants them on that process (the Prometheus endpoint of :mod:`.metrics`).
"""

from __future__ import annotations

import csv
import logging
import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import gevent
import psutil
from locust.exception import RPCError, RPCSendError
from locust.runners import MasterRunner, WorkerRunner
from prometheus_client.parser import text_string_to_metric_families

from voiceharness.lateness import LatenessStats

log = logging.getLogger("voice.resources")

SAMPLE_INTERVAL_S = 2.0
MESSAGE_TYPE = "voice_resources"
COLUMNS = ("timestamp", "worker", "users", "worker_cpu_percent", "worker_rss_mb",
           "gateway_cpu_percent", "gateway_rss_mb", "gateway_scope", "send_lateness_p99_ms", "frames_sent",
           "judge_cpu_percent")
# Above this CPU share a worker's timers slip and its numbers stop being trustworthy.
SATURATED_CPU_PERCENT = 70.0
_LOOPBACK = ("127.", "localhost", "::1", "[::1]")


def _gateway_metrics_url(settings) -> str | None:
    if not settings.host.startswith(_LOOPBACK):
        return None
    scheme = "https" if settings.protocol == "wss" else "http"
    return f"{scheme}://{settings.host}:{settings.port}/metrics"


# What the gateway's /metrics may say about its CPU and memory, best first: the reference
# gateway sums its whole process tree (its recognition workers do the work); any Prometheus
# client library exports its own process only.
_GATEWAY_SCOPES = (
    ("process tree", "gateway_process_tree_cpu_seconds_total", "gateway_process_tree_resident_memory_bytes"),
    ("main process", "process_cpu_seconds_total", "process_resident_memory_bytes"),
)


def _read_gateway(url: str) -> tuple[float, float, str] | None:
    """(cpu seconds, rss bytes, what they count) from a Prometheus page, or None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            text = response.read().decode("utf-8", "replace")
        samples = {sample.name: sample.value
                   for family in text_string_to_metric_families(text) for sample in family.samples}
    except (OSError, ValueError):  # unreachable, or not a Prometheus page
        return None
    for scope, cpu_name, rss_name in _GATEWAY_SCOPES:
        if cpu_name in samples and rss_name in samples:
            return samples[cpu_name], samples[rss_name], scope
    return None


def _send_lateness(stats: LatenessStats | None, first_second: int, last_second: int) -> tuple[float | str, int]:
    """(p99 ms or "" when nothing was sent, frames) of this process's frames in whole monotonic seconds [first, last]."""
    if stats is None or last_second < first_second:
        return "", 0
    summary = stats.summary(first_second, last_second)
    frames = int(summary["frames"])
    return (round(summary["p99_ms"], 1) if frames else ""), frames


class ResourceMonitor:
    """Samples this process (and a local gateway); one per Locust environment, the runtime's."""

    def __init__(self, environment, settings, worker_name: str, path: str | None, *,
                 lateness: LatenessStats | None = None, judge_cpu=None) -> None:
        self.environment = environment
        self.lateness = lateness  # this process's frame send lateness (the pacer's)
        self.judge_cpu = judge_cpu  # () -> CPU seconds of this process's reply judge, or None
        # Called with each sample accepted by this process when it owns the records (standalone or master).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.path = path
        self.worker_name = worker_name
        self.gateway_url = _gateway_metrics_url(settings)
        self.latest: dict[str, dict[str, Any]] = {}
        self.lateness_p99_ms: dict[str, float] = {}  # each load generator's latest that sent frames
        self.peak_cpu: dict[str, float] = {}
        self._file = None
        self._writer = None
        self._greenlet: gevent.Greenlet | None = None

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(sample)`` with every resource sample this monitor accepts from now on."""
        self.listeners.append(callback)

    def install(self, runner) -> None:
        """Open ``PREFIX_resources.csv`` (not on a worker), take the workers' samples (a master),
        or start sampling this process (a process that runs users)."""
        if self.path and not isinstance(runner, WorkerRunner):
            self._file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._writer.writeheader()
        if isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE_TYPE, self.on_message)
        else:
            self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        process = psutil.Process(os.getpid())
        process.cpu_percent(None)
        last_gateway: tuple[float, float] | None = None
        last_judge_s: float | None = None
        last_time = time.monotonic()
        next_second = int(last_time)  # the first whole second of send lateness not yet reported
        while True:
            gevent.sleep(SAMPLE_INTERVAL_S)
            now = time.monotonic()
            # Whole seconds only: the current one is still being filled.
            lateness_p99_ms, frames = _send_lateness(self.lateness, next_second, int(now) - 1)
            next_second = max(next_second, int(now))
            sample: dict[str, Any] = {
                "timestamp": round(time.time(), 3),
                "worker": self.worker_name,
                "users": self.environment.runner.user_count if self.environment.runner else 0,
                "worker_cpu_percent": round(process.cpu_percent(None), 1),
                "worker_rss_mb": round(process.memory_info().rss / 2**20, 1),
                "gateway_cpu_percent": "",
                "gateway_rss_mb": "",
                "gateway_scope": "",
                "send_lateness_p99_ms": lateness_p99_ms,
                "frames_sent": frames,
                "judge_cpu_percent": "",
            }
            # The reply judge runs in processes of its own: its CPU is shown apart, not hidden in ours.
            judge_s = self.judge_cpu() if self.judge_cpu is not None else None
            if judge_s is not None and last_judge_s is not None:
                sample["judge_cpu_percent"] = round(100 * (judge_s - last_judge_s) / (now - last_time), 1)
            last_judge_s = judge_s
            if self.gateway_url:
                # Reading the page is blocking I/O; gevent's patched socket makes it cooperative.
                reading = _read_gateway(self.gateway_url)
                if reading is not None:
                    if last_gateway is not None:
                        sample["gateway_cpu_percent"] = round(100 * (reading[0] - last_gateway[0]) / (now - last_time), 1)
                    sample["gateway_rss_mb"] = round(reading[1] / 2**20, 1)
                    sample["gateway_scope"] = reading[2]
                last_gateway = reading
            last_time = now
            if isinstance(self.environment.runner, WorkerRunner):
                try:
                    self.environment.runner.send_message(MESSAGE_TYPE, sample)
                except (OSError, RPCError, RPCSendError) as error:  # the master is gone: the next sample may reach it
                    log.debug("resource sample not sent to the master: %s", error)
            else:
                self.accept(sample)

    def accept(self, sample: dict[str, Any]) -> None:
        worker = str(sample.get("worker"))
        self.latest[worker] = sample
        if sample.get("send_lateness_p99_ms") not in ("", None):
            self.lateness_p99_ms[worker] = float(sample["send_lateness_p99_ms"])
        cpu = float(sample.get("worker_cpu_percent") or 0.0)
        self.peak_cpu[worker] = max(self.peak_cpu.get(worker, 0.0), cpu)
        if cpu > SATURATED_CPU_PERCENT:
            log.warning("load generator %s at %.0f%% CPU: it may send late; numbers may not be trustworthy",
                        worker, cpu)
        if self._writer is not None:
            self._writer.writerow({k: sample.get(k, "") for k in COLUMNS})
            self._file.flush()
        for listener in self.listeners:
            try:
                listener(sample)
            except Exception:  # a listener's bug must not stop the sampling
                log.exception("resource-sample listener %r failed", listener)

    def on_message(self, environment, msg, **_kwargs) -> None:
        self.accept(dict(msg.data))

    def worst_lateness_p99_ms(self) -> float | None:
        """The highest p99 send lateness among the load generators' latest samples that sent frames
        (None before any did)."""
        return max(self.lateness_p99_ms.values()) if self.lateness_p99_ms else None

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
                    "item": f"gateway (local, {sample.get('gateway_scope') or 'main process'})",
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
