"""Fault switches: the gateway misbehaves on purpose so the harness's diagnoses can be tested.

Each switch maps to one failure the usage guide's troubleshooting section names:

=================================  ==================================================
``--fault-delay-ms N``             slow answer (roundtrip bands); fixed delay before the reply
``--fault-delay-per-session-ms N`` a gateway that slows down with load: each reply is delayed
                                   N ms for every session open when its turn is answered
``--fault-no-audio``               "No audio response", TTS down: metadata, no audio
``--fault-wrong-intent [INTENT]``  "No audio response", wrong intent
``--fault-close-after-frames N``   "Recording stopped unexpectedly": close after N audio
``--fault-close-code C``           frames with code C (1006: drop TCP without a close frame)
``--fault-refuse-status S``        "WebSocket connection failed": refuse upgrades with S
``--fault-silent-reply``           "No audio response" by ear: the reply audio is digital
                                   silence of the length the sentence would have had (the
                                   SmartJARVIS TTS's fallback when piper is missing)
``--fault-broker-down``            the SmartJARVIS gateway with its broker down: the socket
                                   stays open, audio is read, nothing is ever answered
``--reply-leading-silence-ms MS``  not a failure but a known delay for ``audible_ms``: the
                                   reply's sound starts exactly MS after its first sample
=================================  ==================================================

:func:`shape_reply_audio` applies the two audio switches to a reply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voiceharness import guide
from voiceharness.vad import first_audible_sample

# Close codes a server may put in a close frame (RFC 6455 7.4, IANA registry, 3000-4999 for
# applications); 1006 is never sent on the wire, it means "dropped": we abort the TCP link.
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
CLOSE_ABORT = 1006


def valid_close_code(code: int) -> bool:
    return code in SENDABLE_CLOSE_CODES or code == CLOSE_ABORT or 3000 <= code <= 4999


@dataclass(frozen=True)
class Faults:
    delay_ms: float = 0.0
    delay_per_session_ms: float = 0.0
    no_audio: bool = False
    wrong_intent: bool = False
    wrong_intent_forced: str = ""  # with --fault-wrong-intent INTENT: ask the pipeline for this intent
    close_after_frames: int = 0  # 0: never
    close_code: int = 1011
    refuse_status: int = 0  # 0: accept upgrades
    silent_reply: bool = False
    broker_down: bool = False
    reply_leading_silence_ms: float = 0.0

    def reply_delay_ms(self, sessions_open: int) -> float:
        """The delay added before a reply: the fixed one, and the one that grows with the sessions open."""
        return self.delay_ms + self.delay_per_session_ms * sessions_open

    @property
    def any(self) -> bool:
        return self != Faults()

    def describe(self) -> str:
        """The switches that are on, for the startup log line."""
        parts = []
        if self.delay_ms:
            parts.append(f"delay_ms={self.delay_ms:g}")
        if self.delay_per_session_ms:
            parts.append(f"delay_per_session_ms={self.delay_per_session_ms:g}")
        if self.no_audio:
            parts.append("no_audio")
        if self.wrong_intent:
            parts.append(f"wrong_intent={self.wrong_intent_forced or 'rotate'}")
        if self.close_after_frames:
            parts.append(f"close_after_frames={self.close_after_frames}/{self.close_code}")
        if self.refuse_status:
            parts.append(f"refuse_status={self.refuse_status}")
        if self.silent_reply:
            parts.append("silent_reply")
        if self.broker_down:
            parts.append("broker_down")
        if self.reply_leading_silence_ms:
            parts.append(f"reply_leading_silence_ms={self.reply_leading_silence_ms:g}")
        return ",".join(parts) or "none"


def wrong_intent_for(intent: str) -> str:
    """An intent of the NLU contract that is surely not ``intent``: the next one in the list."""
    intents = guide.INTENTS
    if intent in intents:
        return intents[(intents.index(intent) + 1) % len(intents)]
    return intents[0]


def shape_reply_audio(pcm: bytes, sample_rate_hz: int, faults: Faults) -> bytes:
    """The reply audio (PCM16 LE mono) as ``faults`` want it sent.

    * ``silent_reply``: as many samples, all zero.
    * ``reply_leading_silence_ms``: the synthesizer's own quiet onset (espeak-ng opens with
      about 10 ms below hearing) is cut up to the first non-zero sample of the first audible
      window (:func:`voiceharness.vad.first_audible_sample`), and exactly
      ``round(ms * rate / 1000)`` zero samples go before it, so the sound starts exactly that
      long after the reply's first sample (``audible_ms - roundtrip_ms`` = the setting).
    """
    if faults.silent_reply:
        pcm = bytes(len(pcm) - len(pcm) % 2)
    if faults.reply_leading_silence_ms <= 0:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    start = first_audible_sample(samples, sample_rate_hz)
    if start is not None:
        nonzero = np.flatnonzero(samples[start:])
        samples = samples[start + int(nonzero[0]) :] if nonzero.size else samples[start:]
    lead = round(faults.reply_leading_silence_ms * sample_rate_hz / 1000.0)
    return bytes(2 * lead) + samples.tobytes()
