"""Shared by the audio_corpus tests: a fresh speech cache, and an espeak-ng that logs its calls.

The logging espeak-ng is a shell script first on PATH that appends its arguments to a file and
execs the real espeak-ng, so synthesis stays real while a test counts how often it ran.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from audio_corpus import resolve, speech_cache, synthesis

REAL_ESPEAK = shutil.which("espeak-ng")


def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For a fixture: an empty speech cache folder, and no utterance remembered by this process."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(speech_cache.CACHE_ENV, str(folder))
    resolve._memo.clear()
    speech_cache._fallback_dir.clear()
    yield folder
    resolve._memo.clear()
    speech_cache._fallback_dir.clear()


def logging_espeak(folder: Path, *, version: str | None = None) -> tuple[Path, Path]:
    """(bin folder to put first on PATH, log file): an espeak-ng that logs each call's arguments.

    ``version``: what ``--version`` prints instead of the real line (a "new" espeak-ng).
    """
    assert REAL_ESPEAK is not None, "espeak-ng is not installed: apt-get install espeak-ng"
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    log = folder / "espeak-calls.log"
    fake_version = f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n' if version else ""
    script = bin_dir / "espeak-ng"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n{fake_version}exec "{REAL_ESPEAK}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log.touch()
    return bin_dir, log


def synthesis_calls(log: Path) -> int:
    """How many times the logging espeak-ng was asked to write speech to a file (``-w``)."""
    return sum(1 for line in log.read_text().splitlines() if " -w " in f" {line} ")


def clear_espeak_memo() -> None:
    """Forget the espeak-ng versions and voices learnt by this process (PATH changed)."""
    synthesis._versions.clear()
    synthesis._known_voices.clear()
    synthesis._variants.clear()
