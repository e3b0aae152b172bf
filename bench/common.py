"""What every benchmark shares: the machine, processes under measurement, CPU sampling, results.

The machine is small (2 cores) and shared, so nothing here reports a lone absolute time:
every figure comes with a baseline measured in the same run, and every run records how busy
the rest of the machine was (``others_cpu_percent``: system CPU minus the processes we own).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable
LOCUST = str(Path(PYTHON).with_name("locust"))
# A run is only valid if the load generator kept up (issue 7): above either limit it did not.
SATURATED_CPU_PERCENT = 70.0
SATURATED_P99_MS = 5.0
SATURATED_WARNING = "load generator saturated — server numbers not trustworthy"
# Scheduling priority of the processes a benchmark starts (``--nice``): 0 leaves it alone; a
# negative value (root) keeps other people's test runs from adding run-queue delay to ours.
NICE = 0


def renice(pid: int) -> None:
    """Give a process the benchmark started the niceness ``NICE`` (no-op at 0 or without permission)."""
    if NICE:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, NICE)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> dict[str, object]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@dataclass
class Service:
    """A background process we started (sink, gateway, proxy); stopped by its own pid only."""

    name: str
    command: list[str]
    log_path: Path
    ready_port: int | None = None
    ready_http: str | None = None
    process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> Service:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=python_env())
        renice(self.process.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                if self.ready_http:
                    with urllib.request.urlopen(self.ready_http, timeout=1) as response:
                        if response.status == 200:
                            return self
                elif self.ready_port:
                    with socket.create_connection(("127.0.0.1", self.ready_port), timeout=1):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s} s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def gateway_service(port: int, log_dir: Path, *extra: str) -> Service:
    return Service("gateway", [PYTHON, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), *extra],
                   log_dir / f"gateway-{port}.log", ready_http=f"http://127.0.0.1:{port}/readyz")


def sink_service(port: int, log_dir: Path, delay_ms: float = 0.0, stats: Path | None = None) -> Service:
    command = [PYTHON, "-m", "bench.sink", "--port", str(port), "--delay-ms", str(delay_ms)]
    if stats is not None:
        command += ["--stats", str(stats)]
    return Service("sink", command, log_dir / f"sink-{port}.log", ready_port=port)


def proxy_service(port: int, target_port: int, delay_ms: float, log_dir: Path, stats: Path | None = None) -> Service:
    command = [PYTHON, "-m", "bench.delay_proxy", "--listen-port", str(port), "--target-port", str(target_port),
               "--delay-ms", str(delay_ms)]
    if stats is not None:
        command += ["--stats", str(stats)]
    return Service("proxy", command, log_dir / f"proxy-{port}.log", ready_port=port)


@dataclass
class Sample:
    at: float  # time.monotonic()
    cpu_s: dict[int, float]  # pid -> user+system CPU seconds so far
    rss_mb: dict[int, float]
    system_busy_s: float  # all cores' non-idle seconds so far


@dataclass
class Sampler:
    """Samples CPU and RSS of some pids (and of the whole machine) every ``interval_s``, in a thread."""

    pids: list[int]
    interval_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._processes = {pid: psutil.Process(pid) for pid in self.pids}
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        cpu, rss = {}, {}
        for pid, process in self._processes.items():
            try:
                times = process.cpu_times()
                cpu[pid] = times.user + times.system
                rss[pid] = process.memory_info().rss / 2**20
            except psutil.Error:
                continue
        system = psutil.cpu_times()
        busy = system.user + system.system + system.nice + getattr(system, "irq", 0) + getattr(system, "softirq", 0)
        self.samples.append(Sample(time.monotonic(), cpu, rss, busy))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, start: float, end: float) -> dict[str, object]:
        """CPU seconds and share of each pid between the samples nearest ``start`` and ``end``."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            return {"seconds": 0.0, "cpu_s": {}, "cpu_percent": {}, "rss_mb": {}, "others_cpu_percent": float("nan")}
        first, last = inside[0], inside[-1]
        seconds = last.at - first.at
        cpu_s = {pid: last.cpu_s[pid] - first.cpu_s[pid] for pid in self.pids if pid in first.cpu_s and pid in last.cpu_s}
        busy = last.system_busy_s - first.system_busy_s
        return {
            "seconds": seconds,
            "cpu_s": cpu_s,
            "cpu_percent": {pid: 100 * v / seconds for pid, v in cpu_s.items()},
            "rss_mb": {pid: max(s.rss_mb.get(pid, 0.0) for s in inside) for pid in self.pids},
            "others_cpu_percent": 100 * (busy - sum(cpu_s.values())) / seconds,
        }


def write_result(name: str, result: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, float):
        return None
    return str(value)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
