"""mic_probe.py, the entry point: it imports, and runs a check, on a machine without PortAudio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from virtual_audio import no_audio_env, probe_json, run_probe

ROOT = Path(__file__).resolve().parent.parent


def test_without_portaudio_the_module_imports_and_mic_gives_the_diagnosis(tmp_path):
    # A stand-in for a machine without libportaudio2: sounddevice raises exactly what it raises there.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = {**no_audio_env(tmp_path / "run"), "PYTHONPATH": str(tmp_path)}
    imported = subprocess.run(
        [sys.executable, "-c", "import mic_probe, audio_probe.signals as s; print(s.rms_dbfs([0.5]))"],
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
