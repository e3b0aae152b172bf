"""A deliberately slow pipeline for overload tests: ``--pipeline tests.slow_pipeline:SlowPipeline``.

Each turn sleeps ``VOICEGW_SLOW_PIPELINE_MS`` (default 1500 ms) and answers GREETING with
100 ms of reply audio. Run it with ``--executor thread --workers N``: the sleep releases
the GIL, so N workers model a recogniser that serves N turns at a time and costs no CPU,
which keeps an overload test cheap on a shared 2-core machine while every session's
assembler still waits for its turn (so its bounded frame queue fills and drops).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

SLOW_PIPELINE_MS_ENV = "VOICEGW_SLOW_PIPELINE_MS"
_REPLY_AUDIO = b"\x00\x10" * 1600  # 100 ms of a constant, non-silent level


@dataclass(frozen=True)
class SlowResult:
    """Has every field the gateway reads from ``gateway.pipeline.TurnResult``."""

    intent: str = "GREETING"
    confidence: float = 1.0
    transcript: str = "hello jarvis"
    slots: dict[str, Any] = field(default_factory=dict)
    reply_text: str = "slow pipeline"
    audio_pcm: bytes = _REPLY_AUDIO
    recognize_ms: float = 0.0
    nlu_ms: float = 0.0
    synth_ms: float = 0.0


class SlowPipeline:
    def __init__(self) -> None:
        self.delay_ms = float(os.environ.get(SLOW_PIPELINE_MS_ENV, "1500"))

    def process(
        self, pcm: bytes, sample_rate_hz: int, *, forced_intent: str | None = None, tts_enabled: bool = True
    ) -> SlowResult:
        time.sleep(self.delay_ms / 1000.0)
        return SlowResult(
            intent=forced_intent or "GREETING",
            audio_pcm=_REPLY_AUDIO if tts_enabled else b"",
            recognize_ms=self.delay_ms,
        )
