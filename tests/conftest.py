"""Shared fixtures: a real reference gateway on a free loopback port, and real Locust runs.

Also the suite's two rules for running in CI (the ``CI`` environment variable set, as
``make test`` and ``.ci/run`` do):

* Hypothesis runs the ``ci`` profile there (derandomized: the same examples every run, no
  example database, no deadlines) and the ``dev`` profile elsewhere (random exploration). The
  pytest header names the profile; ``--hypothesis-profile NAME`` overrides the choice.
* A test that needs something the machine lacks (espeak-ng, Chromium, Python 2.7, ...) calls
  :func:`require_dependency` or carries ``@pytest.mark.requires(NAME)``: it skips locally and
  FAILS in CI, with the install command in the message either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOCUST = str(Path(PYTHON).with_name("locust"))
LOCUSTFILE = str(ROOT / "locustfiles" / "voice.py")
T = TypeVar("T")


def in_ci() -> bool:
    """True when ``CI`` is set to anything but empty, 0 or false (``make test`` sets CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# -- Hypothesis profiles

# CI: the same examples on every run (derandomize derives the seed from each test's source), so a
# red CI run is a real regression that reproduces with the same command, never the luck of a
# draw. No example database (a fresh clone has none, so it could only make runs differ), and no
# deadline or too_slow health check: those time each example, and the CI machine is a loaded
# 2-core box; speed is bench/'s business.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# dev: new random examples on every run (that is how the bugs the ci profile pins were found);
# failures are kept in .hypothesis/ and replayed first next time. Hypothesis's default deadline
# stays on here, as a hint of pathological slowness on a machine one is watching.
settings.register_profile("dev", print_blob=True)
# Loaded at import: conftest is imported before any test module, so every @settings(...) in a
# test (module level or nested in a test) inherits the profile and only changes what it names.
# tests/test_suite_rules.py checks that none of them names derandomize or a database.
HYPOTHESIS_PROFILE = "ci" if in_ci() else "dev"
settings.load_profile(HYPOTHESIS_PROFILE)

# The Ctrl-C tests send SIGINT to Locust and expect what a terminal's Ctrl-C does. A shell starts a
# background job (`make test &`, `nohup`) with SIGINT ignored, children inherit that, and Python then
# installs no KeyboardInterrupt handler: the run under test ignored the Ctrl-C and was killed 90 s
# later. Restoring Python's handler here gives the suite, and every process it starts, the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_report_header(config: pytest.Config) -> list[str]:
    profile = settings.get_current_profile_name()  # --hypothesis-profile may have replaced ours
    how = "same examples every run" if settings.default.derandomize else "random examples"
    ci = f"CI={os.environ['CI']!r}" if in_ci() else "CI not set"
    missing = "fail" if in_ci() else "skip"
    return [f"suite: {ci}; missing dependencies {missing}; hypothesis profile {profile!r} ({how})"]


# -- dependencies: skip locally, fail in CI


def require_dependency(name: str, check: bool | Callable[[], bool], install_hint: str) -> None:
    """Stop the calling test unless ``check`` holds: a skip locally, a failure in CI.

    ``install_hint`` is the command (or step) that provides ``name``; the message carries it
    either way, so a skipped test says what to install and a CI failure says how to fix it.
    """
    if check() if callable(check) else check:
        return
    message = f"{name} is missing: {install_hint}"
    if in_ci():
        pytest.fail(f"{message} (CI must run every test: a missing dependency is a failure)", pytrace=False)
    pytest.skip(message)


def _importable(module: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(module) is not None


def _on_path(program: str) -> Callable[[], bool]:
    return lambda: shutil.which(program) is not None


APT = "apt-get install -y"  # scripts/bootstrap.sh installs every Debian package listed there
# What @pytest.mark.requires(NAME) can name: how to check it, and the install command.
DEPENDENCIES: dict[str, tuple[Callable[[], bool], str]] = {
    "espeak-ng": (_on_path("espeak-ng"), f"{APT} espeak-ng (Debian package espeak-ng)"),
    "chromium": (
        lambda: Path(os.environ.get("CHROME_BINARY", "/usr/bin/chromium")).exists(),
        f"{APT} chromium (Debian package chromium; or set CHROME_BINARY)",
    ),
    "chromedriver": (
        lambda: Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")).exists()
        or shutil.which("chromedriver") is not None,
        f"{APT} chromium-driver (Debian package chromium-driver; or set CHROMEDRIVER)",
    ),
    "selenium": (_importable("selenium"), "scripts/bootstrap.sh (the test extra: pip install selenium)"),
    "pyyaml": (_importable("yaml"), "scripts/bootstrap.sh (the test extra: pip install pyyaml)"),
    "ip": (_on_path("ip"), f"{APT} iproute2 (Debian package iproute2)"),
    "nft": (_on_path("nft"), f"{APT} nftables (Debian package nftables)"),
    "root": (lambda: os.geteuid() == 0, "run the tests as root (sudo make test): network namespaces need it"),
}


def pytest_configure(config: pytest.Config) -> None:
    import gevent_process

    # The Locust layer's test modules (marked gevent) run in a process that gevent patched first.
    config.pluginmanager.register(gevent_process, "gevent_process")
    config.addinivalue_line(
        "markers", "gevent: the module's tests run in a fresh interpreter patched by gevent first, as a Locust "
                   "process is (tests/gevent_process.py)"
    )
    config.addinivalue_line(
        "markers", f"requires(*names): needs these ({', '.join(DEPENDENCIES)}); skips locally, fails in CI"
    )
    config.addinivalue_line(
        "markers", "exclusive: runs while no other test does (make test runs several at once; see below)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        for name in mark.args:
            check, install_hint = DEPENDENCIES[name]
            require_dependency(name, check, install_hint)


# -- order: the files with slow tests first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the files that hold slow tests first; each file's tests keep their order.

    ``make test`` hands whole files to several workers (pytest-xdist ``--dist loadfile``, in
    the order collected: ``--no-loadscope-reorder``). Most of the suite waits on audio played
    in real time, which workers can overlap; a minute-long file dealt out last would keep one
    worker busy while the others sit idle, so the long files go first and the many short ones
    fill in around them.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # a stable sort: files stay whole


# -- tests that need the machine to themselves
#
# make test runs several test files at once (pytest-xdist workers). A test marked ``exclusive``
# is one whose subject is real-time work the machine must keep up with (50 users streaming to
# the real gateway's recognition): with the CPU shared, the gateway drops audio and the turns
# fail for a reason that is not a bug. While it runs, no other test does. Two lock files shared
# by the workers of one run: every test holds ``room`` shared, an exclusive test holds it alone;
# ``gate`` makes a waiting exclusive test go next instead of waiting for a moment when no other
# worker happens to be inside.


_share_folders: list[Path] = []  # the controller's: one folder for the run's two lock files


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: on the controller, for each worker it starts
def pytest_configure_node(node) -> None:
    if not _share_folders:
        _share_folders.append(Path(tempfile.mkdtemp(prefix="voiceharness-tests-")))
    node.workerinput["machine_share_folder"] = str(_share_folders[0])


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _share_folders:
        shutil.rmtree(folder, ignore_errors=True)


def _run_lock_files(config: pytest.Config) -> tuple[Path, Path] | None:
    folder = getattr(config, "workerinput", {}).get("machine_share_folder")
    if folder is None:
        return None  # one process: tests run one at a time anyway
    return Path(folder) / "gate", Path(folder) / "room"


@contextlib.contextmanager
def _machine_share(config: pytest.Config, exclusive: bool) -> Iterator[None]:
    paths = _run_lock_files(config)
    if paths is None:
        yield
        return
    with open(paths[0], "a") as gate, open(paths[1], "a") as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)


# Tests on the virtual audio device (marked ``audio``: tests/test_audio_probe_*.py) take turns as
# well. Each worker runs its own PulseAudio, but two duplex streams at once on a loaded 2-core
# machine starve each other of whole blocks, and a loopback that lost a block finds no chirp
# (correlation 0.45 where a whole one reads 1.0). One more lock file of the run, held by an audio
# test from its setup to its teardown.


@contextlib.contextmanager
def _audio_device_turn(config: pytest.Config, audio: bool) -> Iterator[None]:
    paths = _run_lock_files(config)
    if paths is None or not audio:
        yield
        return
    with open(paths[0].with_name("audio"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # Setup, call and teardown: a module fixture's work happens in its first test's setup.
    with (
        _machine_share(item.config, exclusive=item.get_closest_marker("exclusive") is not None),
        _audio_device_turn(item.config, audio=item.get_closest_marker("audio") is not None),
    ):
        return (yield)


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail after ``timeout_s``.

    Tests wait for what they need (turns recorded, a session registered, a sound playing)
    instead of sleeping a fixed time: a loaded CI machine then only makes them wait longer,
    and ``timeout_s`` is generous, a guard against hanging, not a figure under test.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:g} s waiting for {what}", pytrace=False)
        time.sleep(poll_s)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A gateway process held before it listens: it imports everything (seconds on a loaded machine),
# then waits for its "go" file (argv[1]) and runs ``python -m gateway`` with the rest of argv.
_HELD_GATEWAY = """
import pathlib, sys, time
import gateway.__main__
go = pathlib.Path(sys.argv.pop(1))
while not go.exists():
    time.sleep(0.01)
sys.exit(gateway.__main__.main(sys.argv[1:]))
"""


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
    standby: subprocess.Popen | None = None  # the next process, held by prepare_restart()
    _go: Path | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _spawn(self, go: Path | None = None) -> subprocess.Popen:
        options = ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        if go is None:
            command = [*self.command, *options]
        else:  # held before it listens: the checkout's gateway only (prepare_restart)
            command = [PYTHON, "-c", _HELD_GATEWAY, str(go), *options]
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def start(self, timeout_s: float = 60.0) -> Gateway:
        self.process = self._spawn()
        return self._wait_ready(timeout_s)

    def prepare_restart(self) -> None:
        """Start the next gateway process now, held before it listens until :meth:`restart`.

        A fault test that restarts the gateway then times the outage it chose, not Python's
        imports on a loaded machine (which would also push users into long backoff steps).
        """
        self._go = self.log_path.with_name(f"{self.log_path.name}.go-{time.monotonic_ns()}")
        self.standby = self._spawn(self._go)

    def restart(self, timeout_s: float = 60.0) -> Gateway:
        """Let the process of :meth:`prepare_restart` listen (the old one must be stopped)."""
        assert self.standby is not None and self._go is not None, "prepare_restart() first"
        self.process, self.standby = self.standby, None
        self._go.touch()
        return self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> Gateway:
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

    def stop(self, sig: int = signal.SIGTERM, *, standby: bool = True) -> None:
        """Stop the gateway with ``sig`` (killed if it lingers), and a held standby unless ``standby=False``."""
        for process in (self.process, self.standby if standby else None):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.process = None
        if standby:
            self.standby = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def master_port_options() -> tuple[str, ...]:
    """Locust options giving a ``--processes`` run's master and workers a free port of their own:
    Locust's default, 5557, is shared by every run on the machine, and two at once bind-fail and
    cross their workers (seen when the open-model and the client tests ran together)."""
    port = str(free_port())
    return ("--master-bind-port", port, "--master-port", port)


@pytest.fixture
def gateway_factory(tmp_path) -> Iterator:
    """Start reference gateways with extra command-line options; all stopped afterwards."""
    started: list[Gateway] = []

    def start(*args: str, port: int | None = None) -> Gateway:
        if not {"--fast-sink", "--conformance-echo"} & set(args):  # the real pipeline speaks with espeak-ng
            require_dependency("espeak-ng", *DEPENDENCIES["espeak-ng"])
        gateway = Gateway(port or free_port(), tuple(args), tmp_path / f"gateway-{len(started)}.log")
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def shared_gateway(tmp_path_factory) -> Iterator[Gateway]:
    """One real gateway (recognition and synthesis) for the tests that only read from it."""
    require_dependency("espeak-ng", *DEPENDENCIES["espeak-ng"])
    gateway = Gateway(free_port(), (), tmp_path_factory.mktemp("gateway") / "gateway.log")
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def virtual_audio(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The PulseAudio null-sink loopback of scripts/virtual-audio.sh, started once per test process
    for the audio_probe tests (tests/virtual_audio.py)."""
    from virtual_audio import virtual_audio_session  # it imports this module: not at the top

    yield from virtual_audio_session(tmp_path_factory)


@dataclass
class LocustRun:
    returncode: int
    output: str
    prefix: Path

    def file(self, suffix: str, *, missing_ok: bool = False) -> Path:
        """The run's file ``PREFIX{suffix}``; a missing one fails with the run's exit code and output
        (what went wrong), unless ``missing_ok``."""
        path = Path(f"{self.prefix}{suffix}")
        if not missing_ok and not path.exists():
            raise AssertionError(f"the run wrote no {path.name} (exit code {self.returncode}); its output ends:\n"
                                 f"{self.output[-4000:]}")
        return path


STOP_AFTER_TURNS = Path(__file__).with_name("locust_stop_after_turns.py")


def stop_after_turns_env(turns: int, where: str = "", each_user: bool = False) -> dict[str, str]:
    """The environment of tests/locust_stop_after_turns.py: end the run after ``turns`` turns."""
    if not turns:
        return {}
    return {"VOICE_TEST_STOP_AFTER_TURNS": str(turns), "VOICE_TEST_STOP_AFTER_TURNS_WHERE": where,
            "VOICE_TEST_STOP_AFTER_TURNS_EACH_USER": "1" if each_user else ""}


def run_locust(prefix: Path | None, host: str, *args: str, users: int = 5, spawn_rate: float = 5,
               run_time: str = "8s", timeout_s: float = 180, env: dict | None = None,
               locustfile: str | Path = LOCUSTFILE, stop_after_turns: int = 0, stop_where: str = "",
               stop_each_user: bool = False) -> LocustRun:
    """A real headless Locust run of the voice locustfile (or another); returns its output and files.

    ``prefix=None`` runs without ``--csv``. ``stop_after_turns=N`` ends the run once N turns
    have ended by themselves (tests/locust_stop_after_turns.py; ``stop_where="column=value"``:
    N turns with that value in their record; ``stop_each_user``: N turns of every user): a test
    that needs N turns, or a case that N turns make certain, gets them on a slow machine too;
    ``run_time`` is then a guard against a hang, to be set generously."""
    locustfiles = f"{locustfile},{STOP_AFTER_TURNS}" if stop_after_turns else str(locustfile)
    env = {**(env or {}), **stop_after_turns_env(stop_after_turns, stop_where, stop_each_user)}
    command = [
        LOCUST, "-f", locustfiles, "--host", host, "--headless", "-u", str(users), "-r", str(spawn_rate),
        "-t", run_time, *(["--csv", str(prefix)] if prefix is not None else []), "--only-summary",
        # Short test runs want many turns, not people pausing between them (the default is 1-3 s).
        "--think-time-ms", "200-600", *args,
    ]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, **env}, check=False,  # the caller judges the exit code
    )
    return LocustRun(completed.returncode, completed.stdout + completed.stderr, prefix)
