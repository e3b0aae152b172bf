"""audio_corpus.model: an utterance's frames are zero-copy views of one buffer; its speech bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_helpers import speech_wav

from audio_corpus import load_utterance_file


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    return speech_wav(tmp_path)


def test_frames_are_zero_copy_views_of_the_one_pcm_buffer(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    frames = utterance.frames(1024)
    assert all(isinstance(f, memoryview) and f.obj is utterance.pcm and f.readonly for f in frames)
    assert b"".join(frames) == utterance.pcm
    # 20800 samples = 20 full frames of 1024 and a short last frame of 320 samples.
    assert [len(f) for f in frames] == [2048] * 20 + [640]
    assert len(frames) == utterance.frame_count(1024)


def test_frames_are_cached_so_all_users_share_one_tuple(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    assert utterance.frames(1024) is utterance.frames(1024)
    assert utterance.frames(320) is not utterance.frames(1024)
    assert len(utterance.frames(320)) == 65


def test_bad_chunk_size_is_refused(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    with pytest.raises(ValueError, match="positive integer"):
        utterance.frames(0)


def test_speech_end_is_found_within_60_ms_of_a_tone_ending(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    assert abs(utterance.speech_end_ms - 1100.0) <= 60
    assert abs(utterance.speech_start_ms - 300.0) <= 60
    assert utterance.duration_ms == pytest.approx(1300.0)
    # 17600 / 1024 = 17.2: the last speech sample travels in frame 17.
    assert utterance.speech_end_frame(1024) == 17
