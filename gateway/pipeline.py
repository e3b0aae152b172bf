"""The reference gateway's speech pipeline: PCM in, intent and spoken reply out.

::

    pipeline = VoicePipeline()                 # loads grammar, checks espeak-ng (once)
    result = pipeline.process(pcm_bytes)       # PCM16 LE mono, 16 kHz by default
    result.intent, result.confidence, result.transcript, result.slots
    result.reply_text, result.audio_pcm        # reply audio: PCM16 LE mono
    result.sample_rate_hz                      # the reply audio's rate (16 kHz by default)
    result.recognize_ms, result.nlu_ms, result.synth_ms
    VoicePipeline(style="smartjarvis", reply_sample_rate_hz=22050)   # the SmartJARVIS dialect's replies

Stages: :mod:`gateway.recognizer` (pocketsphinx, JSGF grammar with rejection) ->
:mod:`gateway.nlu` (transcript -> intent) -> :mod:`gateway.nlg` (reply wording, in the
``style`` of a gateway dialect) -> :mod:`gateway.synthesizer` (espeak-ng at the reply rate). :meth:`VoicePipeline.process` blocks and is thread-safe: the server calls it from a
thread or process pool. Two fault switches come per call: ``forced_intent`` answers with that
intent whatever was said, ``tts_enabled=False`` returns the reply text with no audio.
"""

from __future__ import annotations

import datetime as _dt
import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.nlg import reply_text, sentences
from gateway.nlu import Understanding, understand
from gateway.recognizer import Recognizer
from gateway.synthesizer import CACHED_INTENTS, Synthesizer
from voiceharness.guide import INTENTS, SAMPLE_RATE_HZ

__all__ = ["REJECTED_CONFIDENCE", "TurnResult", "VoicePipeline", "warm_up"]

# Confidence that rejected speech is no command (the recognizer's garbage path won).
REJECTED_CONFIDENCE = 0.8


@dataclass(frozen=True)
class TurnResult:
    """One turn's outcome; ``audio_pcm`` is PCM16 LE mono at ``sample_rate_hz`` (empty when TTS is off)."""

    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any] = field(default_factory=dict)
    reply_text: str = ""
    audio_pcm: bytes = b""
    recognize_ms: float = 0.0
    nlu_ms: float = 0.0
    synth_ms: float = 0.0
    sample_rate_hz: int = SAMPLE_RATE_HZ


def _fixed_time(at: _dt.time) -> _dt.datetime:
    return _dt.datetime.combine(_dt.date.today(), at)


class VoicePipeline:
    """Recognizer -> NLU -> NLG + TTS. Build once per process; call :meth:`process` from any thread.

    ``style`` is the reply wording (:data:`gateway.nlg.STYLES`); ``reply_sample_rate_hz`` the
    rate the reply audio is synthesized at (a given ``synthesizer`` keeps its own).
    ``phrasing_seed`` seeds the random choice among an intent's phrasings (as the published
    SmartJARVIS NLG picks a template at random for every reply); None seeds it from the OS.
    ``fixed_clock`` ("HH:MM") makes every time reply tell that time instead of the clock's.
    """

    def __init__(
        self,
        recognizer: Recognizer | None = None,
        synthesizer: Synthesizer | None = None,
        clock: Callable[[], _dt.datetime] = _dt.datetime.now,
        *,
        style: str = "reference",
        reply_sample_rate_hz: int = SAMPLE_RATE_HZ,
        phrasing_seed: int | None = None,
        fixed_clock: str = "",
    ) -> None:
        reply_text("GREETING", style=style)  # an unknown style fails here, not on the first turn
        if fixed_clock:  # "HH:MM": every reply tells this time (a run whose replies do not depend on when it runs)
            hour, minute = (int(part) for part in fixed_clock.split(":"))
            clock = functools.partial(_fixed_time, _dt.time(hour, minute))
        self.recognizer = recognizer or _shared_recognizer()
        self.synthesizer = synthesizer or Synthesizer(sample_rate_hz=reply_sample_rate_hz)
        self.style = style
        self._clock = clock
        self._phrasing = random.Random(phrasing_seed)  # picks each reply's phrasing
        self._phrasing_lock = threading.Lock()

    def warm_up(self) -> None:
        """Build the calling thread's decoder and fill the reply cache, so the first turn is fast."""
        self.recognizer.warm_up()
        now = self._clock()
        for intent in sorted(CACHED_INTENTS):
            for variant in range(len(sentences(intent, self.style))):
                self.synthesizer.speak(reply_text(intent, {}, now, style=self.style, variant=variant))

    def process(
        self,
        pcm: bytes,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        *,
        forced_intent: str | None = None,
        tts_enabled: bool = True,
    ) -> TurnResult:
        """Recognize one utterance (PCM16 LE mono), understand it and speak the reply."""
        if forced_intent is not None and forced_intent not in INTENTS:
            raise ValueError(f"forced_intent must be one of {', '.join(INTENTS)}, got {forced_intent!r}")
        heard = self.recognizer.recognize(pcm, sample_rate_hz)

        started = time.perf_counter()
        if heard.rejected:
            meaning = Understanding("UNKNOWN", REJECTED_CONFIDENCE if heard.transcript else 1.0)
        else:
            meaning = understand(heard.transcript)
        if forced_intent is not None and forced_intent != meaning.intent:
            meaning = _forced(forced_intent, heard.transcript)
        nlu_ms = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        with self._phrasing_lock:  # random.Random is not safe to share between threads
            variant = self._phrasing.randrange(len(sentences(meaning.intent, self.style)))
        text = reply_text(meaning.intent, meaning.slots, self._clock(), style=self.style, variant=variant)
        audio = self.synthesizer.speak(text, cache=meaning.intent in CACHED_INTENTS) if tts_enabled else b""
        synth_ms = (time.perf_counter() - started) * 1000

        return TurnResult(
            intent=meaning.intent,
            confidence=meaning.confidence,
            transcript=heard.transcript,
            slots=dict(meaning.slots),
            reply_text=text,
            audio_pcm=audio,
            recognize_ms=heard.decode_ms,
            nlu_ms=nlu_ms,
            synth_ms=synth_ms,
            sample_rate_hz=self.synthesizer.sample_rate_hz,
        )


def _forced(intent: str, transcript: str) -> Understanding:
    """The fault switch's answer: the forced intent, with what slots it needs to speak."""
    slots = {"words": transcript or "wrong intent"} if intent == "ECHO" else {}
    return Understanding(intent, 1.0, slots)


_recognizer: Recognizer | None = None
_recognizer_lock = threading.Lock()


def _shared_recognizer() -> Recognizer:
    global _recognizer
    with _recognizer_lock:
        if _recognizer is None:
            _recognizer = Recognizer()
        return _recognizer


def warm_up() -> VoicePipeline:
    """Build a pipeline and warm it (decoder for this thread, reply cache); returns it."""
    pipeline = VoicePipeline()
    pipeline.warm_up()
    return pipeline
