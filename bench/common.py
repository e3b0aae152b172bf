"""What every benchmark shares: the machine, processes under measurement, CPU sampling, results.

The machine is small (2 cores) and shared, so nothing here reports a lone absolute time:
every figure comes with a baseline measured in the same run, and every run records how busy
the rest of the machine was (``others_cpu_percent``: system CPU minus the processes we own).
"""

from __future__ import annotations

import contextlib
import json
import math
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


def start(command: list[str], **kwargs) -> subprocess.Popen:
    """Start a process the benchmark measures (client, sink, proxy) at priority ``NICE``.

    A process's nice value only weighs against processes of its own *autogroup* (Linux with
    ``sched_autogroup_enabled``, as here: every session is one group, and groups share the
    CPUs equally whatever their members' nice values). So with ``--nice`` each process starts
    in a session of its own and its autogroup gets the nice value too — without that, nice -5
    did nothing against another engineer's test session (measured: a client at nice -5 got
    21-45 % of a core next to two busy sessions at nice 10).
    """
    process = subprocess.Popen(command, cwd=REPO, start_new_session=bool(NICE), **kwargs)
    renice(process.pid)
    return process


def renice(pid: int) -> None:
    """Give a process the benchmark started the niceness ``NICE``, and its autogroup too (no-op at 0)."""
    if NICE:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, NICE)
        with contextlib.suppress(OSError):  # absent without autogroup support; EPERM without root for < 0
            Path(f"/proc/{pid}/autogroup").write_text(str(NICE), encoding="ascii")


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
            self.process = start(self.command, stdout=log, stderr=subprocess.STDOUT, env=python_env())
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


def sink_service(port: int, log_dir: Path, delay_ms: float = 0.0, stats: Path | None = None,
                 speech_ends: str | None = None, turns: Path | None = None) -> Service:
    command = [PYTHON, "-m", "bench.sink", "--port", str(port), "--delay-ms", str(delay_ms)]
    if stats is not None:
        command += ["--stats", str(stats)]
    if speech_ends is not None:
        command += ["--speech-ends", speech_ends]
    if turns is not None:
        command += ["--turns", str(turns)]
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
    cpu_s: dict[int, float]  # pid -> user+system CPU seconds so far (the kernel's exact runtime)
    rss_mb: dict[int, float]
    uss_mb: dict[int, float]  # unique set size, on every USS_EVERY-th sample only (reading smaps costs)
    parent: dict[int, int]  # pid -> the tracked root it descends from
    idle_s: float  # all cores' idle + iowait + steal seconds so far (exact under NO_HZ: see Sampler)
    tick_busy_s: float  # all cores' user + nice + system + irq + softirq seconds so far (tick-sampled)


USS_EVERY = 4


