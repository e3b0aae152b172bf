"""End of utterance by trailing silence: an energy VAD over short windows.

The browser tester sends no end marker, only microphone audio, so the gateway must find
the end of a command itself. :class:`Endpointer` is fed PCM16 mono frames of any size and
returns the :class:`Utterance` objects they complete; it does no I/O and keeps no clock
other than the sample count, so it behaves the same at real-time and at ``fast`` pace.

How it decides, window by window (``window_ms``, 20 ms by default):

* the window's RMS level in dBFS is compared with a threshold ``threshold_db`` above a
  tracked noise floor (and never below ``min_threshold_dbfs``, so digital silence and
  dither are never speech);
* the noise floor follows quieter windows at once and rises slowly
  (``floor_rise_db_per_s``), so a steady background noise becomes the floor within one
  window and a voice does not;
* an utterance starts after ``min_speech_ms`` of consecutive speech windows (a click is
  one loud window, not speech) and ends after ``silence_ms`` of consecutive non-speech
  windows, or when it reaches ``max_utterance_ms``;
* while no speech has started, only the last ``leadin_ms`` of audio are kept (the first
  syllable may have been under the threshold before the floor settled).

An explicit end marker (:meth:`Endpointer.end_marker`) ends the utterance in progress. A
marker that arrives after silence already ended the utterance it belongs to (a client
that sends both) returns nothing, so every utterance is answered once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from voiceharness import guide

EndReason = Literal["silence", "marker", "max_length"]

_DBFS_FLOOR = -100.0  # the level given to digital silence, so logarithms stay finite


@dataclass(frozen=True)
class Utterance:
    """The audio of one command, from the start of its lead-in to where it ended."""

    pcm: bytes
    reason: EndReason
    speech_ms: float  # time of the windows that were speech
    sample_rate_hz: int = guide.SAMPLE_RATE_HZ

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 * 1000.0 / self.sample_rate_hz


def levels_dbfs(samples: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of a 2-D array of int16 samples."""
    as_float = samples.astype(np.float32) / 32768.0
    rms = np.sqrt(np.mean(as_float * as_float, axis=1))
    with np.errstate(divide="ignore"):
        levels = 20.0 * np.log10(rms)
    return np.maximum(levels, _DBFS_FLOOR)


