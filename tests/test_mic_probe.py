"""mic_probe.py: the signal maths on synthetic signals, then every command on a real (virtual)
device — the PulseAudio loopback of scripts/virtual-audio.sh — run as subprocesses."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from virtual_audio import VirtualAudio, no_audio_env, probe_json, run_probe, virtual_audio_session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import mic_probe as mp


@pytest.fixture(scope="session")
def virtual_audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualAudio]:
    """The PulseAudio null-sink loopback, started once for the session (scripts/virtual-audio.sh)."""
    yield from virtual_audio_session(tmp_path_factory)


RATE = mp.SAMPLE_RATE_HZ
rng = np.random.default_rng(20261124)


def sine(freq_hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(round(seconds * RATE)) / RATE)


# ------------------------------------------------------------------------------ levels


def test_rms_of_a_full_scale_sine_is_minus_3_dbfs():
    assert mp.rms_dbfs(sine(1000, 1, 1.0)) == pytest.approx(-3.01, abs=0.01)


def test_rms_and_peak_of_a_square_at_a_tenth_of_full_scale_are_minus_20_dbfs():
    square = 0.1 * np.sign(sine(100, 1) + 1e-12)
    assert mp.rms_dbfs(square) == pytest.approx(-20.0, abs=0.01)
    assert mp.peak_dbfs(square) == pytest.approx(-20.0, abs=0.01)


def test_digital_silence_and_no_samples_read_the_floor_not_minus_infinity():
    assert mp.rms_dbfs(np.zeros(1000)) == mp.DBFS_FLOOR
    assert mp.peak_dbfs(np.zeros(0)) == mp.DBFS_FLOOR


def test_clip_count_counts_samples_at_either_pcm16_rail():
    x = mp.pcm16_to_float(np.array([0, 32767, -32768, 32766, -32767, 32767], dtype=np.int16))
    assert mp.clip_count(x) == 3


def test_pcm16_round_trip_is_exact_and_clips_out_of_range_floats():
    samples = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    assert mp.float_to_pcm16(mp.pcm16_to_float(samples.tobytes())) == samples.tobytes()
    assert np.frombuffer(mp.float_to_pcm16(np.array([2.0, -2.0])), "<i2").tolist() == [32767, -32768]


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
    result = mp.mic_verdict(rms, peak, clipped)
    assert (result.name, result.passed) == (verdict, passed)
    assert result.advice


def test_silent_verdict_carries_the_guides_microphone_diagnosis():
    result = mp.mic_verdict(-120.0, -120.0, 0)
    assert result.diagnosis == "mic_silent"
    assert "Failed to access microphone" in result.advice and "Fix:" in result.advice


def test_level_bar_is_empty_at_the_floor_full_at_0_dbfs_and_proportional_between():
    assert mp.level_bar(-120.0, width=8) == "[........] -120.0 dBFS"
    assert mp.level_bar(0.0, width=8) == "[########]    0.0 dBFS"
    assert mp.level_bar(-15.0, width=8).startswith("[######..]")


def test_level_meter_redraws_one_line_on_a_terminal():
    out = io.StringIO()
    meter = mp.LevelMeter(out, tty=True)
    for level in (0.001, 0.1, 0.5):
        meter.update(np.full(1024, level), 0.064)
    meter.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1


def test_level_meter_prints_a_line_per_half_second_when_not_a_terminal():
    out = io.StringIO()
    meter = mp.LevelMeter(out, tty=False)
    for _ in range(17):  # 17 chunks of 64 ms = 1.088 s
        meter.update(np.full(1024, 0.1), 0.064)
    meter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 0.512 s, at 1.024 s, then the last chunk flushed at close
    assert "\r" not in out.getvalue() and "-20.0 dBFS" in lines[0]


# ------------------------------------------------------------------------------ signals


def test_tone_has_its_peak_level_and_frequency():
    x = mp.tone(440, 1.0, RATE, -12.0)
    assert mp.peak_dbfs(x) == pytest.approx(-12.0, abs=0.01)
    assert mp.estimate_frequency(x) == pytest.approx(440.0, abs=0.05)


def test_chirp_sweeps_from_f0_to_f1_at_its_peak_level():
    x = mp.chirp(200, 6000, 1.0, RATE, -6.0)
    assert x.size == RATE
    assert mp.peak_dbfs(x) == pytest.approx(-6.0, abs=0.05)
    assert mp.estimate_frequency(x[800:1600]) == pytest.approx(200 + 5800 * 0.075, abs=40)
    assert mp.estimate_frequency(x[-1600:-800]) == pytest.approx(200 + 5800 * 0.925, abs=40)


@pytest.mark.parametrize("freq_hz", [440.0, 437.3, 1000.25, 3150.7])
def test_estimate_frequency_finds_off_bin_tones_to_a_fraction_of_a_hertz(freq_hz):
    assert mp.estimate_frequency(sine(freq_hz, 0.5)) == pytest.approx(freq_hz, abs=0.1)


def test_estimate_frequency_of_silence_is_zero_not_nan():
    assert mp.estimate_frequency(np.zeros(4096)) >= 0.0
    assert mp.estimate_frequency(np.zeros(4)) == 0.0


def test_resample_keeps_the_frequency():
    x44 = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)
    x16 = mp.resample(x44, 44100, 16000)
    assert x16.size == 16000
    assert mp.estimate_frequency(x16, 16000) == pytest.approx(440.0, abs=0.1)


# ------------------------------------------------------------------------------ latency


def test_find_delay_locates_a_chirp_to_the_sample_in_noise():
    ref = mp.chirp()
    captured = np.concatenate([np.zeros(2345), 0.3 * ref, np.zeros(4000)])
    captured += 0.01 * rng.standard_normal(captured.size)
    lag, correlation = mp.find_delay(ref, captured)
    assert lag == 2345
    assert correlation > 0.95


def test_find_delay_ignores_level_and_polarity():
    ref = mp.chirp()
    captured = np.concatenate([np.zeros(100), -0.001 * ref, np.zeros(100)])
    assert mp.find_delay(ref, captured) == (100, pytest.approx(1.0, abs=1e-6))


def test_find_delay_reports_no_correlation_for_silence_or_noise():
    ref = mp.chirp()
    assert mp.find_delay(ref, np.zeros(3 * ref.size)) == (0, 0.0)
    assert mp.find_delay(ref, ref[:100]) == (0, 0.0)
    _, correlation = mp.find_delay(ref, 0.3 * rng.standard_normal(3 * ref.size))
    assert correlation < 0.3


# ------------------------------------------------------------------------------ SNR, THD


def test_tone_analysis_of_a_clean_tone_reads_a_high_snr_and_no_distortion():
    analysis = mp.tone_analysis(sine(440, 1.0))
    assert analysis.frequency_hz == pytest.approx(440.0, abs=0.01)
    assert analysis.snr_db > 120
    assert analysis.thd_percent < 0.001
    assert analysis.level_dbfs == pytest.approx(-9.03, abs=0.01)


@pytest.mark.parametrize("snr_db", [10.0, 30.0, 50.0])
def test_tone_analysis_measures_the_snr_of_a_tone_in_white_noise(snr_db):
    x = sine(440, 2.0, 0.5)
    noise_rms = np.sqrt(np.mean(x * x)) / 10 ** (snr_db / 20)
    analysis = mp.tone_analysis(x + noise_rms * rng.standard_normal(x.size))
    assert analysis.snr_db == pytest.approx(snr_db, abs=1.0)


def test_tone_analysis_measures_thd_from_harmonics():
    # 2nd harmonic at 1 % and 3rd at 0.5 % of the fundamental: THD = sqrt(1 + 0.25) % = 1.118 %
    x = sine(440, 1.0, 0.5) + sine(880, 1.0, 0.005) + sine(1320, 1.0, 0.0025)
    analysis = mp.tone_analysis(x)
    assert analysis.thd_percent == pytest.approx(1.118, rel=0.02)
    assert analysis.thd_db == pytest.approx(-39.0, abs=0.2)
    assert analysis.snr_db > 100  # harmonics are distortion, not noise


def test_loopback_verdict_passes_a_clean_path_and_names_each_problem():
    clean = mp.ToneAnalysis(440.0, -9.0, 90.0, 0.01, -80.0)
    assert mp.loopback_verdict(1.0, 0.0, clean, -10.0)[0].passed
    bad = mp.ToneAnalysis(452.0, -9.0, 12.0, 20.0, -14.0)
    verdict, problems = mp.loopback_verdict(0.5, 12.0, bad, -10.0)
    assert not verdict.passed and len(problems) == 4
    assert "chirp not found" in problems[0] and "sample rate" in problems[1]
    silent, _ = mp.loopback_verdict(0.0, -440.0, mp.ToneAnalysis(0, -120, 0, 0, -120), -120.0)
    assert silent.name == "silent" and silent.diagnosis == "mic_silent"


# ------------------------------------------------------------------------------ device errors


class FakePortAudioError(Exception):
    pass


def test_negotiate_rate_falls_back_to_the_device_rate_and_says_so():
    asked = []

    def check(rate):
        asked.append(rate)
        if rate != 48000:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    rate, note = mp.negotiate_rate(check, 16000, 48000)
    assert (rate, asked) == (48000, [16000, 48000])
    assert "does not support 16000 Hz" in note and "resampling to 16000 Hz" in note


def test_negotiate_rate_passes_other_errors_on_and_keeps_a_supported_rate():
    assert mp.negotiate_rate(lambda rate: None, 16000, 48000) == (16000, None)

    def busy(rate):
        raise FakePortAudioError("Device unavailable [PaErrorCode -9985]")

    with pytest.raises(FakePortAudioError):
        mp.negotiate_rate(busy, 16000, 48000)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Error opening InputStream: Device unavailable [PaErrorCode -9985]", "mic_busy"),
        (
            "Error opening InputStream: Unanticipated host error: 'Device or resource busy' [ALSA error -16]",
            "mic_busy",
        ),
        (
            "Error opening InputStream: Unanticipated host error: 'Permission denied' [ALSA error -13]",
            "mic_busy",
        ),
        ("Error querying device -1", "mic_no_device"),
        ("Error querying device 7", "mic_no_device"),
        ("No input device matching 'usb'", "mic_no_device"),
        ("Error opening InputStream: Invalid number of channels [PaErrorCode -9998]", "mic_no_device"),
        ("Error starting stream: Wait timed out [PaErrorCode -9987]", "mic_unavailable"),
    ],
)
def test_classify_device_error(message, code):
    assert mp.classify_device_error(Exception(message)) == code


def test_parse_device_takes_an_index_a_name_or_an_input_output_pair():
    assert mp._parse_device(None) == (None, None)
    assert mp._parse_device("3") == (3, 3)
    assert mp._parse_device("pulse") == ("pulse", "pulse")
    assert mp._parse_device("1,pulse") == (1, "pulse")
    assert mp._parse_device(",2") == (None, 2)


def test_without_portaudio_the_module_imports_and_mic_gives_the_diagnosis(tmp_path):
    # A stand-in for a machine without libportaudio2: sounddevice raises exactly what it raises there.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = {**no_audio_env(tmp_path / "run"), "PYTHONPATH": str(tmp_path)}
    imported = subprocess.run(
        [sys.executable, "-c", "import mic_probe; print(mic_probe.rms_dbfs([0.5]))"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0 and imported.stdout.strip() == "-6.020599913279624"
    done = run_probe("mic", "--duration", "1", env=env)
    assert done.returncode == 2
    assert (
        "PortAudio library is not installed" in done.stderr and "apt-get install libportaudio2" in done.stderr
    )
    assert "Traceback" not in done.stderr
    code, data, _ = probe_json("devices", env=env)
    assert code == 2 and data["diagnosis"]["code"] == "portaudio_missing"


def test_without_the_loopback_mic_shows_the_no_device_diagnosis(tmp_path):
    env = no_audio_env(tmp_path)
    code, devices, _ = probe_json("devices", env=env)
    if any(d["max_input_channels"] > 0 for d in devices.get("devices", [])):
        pytest.skip("this machine has a real input device, so 'no device' cannot be shown here")
    done = run_probe("mic", "--duration", "1", env=env)
    assert done.returncode == 2
    assert "Failed to access microphone: no input device" in done.stderr
    assert "Likely causes: microphone missing or broken" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr
    code, data, _ = probe_json("mic", "--duration", "1", env=env)
    assert code == 2 and data["diagnosis"]["code"] == "mic_no_device"
    assert data["diagnosis"]["causes"] and data["diagnosis"]["fixes"]
    assert devices["diagnosis"]["code"] == "mic_no_device"


def test_a_bad_duration_is_refused_without_a_traceback(tmp_path):
    done = run_probe("mic", "--duration", "0", env=no_audio_env(tmp_path))
    assert done.returncode == 2 and "--duration" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------ real device


@pytest.mark.audio
def test_devices_lists_the_virtual_device_with_defaults_marked(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("devices", env=virtual_audio.env)
    assert code == 0
    names = {d["name"]: d for d in data["devices"]}
    assert {"pulse", "default"} <= set(names)
    assert names["default"]["default_input"] and names["default"]["default_output"]
    text = run_probe("devices", env=virtual_audio.env).stdout
    assert "Input devices (* = default):" in text
    assert any(line.strip().startswith("*") and "default" in line for line in text.splitlines())


@pytest.mark.exclusive  # real-time audio through PulseAudio: starved of the CPU, the loopback loses samples
@pytest.mark.audio
def test_loopback_finds_the_chirp_and_the_440_hz_tone(virtual_audio: VirtualAudio):
    code, data, stderr = probe_json("loopback", "--attempts", "3", env=virtual_audio.env)
    assert data["correlation"] > 0.8, data
    assert abs(data["frequency_hz"] - 440.0) < 5.0, data
    assert data["snr_db"] >= mp.MIN_SNR_DB and data["thd_percent"] <= mp.MAX_THD_PERCENT, data
    assert 0 <= data["latency_ms"] < 1000, data
    assert code == 0 and data["verdict"] == "OK", data
    assert "Traceback" not in stderr


@pytest.mark.audio
def test_mic_on_the_silent_loopback_says_silent(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("mic", "--duration", "1", env=virtual_audio.env)
    assert code == 1
    assert data["verdict"] == "silent" and data["diagnosis"]["code"] == "mic_silent"
    assert data["rms_dbfs"] == mp.DBFS_FLOOR and data["clipped_samples"] == 0
    assert data["device"]["rate_hz"] == 16000 and not data["device"]["resampled"]
    assert len(data["chunk_rms_dbfs"]) == 16  # 1 s in 1024-sample chunks (15.6, the last one short)


@pytest.mark.audio
def test_mic_level_bars_react_to_a_tone_played_meanwhile(virtual_audio: VirtualAudio):
    speaker = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "mic_probe.py"),
            "speaker",
            "--no-capture",
            "--duration",
            "60",  # stopped once the mic has listened
            "--level",
            "-6",
        ],
        cwd=ROOT,
        env=virtual_audio.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def tone_playing() -> bool:  # its stream is in PulseAudio: waited for, not a fixed sleep
        listed = subprocess.run(["pactl", "list", "short", "sink-inputs"], env=virtual_audio.env,
                                capture_output=True, text=True, timeout=10, check=False)
        return bool(listed.stdout.strip())

    try:
        wait_until(tone_playing, 60, "the speaker's tone to start playing")
        done = run_probe("mic", "--duration", "1.5", env=virtual_audio.env)
    finally:
        speaker.terminate()
        speaker.wait(timeout=60)
    bars = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(bars) >= 2 and "#" * 20 in bars[0], done.stdout  # not a tty: a line per 0.5 s
    assert "Verdict: OK" in done.stdout, done.stdout
    assert done.returncode == 0


@pytest.mark.exclusive  # real-time audio through PulseAudio: starved of the CPU, the loopback loses samples
@pytest.mark.audio
def test_speaker_tone_is_confirmed_by_the_monitor_source(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("speaker", "--duration", "1.5", "--attempts", "3", env=virtual_audio.env)
    assert code == 0 and data["verdict"] == "confirmed" and data["confirmed"] is True, data
    assert abs(data["heard_frequency_hz"] - 440.0) < 5.0


@pytest.mark.audio
def test_an_unsupported_rate_falls_back_to_the_device_rate_and_resamples(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("mic", "--duration", "1", "--rate", "2000000", env=virtual_audio.env)
    device = data["device"]
    assert device["resampled"] and device["rate_hz"] != 2_000_000
    assert "does not support 2000000 Hz" in device["note"] and "resampling to 16000 Hz" in device["note"]
    assert code == 1 and data["verdict"] == "silent"  # the capture still ran and was judged


@pytest.mark.exclusive  # real-time audio through PulseAudio: starved of the CPU, the loopback loses samples
@pytest.mark.audio
@pytest.mark.slow
def test_acoustic_gets_greeting_back_for_hello_jarvis(virtual_audio: VirtualAudio, shared_gateway):
    url = f"{shared_gateway.url}/ws/audio"
    code, data, stderr = probe_json(
        "acoustic",
        "--url",
        url,
        "--text",
        "hello jarvis",
        "--attempts",
        "3",
        env=virtual_audio.env,
        timeout_s=120,
    )
    assert data.get("intent") == "GREETING", (data, stderr)
    assert code == 0 and data["verdict"] == "OK"
    assert data["capture_correlation"] > 0.8
    assert data["roundtrip_ms"] is not None and data["roundtrip_ms"] > 0
    assert data["reply_audio_bytes"] > 0


@pytest.mark.audio
def test_acoustic_without_a_gateway_could_not_run_and_says_why(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("acoustic", "--url", "ws://127.0.0.1:1/ws/audio", env=virtual_audio.env)
    assert code == 2 and data["diagnosis"]["code"] == "connection_refused"
    assert "WebSocket connection failed" in data["advice"]
