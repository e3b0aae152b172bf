"""voiceharness.vad: the one speech/silence detector."""

import numpy as np

from voiceharness import vad

RATE = 16_000


def _tone(ms: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    return amplitude * np.sin(2 * np.pi * 440 * t)


def test_first_audible_sample_is_the_start_of_the_first_window_above_the_threshold():
    silence = np.zeros(RATE // 4)  # 250 ms of digital silence, then a tone
    samples = np.concatenate([silence, _tone(200)])
    assert vad.first_audible_sample(samples, RATE) == RATE // 4


def test_dither_and_digital_silence_are_not_audible():
    rng = np.random.default_rng(1)
    dither = rng.integers(-2, 3, RATE)
    assert vad.first_audible_sample(dither, RATE) is None
    assert vad.first_audible_sample(np.zeros(RATE), RATE) is None
    assert vad.first_audible_sample(np.zeros(0), RATE) is None


def test_a_short_tail_window_is_judged_on_its_own_samples():
    samples = np.concatenate([np.zeros(160 * 3), _tone(5)])  # 3 silent windows, then 5 ms of tone
    assert vad.first_audible_sample(samples, RATE) == 480


def test_digital_silence_allows_a_couple_of_lsb_only():
    assert vad.is_digital_silence(np.zeros(100, dtype=np.int16))
    assert vad.is_digital_silence(np.array([0, 1, -2, 2], dtype=np.int16))
    assert not vad.is_digital_silence(np.array([0, 3, 0], dtype=np.int16))
    assert not vad.is_digital_silence(np.array([-32768], dtype=np.int16))  # no int16 overflow in abs
    assert vad.is_digital_silence(np.zeros(0, dtype=np.int16))


def test_find_speech_brackets_a_tone_between_silences():
    samples = np.concatenate([np.zeros(RATE // 10), _tone(300), np.zeros(RATE // 5)])
    start, end = vad.find_speech(samples, RATE)
    assert start == RATE // 10
    assert end == RATE // 10 + int(RATE * 0.3)
    assert vad.find_speech(np.zeros(RATE), RATE) == (0, 0)


def test_levels_dbfs_of_full_scale_and_silence():
    rows = np.stack([np.full(160, 32767), np.zeros(160)])
    full, silent = vad.levels_dbfs(rows)
    assert abs(full) < 0.01
    assert silent == -100.0
