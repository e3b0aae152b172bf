"""A private network namespace for network-fault tests, always removed afterwards.

``with Netns() as ns:`` creates namespace ``vhfaultN``, a veth pair with one end in it and a
private /30 between the two ends (host ``ns.host_ip``, namespace ``ns.ns_ip``, both in
10.213.0.0/16, which exists only on this pair), and removes all of it on exit — also when the
test fails. What a test can then do to the link:

* ``ns.link(False)`` / ``ns.link(True)``  cut and restore it (namespace end down/up)
* ``ns.nft(rules)``                      nftables rules inside the namespace (drop, random loss)
* ``ns.tbf("200kbit")``                  limit host → namespace bandwidth (tc tbf on the host end)
* ``ns.start_gateway(*args)``            the reference gateway listening on ``ns.ns_ip``

Needs root (``ip netns``), iproute2 and nftables; ``requires_root`` skips a test otherwise
(fails it in CI). No traffic leaves the
pair: nothing routes 10.213.0.0/16 anywhere else, and forwarding is not touched.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Self

import pytest
from conftest import PYTHON, ROOT, free_port

requires_root = pytest.mark.requires("root", "ip", "nft")

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


class Netns:
    def __init__(self) -> None:
        index = (os.getpid() * 7 + next(_counter)) % 250 + 1
        self.name = f"vhfault{index}"
        self.host_if = f"vhf{index}h"
        self.ns_if = f"vhf{index}n"
        self.host_ip = f"10.213.{index}.1"
        self.ns_ip = f"10.213.{index}.2"
        self._processes: list[subprocess.Popen] = []

    # -- lifetime
    def __enter__(self) -> Self:
        self._remove()  # a leftover of a killed run with the same name
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _ip("-n", self.name, "link", "set", self.ns_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self._remove()

    def _remove(self) -> None:
        _ip("link", "del", self.host_if, check=False)  # takes its peer with it
        _ip("netns", "del", self.name, check=False)

    # -- faults
    def exec(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True, text=True,
                              timeout=30, check=False, **kwargs)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} in {self.name} failed: {done.stderr.strip()}")
        return done

    def link(self, up: bool) -> None:
        """Cut or restore the link from the namespace's end.

        Not the host's end: with the host end down its /30 route goes away and packets for
        ns_ip would follow the default route out of the machine. With the far end down the
        host end only loses its carrier, keeps the route, and drops the packets here.
        """
        _ip("-n", self.name, "link", "set", self.ns_if, "up" if up else "down")

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset inside the namespace (it dies with the namespace)."""
        self.exec("nft", "-f", "-", input=ruleset)

    def tbf(self, rate: str, burst: str = "4kb", latency: str = "200ms") -> None:
        subprocess.run(["tc", "qdisc", "add", "dev", self.host_if, "root", "tbf", "rate", rate, "burst", burst,
                        "latency", latency], check=True, capture_output=True, timeout=10)

    # -- a gateway inside
    def start_gateway(self, *args: str, log_path: Path, port: int | None = None, timeout_s: float = 60):
        """The reference gateway on ns_ip:port inside the namespace; returns (process, port)."""
        port = port or free_port()
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.name, PYTHON, "-m", "gateway", "--host", self.ns_ip, "--port",
                 str(port), *args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.ns_ip}:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return process, port
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway in {self.name} not ready: {log_path.read_text()[-2000:]}")