class Endpointer:
    """Split a stream of PCM16 mono audio into utterances; see the module docstring."""

    def __init__(
        self,
        *,
        sample_rate_hz: int = guide.SAMPLE_RATE_HZ,
        window_ms: float = 20.0,
        silence_ms: float = 500.0,
        min_speech_ms: float = 100.0,
        max_utterance_ms: float = 15_000.0,
        threshold_db: float = 12.0,
        min_threshold_dbfs: float = -50.0,
        floor_rise_db_per_s: float = 3.0,
        leadin_ms: float = 1_500.0,
    ) -> None:
        if not 5.0 <= window_ms <= 50.0:
            raise ValueError(f"window_ms must be 5-50 ms, got {window_ms}")
        if silence_ms < window_ms or min_speech_ms < 0 or max_utterance_ms <= silence_ms:
            raise ValueError("need window_ms <= silence_ms < max_utterance_ms and min_speech_ms >= 0")
        self.sample_rate_hz = sample_rate_hz
        self.window_samples = max(1, round(sample_rate_hz * window_ms / 1000.0))
        self.window_ms = self.window_samples * 1000.0 / sample_rate_hz
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.max_utterance_ms = max_utterance_ms
        self.threshold_db = threshold_db
        self.min_threshold_dbfs = min_threshold_dbfs
        self._floor_rise_per_window_db = floor_rise_db_per_s * self.window_ms / 1000.0
        self._window_bytes = self.window_samples * 2
        self._leadin_bytes = int(leadin_ms * sample_rate_hz / 1000.0) * 2
        self._max_bytes = int(max_utterance_ms * sample_rate_hz / 1000.0) * 2
        self.noise_floor_dbfs = math.nan
        self._buffer = bytearray()
        self._analysed = 0  # bytes of _buffer already judged window by window
        self._odd_byte = b""
        self._reset_utterance()
        self._ended_since_marker = False

    # -- state
    def _reset_utterance(self) -> None:
        self._triggered = False
        self._speech_run_ms = 0.0
        self._silence_run_ms = 0.0
        self._speech_ms = 0.0
        self._speech_start = 0  # byte offset in _buffer where the triggering speech run began

    @property
    def in_speech(self) -> bool:
        """True once the utterance in progress has held ``min_speech_ms`` of speech."""
        return self._triggered

    @property
    def threshold_dbfs(self) -> float:
        if math.isnan(self.noise_floor_dbfs):
            return self.min_threshold_dbfs
        return max(self.noise_floor_dbfs + self.threshold_db, self.min_threshold_dbfs)

    @property
    def buffered_ms(self) -> float:
        return len(self._buffer) / 2 * 1000.0 / self.sample_rate_hz

    # -- input
    def feed(self, pcm: bytes) -> list[Utterance]:
        """Add audio; return the utterances it completed (usually none, at most a few)."""
        if self._odd_byte:
            pcm = self._odd_byte + pcm
            self._odd_byte = b""
        if len(pcm) % 2:
            self._odd_byte, pcm = pcm[-1:], pcm[:-1]
        self._buffer += pcm
        finished: list[Utterance] = []
        whole = (len(self._buffer) - self._analysed) // self._window_bytes
        if whole == 0:
            return finished
        start = self._analysed
        # A copy: a view would pin the bytearray, which must shrink when an utterance is cut.
        window_bytes = bytes(self._buffer[start : start + whole * self._window_bytes])
        samples = np.frombuffer(window_bytes, dtype="<i2")
        levels = levels_dbfs(samples.reshape(whole, self.window_samples))
        for level in levels.tolist():
            self._analysed += self._window_bytes
            utterance = self._judge_window(level)
            if utterance is not None:
                finished.append(utterance)
        if not self._triggered and self._analysed > self._leadin_bytes:
            drop = self._analysed - self._leadin_bytes
            del self._buffer[:drop]
            self._analysed -= drop
        return finished

    def _judge_window(self, level: float) -> Utterance | None:
        threshold = self.threshold_dbfs
        is_speech = level > threshold
        # Track the floor after judging, so a window is compared with the floor before it.
        if math.isnan(self.noise_floor_dbfs) or level < self.noise_floor_dbfs:
            self.noise_floor_dbfs = level
        else:
            self.noise_floor_dbfs = min(level, self.noise_floor_dbfs + self._floor_rise_per_window_db)
        if is_speech:
            self._speech_run_ms += self.window_ms
            self._silence_run_ms = 0.0
            if self._triggered:
                self._speech_ms += self.window_ms
            elif self._speech_run_ms >= self.min_speech_ms:
                self._triggered = True
                self._speech_ms = self._speech_run_ms
                run_windows = round(self._speech_run_ms / self.window_ms)
                self._speech_start = max(0, self._analysed - run_windows * self._window_bytes)
        else:
            self._speech_run_ms = 0.0
            if self._triggered:
                self._silence_run_ms += self.window_ms
                if self._silence_run_ms >= self.silence_ms:
                    return self._cut("silence")
        if self._triggered and self._analysed - self._speech_start >= self._max_bytes:
            return self._cut("max_length")
        return None

    def _cut(self, reason: EndReason) -> Utterance:
        """End the utterance at the last analysed window; the rest stays for the next one."""
        pcm = bytes(self._buffer[: self._analysed])
        del self._buffer[: self._analysed]
        utterance = Utterance(pcm, reason, self._speech_ms, self.sample_rate_hz)
        self._analysed = 0
        self._reset_utterance()
        self._ended_since_marker = True
        return utterance

    def end_marker(self) -> Utterance | None:
        """The client said the utterance is over; return it, or None when there is nothing to answer.

        Nothing to answer: no audio since the last utterance, or only the trailing silence
        of an utterance that silence already ended.
        """
        already_answered = self._ended_since_marker
        self._ended_since_marker = False
        if self._triggered:
            self._analysed = len(self._buffer)
            utterance = self._cut("marker")
            self._ended_since_marker = False
            return utterance
        if already_answered or not self._buffer:
            self.reset()
            return None
        # No speech found, but the client asked explicitly: let recognition judge the audio.
        utterance = Utterance(bytes(self._buffer), "marker", 0.0, self.sample_rate_hz)
        self.reset()
        return utterance

    def reset(self) -> None:
        """Forget buffered audio (the noise floor is kept: it describes the line, not the utterance)."""
        self._buffer.clear()
        self._analysed = 0
        self._odd_byte = b""
        self._reset_utterance()
