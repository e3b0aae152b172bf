"""audio_probe.cli: what ``python mic_probe.py`` says when a check cannot run — exit 2, one line naming the
problem and the fix, the diagnosis in --json, never a traceback."""

from __future__ import annotations

import pytest
from virtual_audio import no_audio_env, probe_json, run_probe


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
