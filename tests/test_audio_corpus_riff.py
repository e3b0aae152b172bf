"""audio_corpus.riff: WAVs libsndfile would read leniently (truncated, mis-sized data) are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import raw_wav, speech_wav

from audio_corpus import load_utterance_file
from voiceharness.errors import CorpusError


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    return speech_wav(tmp_path)


def test_truncated_file_is_refused(tmp_path, speech_file):
    path = tmp_path / "cut.wav"
    path.write_bytes(speech_file.read_bytes()[:5000])
    with pytest.raises(
        CorpusError, match=r"cut\.wav is truncated: its data chunk declares 41600 bytes but only 4956"
    ):
        load_utterance_file(path, expected_intent="GREETING")


def test_zero_length_audio_is_refused(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(raw_wav(b""))
    with pytest.raises(CorpusError, match=r"zero\.wav holds zero-length audio"):
        load_utterance_file(path, expected_intent="GREETING")


def test_odd_byte_count_data_chunk_is_refused(tmp_path):
    path = tmp_path / "odd.wav"
    path.write_bytes(raw_wav(b"\x01\x00" * 100 + b"\x01") + b"\x00")  # + RIFF pad byte
    with pytest.raises(CorpusError, match=r"odd\.wav has a data chunk of 201 bytes.*odd byte count"):
        load_utterance_file(path, expected_intent="GREETING")
