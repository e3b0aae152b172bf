"""voiceharness.dialects and the options that resolve them: a preset that explicit flags override."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from voiceharness import dialects
from voiceharness.errors import UsageError
from voiceharness.locust import options
from voiceharness.protocol import ReplyFormat


def resolve(*argv: str) -> SimpleNamespace:
    """The run configuration a command line gives (the options resolve without Locust)."""
    parser = options.plain_parser()
    parser.add_argument("--otel", action="store_true", default=False)
    config = options.resolve(parser.parse_args(argv))
    return SimpleNamespace(
        dialect=config.dialect.name, path=config.settings.path, end_marker=config.end_marker,
        trailing_silence_ms=config.trailing_silence_ms, header_as_binary=config.connect.header_as_binary,
        mic_during_reply=config.mic_during_reply, reply_format=config.reply_format.value,
        expectations=config.expectations, stats_by=config.stats_by, judge_method=config.judge_method,
    )


def test_reference_is_the_documented_protocol():
    config = resolve()
    assert config.dialect == "reference"
    assert config.path == "/ws/audio" and config.end_marker and config.trailing_silence_ms == 0
    assert config.header_as_binary and config.mic_during_reply == "closed"
    assert config.reply_format == ReplyFormat.AUTO.value and config.expectations == "reference"
    from voiceharness.listener import DEFAULT_METHOD

    assert config.judge_method == DEFAULT_METHOD == "hybrid"  # the judge's default is the listener's


def test_smartjarvis_sends_no_marker_enough_silence_and_a_text_header_and_judges_by_its_phrasing():
    config = resolve("--dialect", "smartjarvis")
    assert not config.end_marker
    assert config.trailing_silence_ms >= dialects.MIN_ENDPOINTER_SILENCE_MS
    assert not config.header_as_binary
    assert config.expectations == "smartjarvis"


def test_browser_tester_talks_on_ws_without_a_marker_and_keeps_the_mic_open():
    config = resolve("--dialect", "browser-tester")
    assert config.path == "/ws" and not config.end_marker and config.mic_during_reply == "open"
    assert config.header_as_binary


def test_explicit_flags_override_the_dialect():
    config = resolve("--dialect", "smartjarvis", "--end-marker", "--trailing-silence-ms", "800",
                     "--header-format", "binary", "--mic-during-reply", "open", "--reply-format", "wav",
                     "--reply-expectations", "reference", "--ws-path", "/voice")
    assert config.end_marker and config.trailing_silence_ms == 800 and config.header_as_binary
    assert config.mic_during_reply == "open" and config.reply_format == ReplyFormat.WAV.value
    assert config.expectations == "reference" and config.path == "/voice"
    assert resolve("--dialect", "browser-tester", "--host", "ws://127.0.0.1:7090/custom").path == "/custom"


def test_no_end_marker_on_the_reference_dialect_streams_a_second_of_silence():
    config = resolve("--no-end-marker")
    assert not config.end_marker and config.trailing_silence_ms == 1000


def test_under_otel_events_are_named_by_intent():
    assert resolve("--otel").stats_by == "intent"
    assert resolve().stats_by == "utterance"


def test_bad_values_name_the_option():
    with pytest.raises(UsageError, match="--judge-sample"):
        resolve("--judge-sample", "1.5")
    with pytest.raises(UsageError, match="unknown dialect"):
        dialects.dialect("klingon")
    with pytest.raises(SystemExit):  # argparse refuses an unknown choice on the command line itself
        resolve("--dialect", "klingon")


@pytest.mark.parametrize("dialect", ["reference", "smartjarvis"])
def test_a_malformed_expectations_file_is_refused_at_start_in_every_dialect(tmp_path, dialect):
    """Even where no reply may need it (the reference gateway sends metadata): never at the first reply."""
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"intents": {"GREETING": {}}}))
    with pytest.raises(UsageError) as raised:
        resolve("--dialect", dialect, "--reply-expectations", str(path))
    message = str(raised.value)
    assert str(path) in message and "intents.GREETING" in message  # the file and the key
    assert '"phrases"' in message and '"keywords"' in message  # and the fix


def test_a_locust_run_with_a_malformed_expectations_file_stops_at_once_and_says_why(tmp_path):
    from conftest import LOCUST, LOCUSTFILE, ROOT

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"intents": {"GREETING": {}}}))
    done = subprocess.run([LOCUST, "-f", LOCUSTFILE, "--headless", "-u", "1", "-r", "1", "-t", "30s",
                           "--host", "ws://127.0.0.1:9", "--dialect", "smartjarvis", "--reply-expectations", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"reply expectations {path}: intents.GREETING: has neither phrases nor keywords" in done.stderr
    assert "Traceback" not in done.stderr