def spread(values) -> dict[str, float]:
    """median, min, max and count of the finite numbers in ``values`` (NaN when there are none)."""
    finite = sorted(float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    middle = len(finite) // 2
    median = finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2
    return {"median": median, "min": finite[0], "max": finite[-1], "n": len(finite)}


@dataclass
class Sampler:
    """Samples CPU, RSS and USS of some processes (and their children) and of the machine, in a thread.

    "Others" (what the rest of the machine used) is all cores' busy time minus ours. This
    kernel accounts CPU two ways: a process's user+system time is its exact runtime (the
    scheduler's nanosecond clock, scaled), while ``/proc/stat``'s user/system/nice are
    *sampled* at the 250 Hz tick — and under NO_HZ a CPU that wakes for a burst shorter than
    a tick and goes idle again is often not sampled at all. Our clients are exactly that
    (a pacer waking every 2 ms for a fraction of a ms), so tick-based busy time came out
    *below* our own exact runtime: "others" was negative in 14 of 25 capacity rows. Idle
    time, on the other hand, is exact under NO_HZ (the kernel times each idle period), so
    busy = cores x elapsed - idle - iowait - steal is exact too, and "others" is computed from
    it; the old tick-based figure is kept as ``others_cpu_percent_tick`` to show the difference.
    """

    pids: list[int]
    interval_s: float = 0.5
    children: bool = True  # also sample the processes these pids start (Locust --processes workers)
    # Sampled without their children: the benchmark's own process (its sampler thread and the
    # smaps reads for USS are not "others"; its children are the clients, sampled as roots).
    solo: list[int] = field(default_factory=lambda: [os.getpid()])
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._processes: dict[int, psutil.Process] = {}
        self._roots: dict[int, psutil.Process] = {}
        for pid in [*self.pids, *self.solo]:
            with contextlib.suppress(psutil.Error):
                self._roots[pid] = psutil.Process(pid)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _tree(self) -> dict[int, tuple[psutil.Process, int]]:
        tree: dict[int, tuple[psutil.Process, int]] = {}
        for root_pid, root in self._roots.items():
            tree[root_pid] = (root, root_pid)
            if self.children and root_pid not in self.solo:
                with contextlib.suppress(psutil.Error):
                    for child in root.children(recursive=True):
                        # keep one Process object per pid: psutil checks it is still the same process
                        known = self._processes.setdefault(child.pid, child)
                        tree[child.pid] = (known, root_pid)
        return tree

    def _sample(self) -> None:
        cpu, rss, uss, parent = {}, {}, {}, {}
        with_uss = len(self.samples) % USS_EVERY == 0
        before = psutil.cpu_times()
        for pid, (process, root) in self._tree().items():
            try:
                times = process.cpu_times()
                cpu[pid] = times.user + times.system
                if with_uss:
                    memory = process.memory_full_info()
                    uss[pid] = memory.uss / 2**20
                else:
                    memory = process.memory_info()
                rss[pid] = memory.rss / 2**20
                parent[pid] = root
            except psutil.Error:
                continue
        after = psutil.cpu_times()
        # The machine's counters are read before and after the processes', and averaged: the
        # processes' readings then sit at the same instant on average.
        idle = sum((getattr(before, f, 0) + getattr(after, f, 0)) / 2 for f in ("idle", "iowait", "steal"))
        busy = sum((getattr(before, f, 0) + getattr(after, f, 0)) / 2 for f in ("user", "nice", "system", "irq", "softirq"))
        self.samples.append(Sample(time.monotonic(), cpu, rss, uss, parent, idle, busy))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, start: float, end: float) -> dict[str, object]:
        """CPU seconds and share, peak RSS and last USS of each process between ``start`` and ``end``.

        ``cpu_s`` etc. are keyed by pid (every process seen, children included); ``tree_cpu_s``
        sums each tracked root with its descendants. A process that appeared inside the window
        is counted from its first sample.
        """
        inside = [s for s in self.samples if start <= s.at <= end]
        empty = {"seconds": 0.0, "cpu_s": {}, "cpu_percent": {}, "rss_mb": {}, "uss_mb": {}, "parent": {},
                 "tree_cpu_s": {}, "others_cpu_percent": math.nan, "others_cpu_percent_tick": math.nan}
        if len(inside) < 2:
            return empty
        first, last = inside[0], inside[-1]
        seconds = last.at - first.at
        cpu_s: dict[int, float] = {}
        parent: dict[int, int] = {}
        for pid, value in last.cpu_s.items():
            opening = next((s.cpu_s[pid] for s in inside if pid in s.cpu_s), value)
            cpu_s[pid] = value - opening
            parent[pid] = last.parent[pid]
        ours = sum(cpu_s.values())
        cores = os.cpu_count() or 1
        busy = cores * seconds - (last.idle_s - first.idle_s)
        tick_busy = last.tick_busy_s - first.tick_busy_s
        tree: dict[int, float] = {}
        for pid, value in cpu_s.items():
            tree[parent[pid]] = tree.get(parent[pid], 0.0) + value
        uss_samples = [s for s in inside if s.uss_mb]
        return {
            "seconds": seconds,
            "cpu_s": cpu_s,
            "cpu_percent": {pid: 100 * v / seconds for pid, v in cpu_s.items()},
            "rss_mb": {pid: max(s.rss_mb.get(pid, 0.0) for s in inside) for pid in cpu_s},
            "uss_mb": dict(uss_samples[-1].uss_mb) if uss_samples else {},
            "parent": parent,
            "tree_cpu_s": tree,
            "others_cpu_percent": 100 * (busy - ours) / seconds,
            "others_cpu_percent_tick": 100 * (tick_busy - ours) / seconds,
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
