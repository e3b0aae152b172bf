"""voiceharness.logbook: the guide's log levels, export and redaction."""

import json
import logging

import pytest

from voiceharness.logbook import Logbook, redact_text


def test_txt_export_has_the_guides_line_shape(tmp_path):
    path = tmp_path / "log.txt"
    book = Logbook(logging.getLogger("t"), export_path=str(path))
    book.success("Intent received: GREETING")
    book.close()
    line = path.read_text().strip()
    assert line.startswith("[") and line[9] == "]"
    assert line.endswith("SUCCESS Intent received: GREETING")


def test_json_export_one_object_per_line(tmp_path):
    path = tmp_path / "log.json"
    book = Logbook(logging.getLogger("t"), export_path=str(path), export_format="json")
    book.error("WebSocket connection failed", code="connection_refused")
    book.warning("late")
    book.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["error", "warning"]
    assert entries[0]["code"] == "connection_refused"


def test_tokens_never_reach_the_export(tmp_path):
    path = tmp_path / "log.txt"
    book = Logbook(logging.getLogger("t"), export_path=str(path))
    book.info("upgrade to ws://h/ws?token=abc123 with Authorization: Bearer xyz789")
    book.close()
    text = path.read_text()
    assert "abc123" not in text and "xyz789" not in text


def test_redact_hides_transcripts_only_when_asked():
    assert Logbook(redact=True).transcript("what time is it") == "[redacted]"
    assert Logbook(redact=False).transcript("what time is it") == "what time is it"
    assert redact_text("token=t0k&x=1") == "token=[redacted]&x=1"


def test_unknown_export_format_is_refused():
    with pytest.raises(ValueError, match="txt or json"):
        Logbook(export_format="xml")
