"""audio_probe.signals: the signal maths of the audio checks, on synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from audio_probe import signals

RATE = signals.SAMPLE_RATE_HZ
rng = np.random.default_rng(20261124)


def sine(freq_hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(round(seconds * RATE)) / RATE)


# ------------------------------------------------------------------------------ levels


def test_rms_of_a_full_scale_sine_is_minus_3_dbfs():
    assert signals.rms_dbfs(sine(1000, 1, 1.0)) == pytest.approx(-3.01, abs=0.01)


def test_rms_and_peak_of_a_square_at_a_tenth_of_full_scale_are_minus_20_dbfs():
    square = 0.1 * np.sign(sine(100, 1) + 1e-12)
    assert signals.rms_dbfs(square) == pytest.approx(-20.0, abs=0.01)
    assert signals.peak_dbfs(square) == pytest.approx(-20.0, abs=0.01)


def test_digital_silence_and_no_samples_read_the_floor_not_minus_infinity():
    assert signals.rms_dbfs(np.zeros(1000)) == signals.DBFS_FLOOR
    assert signals.peak_dbfs(np.zeros(0)) == signals.DBFS_FLOOR


def test_clip_count_counts_samples_at_either_pcm16_rail():
    x = signals.pcm16_to_float(np.array([0, 32767, -32768, 32766, -32767, 32767], dtype=np.int16))
    assert signals.clip_count(x) == 3


def test_pcm16_round_trip_is_exact_and_clips_out_of_range_floats():
    samples = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    assert signals.float_to_pcm16(signals.pcm16_to_float(samples.tobytes())) == samples.tobytes()
    assert np.frombuffer(signals.float_to_pcm16(np.array([2.0, -2.0])), "<i2").tolist() == [32767, -32768]


@pytest.mark.parametrize(
    ("rms", "peak", "clipped", "verdict", "passed"),
    [
        (-120.0, -120.0, 0, "silent", False),
        (-65.0, -50.0, 0, "silent", False),
        (-20.0, -0.0, 50, "clipping", False),
        (-50.0, -35.0, 0, "too quiet", False),
        (-25.0, -8.0, 0, "OK", True),
        (-25.0, -8.0, 2, "OK", True),
    ],
)
def test_mic_verdict(rms, peak, clipped, verdict, passed):
    result = signals.mic_verdict(rms, peak, clipped)
    assert (result.name, result.passed) == (verdict, passed)
    assert result.advice


def test_silent_verdict_carries_the_guides_microphone_diagnosis():
    result = signals.mic_verdict(-120.0, -120.0, 0)
    assert result.diagnosis == "mic_silent"
    assert "Failed to access microphone" in result.advice and "Fix:" in result.advice


def test_level_bar_is_empty_at_the_floor_full_at_0_dbfs_and_proportional_between():
    assert signals.level_bar(-120.0, width=8) == "[........] -120.0 dBFS"
    assert signals.level_bar(0.0, width=8) == "[########]    0.0 dBFS"
    assert signals.level_bar(-15.0, width=8).startswith("[######..]")


# ------------------------------------------------------------------------------ signals


def test_tone_has_its_peak_level_and_frequency():
    x = signals.tone(440, 1.0, RATE, -12.0)
    assert signals.peak_dbfs(x) == pytest.approx(-12.0, abs=0.01)
    assert signals.estimate_frequency(x) == pytest.approx(440.0, abs=0.05)


def test_chirp_sweeps_from_f0_to_f1_at_its_peak_level():
    x = signals.chirp(200, 6000, 1.0, RATE, -6.0)
    assert x.size == RATE
    assert signals.peak_dbfs(x) == pytest.approx(-6.0, abs=0.05)
    assert signals.estimate_frequency(x[800:1600]) == pytest.approx(200 + 5800 * 0.075, abs=40)
    assert signals.estimate_frequency(x[-1600:-800]) == pytest.approx(200 + 5800 * 0.925, abs=40)


@pytest.mark.parametrize("freq_hz", [440.0, 437.3, 1000.25, 3150.7])
def test_estimate_frequency_finds_off_bin_tones_to_a_fraction_of_a_hertz(freq_hz):
    assert signals.estimate_frequency(sine(freq_hz, 0.5)) == pytest.approx(freq_hz, abs=0.1)


def test_estimate_frequency_of_silence_is_zero_not_nan():
    assert signals.estimate_frequency(np.zeros(4096)) >= 0.0
    assert signals.estimate_frequency(np.zeros(4)) == 0.0


def test_resample_keeps_the_frequency():
    x44 = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    x16 = signals.resample(x44, 44100, 16000)
    assert x16.size == 16000
    assert signals.estimate_frequency(x16, 16000) == pytest.approx(440.0, abs=0.1)


# ------------------------------------------------------------------------------ latency


def test_find_delay_locates_a_chirp_to_the_sample_in_noise():
    ref = signals.chirp()
    captured = np.concatenate([np.zeros(2345), 0.3 * ref, np.zeros(4000)])
    captured += 0.01 * rng.standard_normal(captured.size)
    lag, correlation = signals.find_delay(ref, captured)
    assert lag == 2345
    assert correlation > 0.95


def test_find_delay_ignores_level_and_polarity():
    ref = signals.chirp()
    captured = np.concatenate([np.zeros(100), -0.001 * ref, np.zeros(100)])
    assert signals.find_delay(ref, captured) == (100, pytest.approx(1.0, abs=1e-6))


def test_find_delay_reports_no_correlation_for_silence_or_noise():
    ref = signals.chirp()
    assert signals.find_delay(ref, np.zeros(3 * ref.size)) == (0, 0.0)
    assert signals.find_delay(ref, ref[:100]) == (0, 0.0)
    _, correlation = signals.find_delay(ref, 0.3 * rng.standard_normal(3 * ref.size))
    assert correlation < 0.3


# ------------------------------------------------------------------------------ SNR, THD


def test_tone_analysis_of_a_clean_tone_reads_a_high_snr_and_no_distortion():
    analysis = signals.tone_analysis(sine(440, 1.0))
    assert analysis.frequency_hz == pytest.approx(440.0, abs=0.01)
    assert analysis.snr_db > 120
    assert analysis.thd_percent < 0.001
    assert analysis.level_dbfs == pytest.approx(-9.03, abs=0.01)


@pytest.mark.parametrize("snr_db", [10.0, 30.0, 50.0])
def test_tone_analysis_measures_the_snr_of_a_tone_in_white_noise(snr_db):
    x = sine(440, 2.0, 0.5)
    noise_rms = np.sqrt(np.mean(x * x)) / 10 ** (snr_db / 20)
    analysis = signals.tone_analysis(x + noise_rms * rng.standard_normal(x.size))
    assert analysis.snr_db == pytest.approx(snr_db, abs=1.0)


def test_tone_analysis_measures_thd_from_harmonics():
    # 2nd harmonic at 1 % and 3rd at 0.5 % of the fundamental: THD = sqrt(1 + 0.25) % = 1.118 %
    x = sine(440, 1.0, 0.5) + sine(880, 1.0, 0.005) + sine(1320, 1.0, 0.0025)
    analysis = signals.tone_analysis(x)
    assert analysis.thd_percent == pytest.approx(1.118, rel=0.02)
    assert analysis.thd_db == pytest.approx(-39.0, abs=0.2)
    assert analysis.snr_db > 100  # harmonics are distortion, not noise


def test_loopback_verdict_passes_a_clean_path_and_names_each_problem():
    clean = signals.ToneAnalysis(440.0, -9.0, 90.0, 0.01, -80.0)
    assert signals.loopback_verdict(1.0, 0.0, clean, -10.0)[0].passed
    bad = signals.ToneAnalysis(452.0, -9.0, 12.0, 20.0, -14.0)
    verdict, problems = signals.loopback_verdict(0.5, 12.0, bad, -10.0)
    assert not verdict.passed and len(problems) == 4
    assert "chirp not found" in problems[0] and "sample rate" in problems[1]
    silent, _ = signals.loopback_verdict(0.0, -440.0, signals.ToneAnalysis(0, -120, 0, 0, -120), -120.0)
    assert silent.name == "silent" and silent.diagnosis == "mic_silent"
