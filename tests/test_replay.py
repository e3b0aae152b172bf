"""voiceharness.replay: one voice through a real gateway, the demo's first step and mic_probe's client."""

import subprocess

from conftest import PYTHON, ROOT
from audio_corpus import load_corpus
from voiceharness.replay import ReplayOptions, replay


def test_replay_reports_each_utterance_with_its_roundtrip(gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-delay-ms", "30")
    corpus = load_corpus(select="GREETING,kind:clean")[:3]
    results = replay(f"{gateway.url}/ws/audio", corpus, options=ReplayOptions(realtime=False))
    assert [u.id for u, _ in results] == [u.id for u in corpus]
    for utterance, turn in results:
        assert turn.record.success, turn.record
        assert turn.record.intent == "GREETING"
        # the fast sink answers 30 ms after the end marker; end of speech comes before the marker
        assert turn.record.roundtrip_ms >= 30
        assert turn.record.intent_source == "metadata"


def test_replay_names_the_failure_of_a_gateway_without_tts(gateway_factory):
    gateway = gateway_factory("--fast-sink", "--fault-no-audio")
    results = replay(f"{gateway.url}/ws/audio", load_corpus(select="GREETING")[:2], options=ReplayOptions(realtime=False))
    assert {turn.record.failure for _, turn in results} == {"no_audio_tts"}


def test_replay_command_exits_2_on_a_refused_connection_without_traceback():
    completed = subprocess.run(
        [PYTHON, "-m", "voiceharness.replay", "--url", "ws://127.0.0.1:9/ws/audio", "--select", "GREETING"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert "WebSocket connection failed: connection refused" in completed.stderr
    assert "Traceback" not in completed.stderr
