"""A real Prometheus for tests: scripts/prometheus.sh on a free loopback port, queried with promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from conftest import ROOT, free_port


class PrometheusServer:
    """Debian's prometheus, started by the project's script with its own config and data folder."""

    def __init__(self, directory: Path, targets: dict[str, str], scrape_interval: str = "1s") -> None:
        assert shutil.which("prometheus") and shutil.which("promtool"), (
            "prometheus and promtool are needed: scripts/bootstrap.sh installs Debian's prometheus package")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        command = [str(ROOT / "scripts" / "prometheus.sh"), "--port", str(self.port), "--dir", str(directory),
                   "--scrape-interval", scrape_interval, *(f"{job}={target}" for job, target in targets.items())]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60.0) -> PrometheusServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout_s} s: {self.log_path.read_text()}")

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """``promtool query instant`` (at unix time ``at``): the result vector, [] for no data."""
        command = ["promtool", "query", "instant", "-o", "json", self.url, expr]
        if at is not None:
            command[3:3] = [f"--time={at:.3f}"]
        completed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, f"{expr}: {completed.stderr}"
        return json.loads(completed.stdout or "[]")

    def scalar(self, expr: str, at: float | None = None) -> float:
        (sample,) = self.query(expr, at)
        return float(sample["value"][1])

    def by_label(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in self.query(expr, at)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
