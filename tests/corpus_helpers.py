"""Shared by the audio_corpus tests: synthetic WAVs and manifests, a fresh speech cache, and an
espeak-ng that logs its calls.

The logging espeak-ng is a shell script first on PATH that appends its arguments to a file and
execs the real espeak-ng, so synthesis stays real while a test counts how often it ran.
"""

from __future__ import annotations

import csv
import shutil
import stat
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio_corpus import MANIFEST_COLUMNS, Corpus, load_corpus, resolve, speech_cache, synthesis
from voiceharness.guide import SAMPLE_RATE_HZ

REAL_ESPEAK = shutil.which("espeak-ng")


def tone(duration_s: float, rate_hz: int = SAMPLE_RATE_HZ, frequency_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    return 0.5 * np.sin(2 * np.pi * frequency_hz * t)


def write_pcm16(path: Path, signal: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    soundfile.write(str(path), signal, rate_hz, subtype="PCM_16", format="WAV")
    return path


def speech_wav(folder: Path) -> Path:
    """``folder/speech.wav``: 0.3 s silence, 0.8 s tone, 0.2 s silence (speech from sample 4800 to 17600)."""
    signal = np.concatenate([np.zeros(4800), tone(0.8), np.zeros(3200)])
    return write_pcm16(folder / "speech.wav", signal)


def bundled_corpus() -> Corpus:
    """The bundled corpus, loaded with warnings as errors: a committed file that needs converting is a bug."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_corpus()


def raw_wav(data: bytes, *, declared_data_size: int | None = None, block_align: int = 2) -> bytes:
    """A hand-made PCM WAV whose data chunk may declare a size other than its real one."""
    size = len(data) if declared_data_size is None else declared_data_size
    channels, bits = 1, 16
    fmt = struct.pack("<HHIIHH", 1, channels, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_manifest(folder: Path, rows: list[dict[str, str]], columns: Sequence[str] = MANIFEST_COLUMNS) -> Path:
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(uid: str, intent: str = "GREETING", **overrides: str) -> dict[str, str]:
    base = {
        "id": uid, "text": "hello jarvis", "expected_intent": intent, "reply_check": "",
        "path": f"{uid}.wav", "voice": "en-us", "words_per_minute": "160", "snr_db": "", "kind": "clean",
    }  # fmt: skip
    base.update(overrides)
    return base


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
