"""gateway.faults.shape_reply_audio: the silent-reply fault and the exact leading silence."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.faults import Faults, shape_reply_audio
from voiceharness.vad import AUDIBLE_WINDOW_MS, first_audible_sample

RATE = 22_050


def spoken(onset_samples: int = 300, seconds: float = 0.5) -> bytes:
    """A tone after a quiet onset (dither below hearing), as a synthesizer's output starts."""
    rng = np.random.default_rng(1)
    onset = rng.integers(-3, 4, onset_samples)
    t = np.arange(int(RATE * seconds)) / RATE
    tone = 8000 * np.sin(2 * np.pi * 220 * t)
    return np.concatenate([onset, tone]).astype("<i2").tobytes()


def test_no_switch_leaves_the_audio_alone():
    pcm = spoken()
    assert shape_reply_audio(pcm, RATE, Faults()) == pcm


def test_a_silent_reply_is_as_long_as_the_reply_and_all_zero():
    pcm = spoken()
    shaped = shape_reply_audio(pcm, RATE, Faults(silent_reply=True))
    assert len(shaped) == len(pcm) and not any(shaped)


@pytest.mark.parametrize("lead_ms", [1, 40, 250, 1000])
def test_leading_silence_replaces_the_quiet_onset_with_exactly_that_many_zero_samples(lead_ms):
    shaped = np.frombuffer(shape_reply_audio(spoken(), RATE, Faults(reply_leading_silence_ms=lead_ms)), "<i2")
    lead = round(lead_ms * RATE / 1000)
    assert np.flatnonzero(shaped)[0] == lead
    audible_ms = first_audible_sample(shaped, RATE) * 1000 / RATE
    assert abs(audible_ms - lead_ms) <= AUDIBLE_WINDOW_MS


def test_a_silent_reply_with_leading_silence_is_still_all_silence():
    pcm = spoken()
    shaped = shape_reply_audio(pcm, RATE, Faults(silent_reply=True, reply_leading_silence_ms=100))
    assert not any(shaped) and len(shaped) == len(pcm) + 2 * round(100 * RATE / 1000)


def test_the_reply_delay_grows_with_the_sessions_open_on_top_of_the_fixed_one():
    from gateway.config import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["--fault-delay-ms", "10", "--fault-delay-per-session-ms", "25"]))
    faults = config.faults
    assert [faults.reply_delay_ms(sessions) for sessions in (0, 1, 4)] == [10.0, 35.0, 110.0]
    assert "delay_per_session_ms=25" in faults.describe()
    assert Faults().reply_delay_ms(50) == 0.0
