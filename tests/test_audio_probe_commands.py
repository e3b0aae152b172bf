"""audio_probe.commands: the level meter, then the devices, mic, speaker and loopback checks on a real
(virtual) device — the PulseAudio loopback of scripts/virtual-audio.sh — run as subprocesses of
``mic_probe.py``."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from virtual_audio import VirtualAudio, probe_json, run_probe

from audio_probe import commands, signals

ROOT = Path(__file__).resolve().parent.parent


def test_level_meter_redraws_one_line_on_a_terminal():
    out = io.StringIO()
    meter = commands.LevelMeter(out, tty=True)
    for level in (0.001, 0.1, 0.5):
        meter.update(np.full(1024, level), 0.064)
    meter.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1


def test_level_meter_prints_a_line_per_half_second_when_not_a_terminal():
    out = io.StringIO()
    meter = commands.LevelMeter(out, tty=False)
    for _ in range(17):  # 17 chunks of 64 ms = 1.088 s
        meter.update(np.full(1024, 0.1), 0.064)
    meter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 0.512 s, at 1.024 s, then the last chunk flushed at close
    assert "\r" not in out.getvalue() and "-20.0 dBFS" in lines[0]


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
    assert data["snr_db"] >= signals.MIN_SNR_DB and data["thd_percent"] <= signals.MAX_THD_PERCENT, data
    assert 0 <= data["latency_ms"] < 1000, data
    assert code == 0 and data["verdict"] == "OK", data
    assert "Traceback" not in stderr


@pytest.mark.audio
def test_mic_on_the_silent_loopback_says_silent(virtual_audio: VirtualAudio):
    code, data, _ = probe_json("mic", "--duration", "1", env=virtual_audio.env)
    assert code == 1
    assert data["verdict"] == "silent" and data["diagnosis"]["code"] == "mic_silent"
    assert data["rms_dbfs"] == signals.DBFS_FLOOR and data["clipped_samples"] == 0
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
