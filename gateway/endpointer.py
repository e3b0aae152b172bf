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
* while no speech has started, only the last ``leadin_ms`` of audio are kept, and when the
  floor falls those windows are judged again: a stream that opens with speech sets the
  first floor at speech level, and is found to be speech once a quieter window arrives.

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
from voiceharness.vad import levels_dbfs

EndReason = Literal["silence", "marker", "max_length"]

_RESCAN_STEP_DB = 3.0  # re-judge the lead-in when the threshold fell by this much
WINDOW_MS = 20.0  # the default window; silence_ms may not be shorter


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


class Endpointer:
    """Split a stream of PCM16 mono audio into utterances; see the module docstring."""

    def __init__(
        self,
        *,
        sample_rate_hz: int = guide.SAMPLE_RATE_HZ,
        window_ms: float = WINDOW_MS,
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
        self._min_speech_windows = max(1, math.ceil(min_speech_ms / self.window_ms - 1e-9))
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
        self._levels: list[float] = []  # dBFS of each analysed window while no speech has started
        self._scanned_threshold = math.inf
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
            drop_windows = (self._analysed - self._leadin_bytes) // self._window_bytes
            if drop_windows:
                del self._buffer[: drop_windows * self._window_bytes]
                del self._levels[:drop_windows]
                self._analysed -= drop_windows * self._window_bytes
        return finished

    def _judge_window(self, level: float) -> Utterance | None:
        threshold = self.threshold_dbfs
        is_speech = level > threshold
        # Track the floor after judging, so a window is compared with the floor before it.
        if math.isnan(self.noise_floor_dbfs) or level < self.noise_floor_dbfs:
            self.noise_floor_dbfs = level
        else:
            self.noise_floor_dbfs = min(level, self.noise_floor_dbfs + self._floor_rise_per_window_db)
        if not self._triggered:
            self._levels.append(level)
        if is_speech:
            self._speech_run_ms += self.window_ms
            self._silence_run_ms = 0.0
            if self._triggered:
                self._speech_ms += self.window_ms
            elif self._speech_run_ms >= self.min_speech_ms:
                run_windows = round(self._speech_run_ms / self.window_ms)
                self._trigger(len(self._levels) - run_windows, self._speech_run_ms, 0.0)
        else:
            self._speech_run_ms = 0.0
            if self._triggered:
                self._silence_run_ms += self.window_ms
        if not self._triggered:
            self._rescan_if_floor_fell()
        if self._triggered:
            if self._silence_run_ms >= self.silence_ms:
                return self._cut("silence")
            if self._analysed - self._speech_start >= self._max_bytes:
                return self._cut("max_length")
        return None

    def _rescan_if_floor_fell(self) -> None:
        """Judge the buffered windows again when the threshold fell.

        A stream that opens with speech sets the first floor at speech level; the speech is
        recognised as such once a quieter window shows where the floor really is. Windows
        must also stand out from the quietest buffered window, so a steady noise that stops
        (a microphone muted to digital zero) is not taken for speech.
        """
        threshold = self.threshold_dbfs
        if threshold >= self._scanned_threshold - _RESCAN_STEP_DB:
            self._scanned_threshold = max(self._scanned_threshold, threshold)
            return
        self._scanned_threshold = threshold
        levels = np.asarray(self._levels)
        if levels.size < 2:
            return
        # Judge against the quietest window *before* the one that made the floor fall: speech
        # stands out from its own pauses, a steady noise that stopped does not.
        above = levels > max(threshold, float(levels[:-1].min()) + self.threshold_db)
        need = self._min_speech_windows
        if above.size < need:
            return
        runs = np.convolve(above.astype(np.int32), np.ones(need, dtype=np.int32), mode="valid")
        starts = np.flatnonzero(runs == need)
        if starts.size == 0:
            return
        first = int(starts[0])
        speech_windows = int(above[first:].sum())
        last_speech = int(np.flatnonzero(above)[-1])
        trailing_silence = above.size - 1 - last_speech
        self._speech_run_ms = 0.0 if trailing_silence else self.window_ms
        self._trigger(first, speech_windows * self.window_ms, trailing_silence * self.window_ms)

    def _trigger(self, first_window: int, speech_ms: float, silence_ms: float) -> None:
        self._triggered = True
        self._speech_start = first_window * self._window_bytes
        self._speech_ms = speech_ms
        self._silence_run_ms = silence_ms
        self._levels.clear()

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
