"""Speech synthesis with espeak-ng for the reference gateway.

::

    synth = Synthesizer()                                   # checks espeak-ng is installed
    pcm = synth.synthesize("hello world")                   # PCM16 LE mono 16 kHz bytes
    text, pcm = synth.reply("TIME_NOW", {})                 # reference wording + audio, cached
    Synthesizer(sample_rate_hz=22050)                       # espeak-ng's (and piper's) own rate

The wording lives in :mod:`gateway.nlg` (re-exported here: ``reply_text`` and the fixed
sentences). Fixed sentences (greeting, weather, unknown) and the time sentence (its text
changes once a minute) are cached in an LRU, so a load test does not start espeak-ng on every
turn; echo replies vary with the input and are synthesized each time. espeak-ng writes a
22050 Hz WAV to stdout; it is resampled with ``scipy.signal.resample_poly`` to the
synthesizer's ``sample_rate_hz`` (the guide's 16 kHz by default) when that differs.
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

from gateway.nlg import GREETING_TEXT, UNKNOWN_TEXT, WEATHER_TEXT, reply_text, time_text
from voiceharness.guide import SAMPLE_RATE_HZ

__all__ = [
    "CACHED_INTENTS",
    "GREETING_TEXT",
    "UNKNOWN_TEXT",
    "WEATHER_TEXT",
    "SynthesisError",
    "Synthesizer",
    "reply_text",
    "resample_pcm16",
    "time_text",
]

_ESPEAK_TIMEOUT_S = 10.0
CACHED_INTENTS = frozenset({"GREETING", "WEATHER_SIMPLE", "UNKNOWN", "TIME_NOW"})


def resample_pcm16(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    """PCM16 LE mono at ``from_hz`` -> the same sound at ``to_hz`` (polyphase, no aliasing)."""
    if from_hz == to_hz or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return _to_pcm16(_resample(samples, from_hz, to_hz))


def _resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    g = int(np.gcd(int(from_hz), int(to_hz)))
    return resample_poly(samples, int(to_hz) // g, int(from_hz) // g)


def _to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to install or check."""


class Synthesizer:
    """espeak-ng to PCM16 mono at ``sample_rate_hz``; thread-safe (each call is its own subprocess)."""

    def __init__(
        self,
        voice: str = "en-us",
        rate_wpm: int = 170,
        cache_size: int = 128,
        *,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        self.executable = shutil.which("espeak-ng")
        if self.executable is None:
            raise SynthesisError(
                "espeak-ng is not installed, so the gateway cannot speak its replies: "
                "install it with `apt-get install espeak-ng` (Debian/Ubuntu package espeak-ng)"
            )
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.sample_rate_hz = sample_rate_hz
        self._cached = functools.lru_cache(maxsize=cache_size)(self.synthesize)

    def synthesize(self, text: str) -> bytes:
        """Speak ``text``; returns PCM16 LE mono at :attr:`sample_rate_hz`. No cache."""
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
        if rate_hz != self.sample_rate_hz:
            samples = _resample(samples, int(rate_hz), self.sample_rate_hz)
        return _to_pcm16(samples)

    def speak(self, text: str, *, cache: bool = True) -> bytes:
        """Like :meth:`synthesize`, through the LRU when ``cache`` is true."""
        return self._cached(text) if cache else self.synthesize(text)

    def reply(
        self, intent: str, slots: dict[str, Any] | None = None, now: _dt.datetime | None = None
    ) -> tuple[str, bytes]:
        """(reply text, reply audio) for an intent in the reference wording; fixed and per-minute texts come from the cache."""
        text = reply_text(intent, slots, now)
        return text, self.speak(text, cache=intent in CACHED_INTENTS)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()
