"""Shared fixtures: a real reference gateway on a free loopback port, and real Locust runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOCUST = str(Path(PYTHON).with_name("locust"))
LOCUSTFILE = str(ROOT / "locustfiles" / "voice.py")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    """A reference gateway subprocess on 127.0.0.1:port."""

    port: int
    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen | None = None
    # How to start it: the checkout's by default; tests/test_packaging.py starts an installed one.
    command: tuple[str, ...] = (PYTHON, "-m", "gateway")
    cwd: Path = ROOT
    env: dict | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> Gateway:
        with open(self.log_path, "ab") as log:  # the gateway writes to its own copy of the descriptor
            self.process = subprocess.Popen(
                [*self.command, "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {timeout_s} s: {self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gateway_factory(tmp_path) -> Iterator:
    """Start reference gateways with extra command-line options; all stopped afterwards."""
    started: list[Gateway] = []

    def start(*args: str, port: int | None = None) -> Gateway:
        gateway = Gateway(port or free_port(), tuple(args), tmp_path / f"gateway-{len(started)}.log")
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory) -> Iterator[Gateway]:
    """One real gateway (recognition and synthesis) for the tests that only read from it."""
    gateway = Gateway(free_port(), (), tmp_path_factory.mktemp("gateway") / "gateway.log")
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@dataclass
class LocustRun:
    returncode: int
    output: str
    prefix: Path

    def file(self, suffix: str) -> Path:
        return Path(f"{self.prefix}{suffix}")


def run_locust(prefix: Path | None, host: str, *args: str, users: int = 5, spawn_rate: float = 5,
               run_time: str = "8s", timeout_s: float = 180, env: dict | None = None,
               locustfile: str | Path = LOCUSTFILE) -> LocustRun:
    """A real headless Locust run of the voice locustfile (or another); returns its output and files.

    ``prefix=None`` runs without ``--csv``."""
    command = [
        LOCUST, "-f", str(locustfile), "--host", host, "--headless", "-u", str(users), "-r", str(spawn_rate),
        "-t", run_time, *(["--csv", str(prefix)] if prefix is not None else []), "--only-summary",
        # Short test runs want many turns, not people pausing between them (the default is 1-3 s).
        "--think-time-ms", "200-600", *args,
    ]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False,
        env={**os.environ, **(env or {})},
    )
    return LocustRun(completed.returncode, completed.stdout + completed.stderr, prefix)
