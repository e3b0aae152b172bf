"""Reply wording (NLG) and speech synthesis with espeak-ng for the reference gateway.

::

    synth = Synthesizer()                                   # checks espeak-ng is installed
    text = reply_text("ECHO", {"words": "hello world"})     # "hello world"
    pcm = synth.synthesize(text)                            # PCM16 LE mono 16 kHz bytes
    text, pcm = synth.reply("TIME_NOW", {})                 # wording + audio, cached

Fixed sentences (greeting, weather, unknown) and the time sentence (its text changes once a
minute) are cached in an LRU, so a load test does not start espeak-ng on every turn; echo
replies vary with the input and are synthesized each time. espeak-ng writes a 22050 Hz WAV to
stdout, resampled here to the guide's 16 kHz with ``scipy.signal.resample_poly``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import shutil
import subprocess
from typing import Any

import numpy as np
import soundfile
from scipy.signal import resample_poly

from voiceharness.guide import SAMPLE_RATE_HZ

__all__ = ["GREETING_TEXT", "UNKNOWN_TEXT", "WEATHER_TEXT", "SynthesisError", "Synthesizer", "reply_text"]

GREETING_TEXT = "Hello! I am Jarvis. How can I help you?"
WEATHER_TEXT = "Today it is sunny with a few clouds, and the temperature is twenty one degrees."
UNKNOWN_TEXT = "Sorry, I did not understand. Please try again."
_ESPEAK_TIMEOUT_S = 10.0
_CACHED_INTENTS = {"GREETING", "WEATHER_SIMPLE", "UNKNOWN", "TIME_NOW"}


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to install or check."""


def time_text(now: _dt.datetime) -> str:
    """'It is 9:05 AM.'-style sentence, spoken by espeak-ng as "nine oh five a m"."""
    hour = now.hour % 12 or 12
    return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def reply_text(intent: str, slots: dict[str, Any] | None = None, now: _dt.datetime | None = None) -> str:
    """The reply sentence for an intent: echo says the words back, time says the time, ..."""
    slots = slots or {}
    if intent == "GREETING":
        return GREETING_TEXT
    if intent == "ECHO":
        words = str(slots.get("words", "")).strip()
        return words or UNKNOWN_TEXT
    if intent == "TIME_NOW":
        return time_text(now or _dt.datetime.now())
    if intent == "WEATHER_SIMPLE":
        return WEATHER_TEXT
    return UNKNOWN_TEXT


class Synthesizer:
    """espeak-ng to PCM16 16 kHz mono; thread-safe (each call is its own subprocess)."""

    def __init__(self, voice: str = "en-us", rate_wpm: int = 170, cache_size: int = 128) -> None:
        self.executable = shutil.which("espeak-ng")
        if self.executable is None:
            raise SynthesisError(
                "espeak-ng is not installed, so the gateway cannot speak its replies: "
                "install it with `apt-get install espeak-ng` (Debian/Ubuntu package espeak-ng)"
            )
        self.voice = voice
        self.rate_wpm = rate_wpm
        self._cached = functools.lru_cache(maxsize=cache_size)(self.synthesize)

    def synthesize(self, text: str) -> bytes:
        """Speak ``text``; returns PCM16 LE mono at 16 kHz. No cache."""
        command = [self.executable, "-v", self.voice, "-s", str(self.rate_wpm), "--stdout", "--", text]
        try:
            done = subprocess.run(command, capture_output=True, timeout=_ESPEAK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SynthesisError(
                f"espeak-ng could not be run ({error}); check `espeak-ng --version`"
            ) from error
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode(errors="replace").strip()
            raise SynthesisError(
                f"espeak-ng failed (exit {done.returncode}) on voice {self.voice!r}: {message}"
            )
        # espeak-ng streams its WAV, so the header's sizes are placeholders: read the samples raw.
        samples, rate_hz = soundfile.read(io.BytesIO(done.stdout), dtype="float32")
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        if rate_hz != SAMPLE_RATE_HZ:
            g = np.gcd(int(rate_hz), SAMPLE_RATE_HZ)
            samples = resample_poly(samples, SAMPLE_RATE_HZ // g, int(rate_hz) // g)
        return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()

    def speak(self, text: str, *, cache: bool = True) -> bytes:
        """Like :meth:`synthesize`, through the LRU when ``cache`` is true."""
        return self._cached(text) if cache else self.synthesize(text)

    def reply(
        self, intent: str, slots: dict[str, Any] | None = None, now: _dt.datetime | None = None
    ) -> tuple[str, bytes]:
        """(reply text, reply audio) for an intent; fixed and per-minute texts come from the cache."""
        text = reply_text(intent, slots, now)
        return text, self.speak(text, cache=intent in _CACHED_INTENTS)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()
