"""The virtual loopback audio device for tests: ``scripts/virtual-audio.sh`` as a pytest fixture.

:func:`virtual_audio_session` (the body of a session-scoped fixture) starts a private PulseAudio server — a 16 kHz mono null
sink whose monitor is the default source — in a folder of the test session, yields the
environment a subprocess needs to reach it, and stops it afterwards. sounddevice initialises
PortAudio once per process, so tests run ``mic_probe.py`` as a subprocess with that
environment (:func:`run_probe`).

When the device cannot start, the tests skip — except in CI (``CI`` set), where they fail
with the reason: CI must run them for real (``conftest.require_dependency``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require_dependency

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "virtual-audio.sh"
PROBE = ROOT / "mic_probe.py"


def _script(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIRTUAL_AUDIO_DIR": str(folder)}
    return subprocess.run(
        ["bash", str(SCRIPT), command], check=False, env=env, capture_output=True, text=True, timeout=60
    )


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME='value'`` lines (what ``virtual-audio.sh env`` prints) as a dict."""
    exports = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            exports[name] = value.strip("'\"")
    return exports


@dataclass
class VirtualAudio:
    folder: Path
    env: dict[str, str]  # os.environ plus the exports: pass to subprocesses


def _unavailable(reason: str) -> None:
    require_dependency(
        "the virtual audio device", False,
        f"{reason}; apt-get install -y pulseaudio pulseaudio-utils libasound2-plugins (scripts/bootstrap.sh)",
    )


def virtual_audio_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualAudio]:
    """The body of a session fixture: ``yield from virtual_audio_session(tmp_path_factory)``."""
    folder = tmp_path_factory.mktemp("virtual-audio")
    try:
        started = _script("start", folder)
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"{SCRIPT.name} start: {error}")
    if started.returncode != 0:
        _script("stop", folder)  # a daemon that started but did not answer must not outlive us
        _unavailable(f"{SCRIPT.name} start exited {started.returncode}: {started.stderr.strip()}")
    exports = parse_exports(_script("env", folder).stdout)
    try:
        yield VirtualAudio(folder, {**os.environ, **exports})
    finally:
        _script("stop", folder)


def no_audio_env(folder: Path) -> dict[str, str]:
    """An environment in which PulseAudio clients find no server (and so PortAudio no device)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "XDG_RUNTIME_DIR": str(folder),
        "PULSE_RUNTIME_PATH": str(folder),
        "PULSE_STATE_PATH": str(folder),
        "PULSE_SERVER": f"unix:{folder}/no-such-socket",
    }


def run_probe(*args: str, env: dict[str, str], timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
    """``python mic_probe.py ARGS`` in a fresh process with ``env``."""
    return subprocess.run(
        [sys.executable, str(PROBE), *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def probe_json(*args: str, env: dict[str, str], timeout_s: float = 90.0) -> tuple[int, dict[str, Any], str]:
    """Run the probe with ``--json``: (exit code, the JSON object, stderr)."""
    done = run_probe(*args, "--json", env=env, timeout_s=timeout_s)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(
            f"not JSON (exit {done.returncode}): {done.stdout!r}\nstderr: {done.stderr}"
        ) from None
    return done.returncode, data, done.stderr
