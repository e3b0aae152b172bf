"""Bad corpus input, found when Locust loads the corpus — before any user starts.

``--corpus-manifest PATH`` points the locustfile at a manifest. A file the loader refuses
(truncated, odd byte count, empty, a text file named .wav) ends the run with exit code 2 and
a message naming the file, no traceback, no user started and no turn recorded. A file it can
convert (44.1 kHz stereo, float samples) is converted with a warning naming the file, and the
run goes on with it.
"""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest
import soundfile
from fault_runs import check_invariant, failures, run_many
from misbehaving_gateway import MisbehavingGateway

from audio_corpus import MANIFEST_COLUMNS

pytestmark = pytest.mark.slow

RATE_HZ = 16_000


def _speech(rate_hz: int) -> np.ndarray:
    """0.3 s silence, 0.6 s tone, 0.3 s silence."""
    t = np.arange(int(0.6 * rate_hz)) / rate_hz
    return np.concatenate([np.zeros(int(0.3 * rate_hz)), 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(int(0.3 * rate_hz))])


def _raw_wav(data: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, RATE_HZ, RATE_HZ * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _write_case(folder, name: str) -> None:
    """A manifest with one good file and the file of case ``name``."""
    folder.mkdir()
    good = folder / "good.wav"
    soundfile.write(str(good), _speech(RATE_HZ), RATE_HZ, subtype="PCM_16")
    bad = folder / f"{name}.wav"
    if name == "stereo_44k":
        left = _speech(44_100)
        soundfile.write(str(bad), np.stack([left, left], axis=1), 44_100, subtype="PCM_16")
    elif name == "float":
        soundfile.write(str(bad), _speech(RATE_HZ), RATE_HZ, subtype="FLOAT")
    elif name == "truncated":
        bad.write_bytes(good.read_bytes()[:5000])
    elif name == "odd_bytes":
        bad.write_bytes(_raw_wav(b"\x01\x00" * 100 + b"\x01") + b"\x00")
    elif name == "empty":
        bad.write_bytes(b"")
    elif name == "text":
        bad.write_text("these are my notes, not audio\n")
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(MANIFEST_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for uid in ("good", name):
            writer.writerow({"id": uid, "text": "hello jarvis", "expected_intent": "GREETING", "reply_check": "",
                             "path": f"{uid}.wav", "voice": "en-us", "words_per_minute": "160", "snr_db": "",
                             "kind": "clean"})


REFUSED = {
    "truncated": "truncated.wav is truncated",
    "odd_bytes": "odd byte count",
    "empty": "empty.wav is empty (0 bytes)",
    "text": "text.wav is not audio libsndfile can read",
}
CONVERTED = {
    "stereo_44k": "stereo_44k.wav: 44100 Hz resampled to 16000 Hz",
    "float": "float.wav: FLOAT samples converted to PCM16",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    with MisbehavingGateway() as gateway:
        specs = {}
        for name in (*REFUSED, *CONVERTED):
            _write_case(folder / name, name)
            specs[name] = {"prefix": folder / name / "run", "host": gateway.url(), "run_time": "4s",
                           "args": ("--corpus-manifest", str(folder / name / "manifest.csv"), "--tags", "corpus",
                                    "--ws-path", "/ws/audio/normal", "--pace", "fast")}
        if CONVERTED:
            for name in CONVERTED:  # only the converted file, so the turns prove it was streamed
                specs[name]["args"] += ("--utterances", name)
        return run_many(specs)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_corpus_file_stops_the_run_with_exit_2_before_any_user_starts(runs, name):
    run = runs[name]
    assert run.returncode == 2, run.output[-2000:]
    assert REFUSED[name] in run.output
    assert "Traceback" not in run.output
    assert "Ramping to" not in run.output and "users spawned" not in run.output
    assert not run.file("_turns.csv").exists()


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_a_convertible_corpus_file_is_converted_with_a_warning_and_used(runs, name):
    run = runs[name]
    assert CONVERTED[name] in run.output
    rows = [row for row in check_invariant(run) if row["failure"] != "run_stopped"]
    assert rows and all(row["utterance_id"] == name and row["success"] == "1" for row in rows), failures(rows)
