"""voiceharness.diagnoses: failures classified into the guide's troubleshooting section."""

import socket
import ssl

import pytest

from voiceharness import diagnoses


class _Refused(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize(
    "error, code",
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection_refused"),
        (socket.gaierror(-2, "Name or service not known"), "connection_dns"),
        (TimeoutError("timed out"), "connection_timeout"),
        (ssl.SSLCertVerificationError("certificate verify failed"), "connection_tls"),
        (_Refused(404), "connection_http_404"),
        (_Refused(401), "connection_auth"),
        (_Refused(403), "connection_auth"),
        (_Refused(503), "connection_http"),
    ],
)
def test_connect_errors_are_classified(error, code):
    assert diagnoses.classify_connect_error(error) == code


def test_every_code_has_the_guides_headline_causes_and_fixes():
    headlines = {d.headline for d in diagnoses.DIAGNOSES.values()}
    for guide_headline in ("WebSocket connection failed", "Recording stopped unexpectedly",
                           "No audio response", "Failed to access microphone"):
        assert guide_headline in headlines
    for diagnosis in diagnoses.DIAGNOSES.values():
        assert diagnosis.causes and diagnosis.fixes


def test_explain_names_causes_and_fix():
    text = diagnoses.explain("connection_refused", "ws://127.0.0.1:1/ws/audio")
    assert text.startswith("WebSocket connection failed: connection refused (ws://127.0.0.1:1/ws/audio)")
    assert "voice-gateway not running" in text and "Fix:" in text
