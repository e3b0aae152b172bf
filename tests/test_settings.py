"""voiceharness.settings: the guide's presets, its JSON config shape, overrides and backoff."""

import json
import random

import pytest

from voiceharness import settings
from voiceharness.errors import UsageError


def test_presets_are_the_guides_table():
    expected = {
        "local": ("localhost", 7090, "ws", True, 5),
        "docker": ("localhost", 7090, "ws", True, 10),
        "production": ("voice.smartjarvis.com", 443, "wss", True, 20),
        "corporate": ("192.168.1.100", 7090, "ws", True, 15),
    }
    for name, (host, port, protocol, reconnect, retries) in expected.items():
        preset = settings.preset(name)
        assert (preset.host, preset.port, preset.protocol, preset.auto_reconnect, preset.max_retries) == (
            host, port, protocol, reconnect, retries)


def test_production_preset_url_is_wss_on_443():
    assert settings.preset("production").url == "wss://voice.smartjarvis.com:443/ws/audio"


def test_unknown_preset_names_the_choices():
    with pytest.raises(UsageError, match="choose one of local, docker, production, corporate"):
        settings.preset("staging")


def test_config_file_in_the_guides_shape_overrides_the_preset(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"host": "127.0.0.1", "port": 7091, "protocol": "ws", "maxRetries": 2,
                                "autoReconnect": True, "path": "/ws"}))
    resolved = settings.resolve(preset_name="docker", config_path=str(path))
    assert resolved.url == "ws://127.0.0.1:7091/ws"
    assert resolved.max_retries == 2


def test_explicit_url_and_overrides_win_over_config(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"host": "10.0.0.1", "port": 1}))
    resolved = settings.resolve(config_path=str(path), url="ws://127.0.0.1:7090", overrides={"path": "/ws", "max_retries": None})
    assert resolved.url == "ws://127.0.0.1:7090/ws"
    assert resolved.max_retries == 5  # None overrides are ignored


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"port": "7090"}', "port must be an integer"),
        ('{"hots": "x"}', "unknown key 'hots'"),
        ('{"protocol": "http"}', "protocol must be ws or wss"),
        ('{"port": 70000}', "port must be 1-65535"),
    ],
)
def test_bad_config_files_are_refused_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        settings.resolve(config_path=str(path))
    assert str(path) in str(error.value)


def test_missing_config_file_says_so(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        settings.resolve(config_path=str(tmp_path / "nope.json"))


def test_host_must_be_a_websocket_url():
    with pytest.raises(UsageError, match="ws:// or wss://"):
        settings.resolve(url="http://127.0.0.1:7090")


def test_describe_never_shows_the_token():
    configured = settings.resolve(overrides={"auth_token": "s3cret"})
    assert "s3cret" not in configured.describe()
    assert "auth: bearer token" in configured.describe() and "token=" not in configured.describe()


def test_backoff_follows_the_browser_tester_with_jitter():
    rng = random.Random(1)
    for attempt, ceiling in [(0, 1000), (1, 2000), (2, 4000), (4, 16000), (5, 30000), (12, 30000)]:
        delays = [settings.backoff_ms(attempt, rng) for _ in range(200)]
        assert max(delays) <= ceiling
        assert min(delays) >= ceiling / 2
        # jitter: a thousand users must not retry in lock-step
        assert max(delays) - min(delays) > ceiling / 4
