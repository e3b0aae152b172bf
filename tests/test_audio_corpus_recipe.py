"""audio_corpus.recipe: the bundled corpus checked against its recipe, built byte for byte, its noise seeded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import audio_corpus
from audio_corpus import load_corpus
from audio_corpus import recipe as corpus_build
from audio_corpus.build import main as build_main
from voiceharness.errors import CorpusError

PACKAGE_DIR = Path(audio_corpus.__file__).parent
needs_espeak = pytest.mark.requires("espeak-ng")


def test_build_check_accepts_the_committed_corpus():
    assert corpus_build.check() == []


def test_build_check_finds_a_missing_and_an_unlisted_file(tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (copy / "wav" / "greeting_hello_jarvis_en-us_160.wav").rename(copy / "wav" / "stray.wav")
    problems = corpus_build.check(copy)
    assert len(problems) == 1 and "greeting_hello_jarvis_en-us_160.wav not found" in problems[0]


@needs_espeak
def test_build_is_byte_reproducible(tmp_path):
    # A noisy utterance exercises synthesis, resampling, the seeded noise and the WAV writer.
    uid = "echo_echo_hello_world_en-us_160_snr5_pink"
    for name in ("one", "two"):
        corpus_build.build(tmp_path / name, [uid], quiet=True)
    first = (tmp_path / "one" / "wav" / f"{uid}.wav").read_bytes()
    assert first == (tmp_path / "two" / "wav" / f"{uid}.wav").read_bytes()
    assert load_corpus(tmp_path / "one" / "manifest.csv")[0].id == uid
    if corpus_build.espeak_version() in (PACKAGE_DIR / "build-info.json").read_text():
        assert first == (PACKAGE_DIR / "wav" / f"{uid}.wav").read_bytes()


def test_build_names_the_apt_package_when_espeak_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get install espeak-ng"):
        corpus_build.build(tmp_path)
    assert build_main(["--out", str(tmp_path)]) == 2


@needs_espeak
def test_build_refuses_a_partial_build_over_the_bundled_manifest():
    with pytest.raises(CorpusError, match="--only would leave the bundled manifest incomplete"):
        corpus_build.build(only=["greeting_hello_jarvis_en-us_160"])


def test_noise_is_seeded_and_coloured():
    white = corpus_build.noise("white", 16000, 7)
    assert np.array_equal(white, corpus_build.noise("white", 16000, 7))
    pink = corpus_build.noise("pink", 16000, 7)
    spectrum = np.abs(np.fft.rfft(pink)) ** 2
    # Pink: the power in 100-200 Hz is far above the power in 4-8 kHz per hertz.
    assert spectrum[100:200].mean() > 10 * spectrum[4000:8000].mean()
    assert np.sqrt(np.mean(pink**2)) == pytest.approx(1.0)
