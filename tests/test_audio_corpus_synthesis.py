"""Tests of audio_corpus.synthesis: the one espeak-ng recipe, and its checks of voices and rates."""

from __future__ import annotations

import numpy as np
import pytest

from audio_corpus.synthesis import (
    LEADING_SILENCE_MS,
    PEAK_DBFS,
    TRAILING_SILENCE_MS,
    check_rate,
    check_voice,
    synthesise,
)
from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ
from voiceharness.vad import find_speech


def test_speech_is_framed_by_digital_silence_and_peaks_at_minus_3_dbfs():
    signal = synthesise("what is the weather today", "en-us", 160)
    lead = SAMPLE_RATE_HZ * LEADING_SILENCE_MS // 1000
    trail = SAMPLE_RATE_HZ * TRAILING_SILENCE_MS // 1000
    assert not signal[:lead].any() and not signal[-trail:].any()
    assert np.abs(signal).max() == pytest.approx(10 ** (PEAK_DBFS / 20))
    start, end = find_speech(signal, SAMPLE_RATE_HZ)
    assert abs(start - lead) <= 160 and abs((signal.size - end) - trail) <= 160  # one 10 ms window


def test_a_text_that_starts_with_a_dash_is_spoken_not_read_as_an_option():
    # On the command line "--version" would print espeak-ng's version and make no sound.
    dashed = synthesise("--version", "en-us", 160)
    assert dashed.size > SAMPLE_RATE_HZ * (LEADING_SILENCE_MS + TRAILING_SILENCE_MS) // 1000
    assert np.array_equal(dashed, synthesise("version", "en-us", 160))  # espeak-ng skips the dashes


def test_the_same_text_voice_and_rate_give_the_same_samples():
    assert np.array_equal(synthesise("hello", "en+m3", 130), synthesise("hello", "en+m3", 130))


def test_a_text_espeak_makes_no_sound_of_is_refused():
    with pytest.raises(CorpusError, match=r"espeak-ng made no audible speech of ' \.\.\. '"):
        synthesise(" ... ", "en-us", 160)


@pytest.mark.parametrize("voice", ["en-us", "en", "en-us+f3", "en+m3", "en-us+Alex"])
def test_voices_and_variants_espeak_has_pass(voice):
    check_voice(voice)


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ("nosuchvoice", "espeak-ng has no voice 'nosuchvoice'"),
        ("en-us+alex", "no voice variant 'alex'"),
        ("", "is not a voice name"),
        ("-v", "is not a voice name"),
        ("en us", "is not a voice name"),
    ],
)
def test_voices_espeak_lacks_are_refused(voice, message):
    with pytest.raises(CorpusError, match=message):
        check_voice(voice)


def test_rates_are_whole_words_per_minute_in_espeaks_range():
    assert [check_rate(rate) for rate in (80, "160", " 450 ")] == [80, 160, 450]
    for bad in (79, 451, "1e2", True, -160, None):
        with pytest.raises(CorpusError, match="speaking rate"):
            check_rate(bad)
