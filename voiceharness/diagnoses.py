"""The usage guide's troubleshooting section, made automatic.

Every failed turn, failed connection and failed device check carries one diagnosis *code*
(a short snake_case string stored in the per-turn file). :data:`DIAGNOSES` maps each code to
the guide's headline ("WebSocket connection failed"...), the specific finding, its likely
causes and the fixes, so the log, the analysis report and the Voice tab all explain a failure
with the same words.

:func:`classify_connect_error` turns the exception of a failed connection attempt into a code
without importing any WebSocket library.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

# The guide's four troubleshooting headlines.
CONNECTION_FAILED = "WebSocket connection failed"
RECORDING_STOPPED = "Recording stopped unexpectedly"
NO_AUDIO_RESPONSE = "No audio response"
MICROPHONE_FAILED = "Failed to access microphone"
# Not in the guide: the gateway answered, but broke the protocol.
GATEWAY_PROTOCOL = "Gateway broke the protocol"


@dataclass(frozen=True)
class Diagnosis:
    code: str
    headline: str
    finding: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]

    def explain(self, detail: str = "") -> str:
        """One log line: headline, finding, detail, likely causes and fixes."""
        extra = f" ({detail})" if detail else ""
        return (
            f"{self.headline}: {self.finding}{extra}. "
            f"Likely causes: {'; '.join(self.causes)}. Fix: {'; '.join(self.fixes)}."
        )


_GATEWAY_DOWN = ("voice-gateway not running", "wrong host or port")
_CHECK_GATEWAY = ("check the gateway's status", "check host and port")

DIAGNOSES: dict[str, Diagnosis] = {
    d.code: d
    for d in (
        Diagnosis(
            "connection_refused", CONNECTION_FAILED, "connection refused",
            _GATEWAY_DOWN, ("start the voice-gateway", "check the port (default 7090)"),
        ),
        Diagnosis(
            "connection_dns", CONNECTION_FAILED, "host name not found",
            ("wrong host", "DNS or network down"), ("check the host name", "check the network"),
        ),
        Diagnosis(
            "connection_timeout", CONNECTION_FAILED, "connection timed out",
            ("firewall dropping packets", "network down", "gateway overloaded"),
            ("check the firewall", "check the network", "check the gateway's load"),
        ),
        Diagnosis(
            "connection_tls", CONNECTION_FAILED, "TLS handshake failed",
            ("self-signed or expired certificate", "wss used against a ws port"),
            ("pass the CA with --tls-ca", "check the protocol (ws/wss) and port",
             "use --insecure only for a test gateway"),
        ),
        Diagnosis(
            "connection_http_404", CONNECTION_FAILED, "HTTP 404 at the WebSocket upgrade",
            ("wrong WebSocket path",), ("check --ws-path (/ws/audio for the gateway, /ws for the browser tester)",),
        ),
        Diagnosis(
            "connection_auth", CONNECTION_FAILED, "HTTP 401/403 at the WebSocket upgrade",
            ("missing or wrong token", "access restricted"), ("check --auth-token", "check the gateway's access rules"),
        ),
        Diagnosis(
            "connection_http", CONNECTION_FAILED, "the upgrade was refused with an HTTP error",
            ("gateway overloaded or misconfigured", "a proxy in between"),
            ("check the gateway's logs", "check proxies and load balancers"),
        ),
        Diagnosis(
            "connection_gave_up", CONNECTION_FAILED, "gave up after maxRetries reconnection attempts",
            _GATEWAY_DOWN + ("network down",), _CHECK_GATEWAY + ("raise maxRetries only if outages are expected",),
        ),
        Diagnosis(
            "recording_stopped", RECORDING_STOPPED, "the connection dropped during the turn",
            ("WebSocket dropped", "audio processing error on the gateway", "network failure"),
            ("check the gateway's logs", "reconnect", "restart the gateway"),
        ),
        Diagnosis(
            "dead_link", RECORDING_STOPPED, "no frame (pings included) for twice the ping interval",
            ("network link down", "gateway hung"), ("check the network", "check the gateway"),
        ),
        Diagnosis(
            "no_audio_tts", NO_AUDIO_RESPONSE, "intent received but no reply audio",
            ("TTS service down", "NLG problem"), ("check the gateway's logs", "check the TTS service"),
        ),
        Diagnosis(
            "no_intent", NO_AUDIO_RESPONSE, "no intent and no reply before the deadline",
            ("STT or NLU down", "error in the voice loop", "gateway did not detect end of speech"),
            ("check the status of all services", "check the gateway's logs", "send the end marker"),
        ),
        Diagnosis(
            "wrong_intent", NO_AUDIO_RESPONSE, "the intent differs from the expected one",
            ("NLU problem", "recognition error", "noisy audio"),
            ("try another command", "check the NLU configuration"),
        ),
        Diagnosis(
            "wrong_reply", NO_AUDIO_RESPONSE, "the reply does not match the command (e.g. ECHO without the words)",
            ("NLG problem", "recognition error in the slot words"),
            ("check the gateway's NLG", "try another command"),
        ),
        Diagnosis(
            "silent_reply", NO_AUDIO_RESPONSE, "the reply audio is digital silence",
            ("TTS engine missing or failing (SmartJARVIS falls back to a silent WAV)", "NLG returned no text"),
            ("check the TTS service and its voice files", "check the gateway's logs"),
        ),
        Diagnosis(
            "reply_mismatch", NO_AUDIO_RESPONSE, "the reply audio does not say what the metadata claims",
            ("NLG or TTS answered another turn's text", "metadata and audio out of step"),
            ("check the gateway's NLG/TTS wiring", "check sessions are not mixed up"),
        ),
        Diagnosis(
            "unjudged", NO_AUDIO_RESPONSE, "the reply audio could not be classified to an intent",
            ("reply phrased unlike the expectations file", "unclear or noisy synthesis"),
            ("check --reply-expectations against the gateway's replies", "listen to the saved reply (--save-replies)"),
        ),
        Diagnosis(
            "incomplete_reply", NO_AUDIO_RESPONSE, "the reply stopped before its end",
            ("gateway closed mid-reply", "error in the voice loop"), ("check the gateway's logs",),
        ),
        Diagnosis(
            "gateway_protocol", GATEWAY_PROTOCOL, "the gateway sent something the protocol does not allow",
            ("gateway bug", "incompatible protocol version"), ("check the gateway's version and logs",),
        ),
        Diagnosis(
            "check_failed", "Scenario check failed", "a check written in the scenario failed",
            ("the reply differs from what the scenario expects",),
            ("read the check's message in the log or the turns file",),
        ),
        Diagnosis(
            "harness_error", "Harness error", "the load harness itself failed during the turn",
            ("a bug in the harness or in a user's scenario code",),
            ("read the traceback logged once for it", "report it; not a gateway failure and not counted as one"),
        ),
        Diagnosis(
            "run_stopped", "Turn cut short", "the run ended while the turn was in progress",
            ("end of the run time (-t) or Ctrl-C",), ("none needed: not a gateway failure; not counted as one",),
        ),
        Diagnosis(
            "mic_no_device", MICROPHONE_FAILED, "no input device",
            ("microphone missing or broken", "no sound server"), ("check the connection", "check the sound settings"),
        ),
        Diagnosis(
            "mic_busy", MICROPHONE_FAILED, "the device is busy or access was denied",
            ("another application holds it", "permission denied"),
            ("close other applications", "check permissions", "restart"),
        ),
        Diagnosis(
            "mic_silent", MICROPHONE_FAILED, "the input is silent",
            ("microphone muted or broken", "wrong input selected"),
            ("unmute it", "select another input with --device", "check the connection"),
        ),
        Diagnosis(
            "portaudio_missing", MICROPHONE_FAILED, "the PortAudio library is not installed",
            ("libportaudio2 missing",), ("apt-get install libportaudio2",),
        ),
        Diagnosis(
            "mic_unavailable", MICROPHONE_FAILED, "the audio device could not be used",
            ("permission denied", "microphone missing or broken", "another application holds it"),
            ("check permissions", "restart", "check the connection", "close other applications"),
        ),
    )
}


def explain(code: str, detail: str = "") -> str:
    """The log line for a diagnosis code; unknown codes are reported as such, not hidden."""
    diagnosis = DIAGNOSES.get(code)
    if diagnosis is None:
        return f"{code}: {detail}" if detail else code
    return diagnosis.explain(detail)


def classify_http_status(status: int) -> str:
    """Diagnosis code of an HTTP status that refused the WebSocket upgrade."""
    if status == 404:
        return "connection_http_404"
    if status in (401, 403):
        return "connection_auth"
    return "connection_http"


def classify_connect_error(error: BaseException) -> str:
    """Diagnosis code of an exception raised while opening a connection.

    Looks at standard-library exception types and an ``status_code``/``status`` attribute
    (the HTTP status of a refused upgrade), so it works for websocket-client and websockets.
    """
    status = getattr(error, "status_code", None) or getattr(error, "status", None)
    response = getattr(error, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 300:
        return classify_http_status(status)
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return "connection_tls"
    if isinstance(error, socket.gaierror):
        return "connection_dns"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(error, TimeoutError | socket.timeout):
        return "connection_timeout"
    if isinstance(error, ConnectionError | OSError):
        return "connection_refused" if "refused" in str(error).lower() else "connection_timeout"
    return "connection_http"
