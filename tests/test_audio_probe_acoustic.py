"""audio_probe.acoustic: a corpus utterance out of the (virtual) speaker, into the microphone and to
the reference gateway, run as a subprocess of ``mic_probe.py``."""

from __future__ import annotations

import pytest
from virtual_audio import VirtualAudio, probe_json


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
