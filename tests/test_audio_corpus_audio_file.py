"""audio_corpus.audio_file: a file is converted to 16 kHz mono PCM16 with a warning, or refused saying why."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
from corpus_helpers import speech_wav, tone

from audio_corpus import CorpusWarning, find_speech, load_utterance_file
from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    return speech_wav(tmp_path)


def test_44k_stereo_is_converted_to_16k_mono_with_a_warning_naming_the_file(tmp_path):
    left = tone(1.0, 44_100)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, left], axis=1), 44_100, subtype="PCM_16")
    with pytest.warns(CorpusWarning, match=r"stereo\.wav: 44100 Hz resampled to 16000 Hz; 2 channels"):
        utterance = load_utterance_file(path, expected_intent="GREETING")
    assert utterance.sample_rate_hz == SAMPLE_RATE_HZ
    assert abs(utterance.num_samples - SAMPLE_RATE_HZ) <= 1
    # Mono mix of two equal channels keeps the amplitude (0.5 of full scale).
    assert abs(np.abs(utterance.samples).max() / 32767 - 0.5) < 0.02


def test_float_wav_is_converted_to_pcm16_with_a_warning(tmp_path):
    path = tmp_path / "float.wav"
    soundfile.write(str(path), tone(0.5), SAMPLE_RATE_HZ, subtype="FLOAT")
    with pytest.warns(CorpusWarning, match="FLOAT samples converted to PCM16"):
        utterance = load_utterance_file(path, expected_intent="ECHO")
    assert utterance.num_samples == 8000
    assert np.abs(utterance.samples).max() == pytest.approx(0.5 * 32767, abs=2)


def test_a_canonical_file_loads_without_a_warning_and_keeps_its_bytes(speech_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    data = speech_file.read_bytes()
    assert utterance.pcm == data[44:]
    assert utterance.id == "speech"


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.wav is empty \(0 bytes\)"):
        load_utterance_file(path, expected_intent="GREETING")


def test_text_file_named_wav_is_refused(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n")
    with pytest.raises(CorpusError, match=r"notes\.wav is not audio libsndfile can read.*'these are my not'"):
        load_utterance_file(path, expected_intent="GREETING")


def test_a_bad_intent_name_of_a_single_file_is_refused(speech_file):
    with pytest.raises(CorpusError, match=r"speech\.wav: expected_intent 'hello!' is not an intent name"):
        load_utterance_file(speech_file, expected_intent="hello!")
    assert load_utterance_file(speech_file, expected_intent="HELLO").expected_intent == "HELLO"
    assert load_utterance_file(speech_file, expected_intent="").expected_intent == ""  # the caller judges


def test_speech_end_is_found_in_noise_at_20_db(tmp_path):
    rng = np.random.default_rng(1)
    signal = np.concatenate([np.zeros(4800), tone(0.8), np.zeros(3200)])
    signal += rng.standard_normal(signal.size) * 0.5 / np.sqrt(2) / 10  # 20 dB under the tone
    start, end = find_speech(np.round(signal * 32767), SAMPLE_RATE_HZ)
    assert abs(end - 17600) <= 0.060 * SAMPLE_RATE_HZ
    assert abs(start - 4800) <= 0.060 * SAMPLE_RATE_HZ


def test_silence_has_no_speech():
    assert find_speech(np.zeros(16000), SAMPLE_RATE_HZ) == (0, 0)
