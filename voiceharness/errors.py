"""The harness's one exception family.

Every error the harness raises on purpose is a :class:`HarnessError`; its message names
the thing that is wrong and says what to do about it, so command-line entry points print
``str(error)`` and exit without a traceback.

::

    HarnessError
    ├── UsageError            the harness was misused: a bad option, preset or config file
    │   └── CorpusError       an audio corpus file or manifest that cannot be used
    ├── GatewayError          the gateway misbehaved or could not be reached
    │   ├── ConnectionFailed  "WebSocket connection failed" (carries a diagnosis code)
    │   └── ProtocolViolation the peer broke the voice-gateway protocol (carries a close code)
    ├── AnalysisError         a run's CSV files cannot be analysed
    └── DeviceError           "Failed to access microphone" and other audio-device failures

Control-flow signals (stop this user, end this turn) are not errors and do not live here.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose; the message says what to do."""


class UsageError(HarnessError):
    """The harness was misused: a bad option, preset, filter or configuration file."""


class CorpusError(UsageError):
    """An audio corpus file or manifest that cannot be used; the message names the file."""


class GatewayError(HarnessError):
    """The gateway misbehaved or could not be reached."""


class ConnectionFailed(GatewayError):
    """A WebSocket connection could not be opened.

    ``diagnosis`` is a code from :mod:`voiceharness.diagnoses` (e.g. ``connection_refused``)
    so callers can count and explain the failure without parsing the message;
    ``elapsed_ms`` how long the attempt took until it failed (NaN when not measured).
    """

    def __init__(self, message: str, diagnosis: str, *, retryable: bool = True,
                 elapsed_ms: float = float("nan")) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis
        self.retryable = retryable
        self.elapsed_ms = elapsed_ms


class ProtocolViolation(GatewayError):
    """The peer broke the voice-gateway protocol.

    ``close_code`` is the WebSocket close code the receiving side should close with
    (1008 policy violation for a bad header, 1002 protocol error, 1007 bad payload, 1009 too big).
    """

    def __init__(self, message: str, close_code: int = 1008) -> None:
        super().__init__(message)
        self.close_code = close_code


class AnalysisError(HarnessError):
    """A run's files cannot be analysed; the message names the file and what is wrong."""


class DeviceError(HarnessError):
    """An audio device could not be used ("Failed to access microphone" and its kin).

    ``diagnosis`` is a code from :mod:`voiceharness.diagnoses` (e.g. ``mic_no_device``).
    """

    def __init__(self, message: str, diagnosis: str = "mic_unavailable") -> None:
        super().__init__(message)
        self.diagnosis = diagnosis
