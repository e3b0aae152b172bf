"""One speech/silence detector, by energy, for the corpus, the gateway and the reply's audible start.

Every place that must tell speech from silence uses the window levels computed here:

* :func:`find_speech` — where the speech of a whole recording starts and ends (the corpus's
  end of speech, which the roundtrip is timed from);
* :func:`levels_dbfs` — the RMS level of short windows, which the gateway's streaming
  endpointer (:mod:`gateway.endpointer`) compares with its tracked noise floor;
* :func:`first_audible_sample` — the first sample of a reply that a listener would hear
  (``audible_ms``: the TTS's leading silence counts as waiting, as voicebench measures "at
  the audio");
* :func:`is_digital_silence` — a reply that holds no sound at all (a TTS that fell back to
  a silent WAV).

Samples are mono, any numeric dtype, in PCM16 units (full scale 32768). No I/O, no clock.
"""

from __future__ import annotations

import numpy as np

# find_speech: a 10 ms window is speech when its RMS is within 35 dB of the loudest window
# (espeak's quietest fricatives sit around -30 dB) and, in a noisy file, 10 dB above the noise
# floor (the 10th percentile window, which lies in the leading or trailing silence of every
# corpus file).
SPEECH_WINDOW_MS = 10
SPEECH_THRESHOLD_DB = -35.0
NOISE_MARGIN_DB = 10.0
NOISE_FLOOR_PERCENTILE = 10

# first_audible_sample: a window louder than this is sound a listener hears. -50 dBFS is the
# gateway endpointer's floor for speech too; synthesis dither and digital silence stay below.
AUDIBLE_THRESHOLD_DBFS = -50.0
AUDIBLE_WINDOW_MS = 10
# No window can be audible when no sample is louder than this (the RMS never exceeds the peak).
AUDIBLE_PEAK_MIN = int(32768 * 10 ** (AUDIBLE_THRESHOLD_DBFS / 20))
# is_digital_silence: no sample beyond this many PCM16 steps (1-2 LSB of dither is silence).
DIGITAL_SILENCE_PEAK = 2

_DBFS_FLOOR = -100.0  # the level given to digital silence, so logarithms stay finite


def levels_dbfs(windows: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of a 2-D array of PCM16-scaled samples."""
    as_float = np.asarray(windows, dtype=np.float32) / 32768.0
    rms = np.sqrt(np.mean(as_float * as_float, axis=1))
    with np.errstate(divide="ignore"):
        levels = 20.0 * np.log10(rms)
    return np.maximum(levels, _DBFS_FLOOR)


def find_speech(samples: np.ndarray, sample_rate_hz: int) -> tuple[int, int]:
    """Start and end sample of the speech in ``samples``.

    Energy detection over non-overlapping ``SPEECH_WINDOW_MS`` windows, relative to the
    recording's loudest window and its noise floor. Returns ``(start, end)`` with ``end``
    exclusive, at window resolution, or ``(0, 0)`` when nothing is speech (digital silence).
    """
    signal = np.asarray(samples, dtype=np.float64)
    if signal.size == 0:
        return 0, 0
    window = max(1, sample_rate_hz * SPEECH_WINDOW_MS // 1000)
    count = -(-signal.size // window)
    padded = np.zeros(count * window)
    padded[: signal.size] = signal
    # Mean over the real samples only, so a short last window is not diluted by padding.
    lengths = np.full(count, window, dtype=np.float64)
    lengths[-1] = signal.size - (count - 1) * window
    rms = np.sqrt((padded.reshape(count, window) ** 2).sum(axis=1) / lengths)
    peak = rms.max()
    if peak <= 0:
        return 0, 0
    floor = float(np.percentile(rms, NOISE_FLOOR_PERCENTILE))
    threshold = max(peak * 10 ** (SPEECH_THRESHOLD_DB / 20), floor * 10 ** (NOISE_MARGIN_DB / 20))
    active = np.flatnonzero(rms > threshold)
    if active.size == 0:
        return 0, 0
    return int(active[0] * window), int(min((active[-1] + 1) * window, signal.size))


def first_audible_sample(
    samples: np.ndarray, sample_rate_hz: int, *, threshold_dbfs: float = AUDIBLE_THRESHOLD_DBFS
) -> int | None:
    """Index of the first sample of the first ``AUDIBLE_WINDOW_MS`` window louder than
    ``threshold_dbfs``, or None when no window is.

    An absolute threshold, not one relative to the loudest window: it is applied to a reply
    as its frames arrive, before the loudest part has been heard. A last partial window is
    judged on the samples it has.
    """
    signal = np.asarray(samples, dtype=np.float32)
    if signal.size == 0:
        return None
    window = max(1, sample_rate_hz * AUDIBLE_WINDOW_MS // 1000)
    # Compare mean squares with the threshold's square: no square root or logarithm per window.
    threshold_ms = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
    whole = signal.size // window
    if whole:
        windows = signal[: whole * window].reshape(whole, window)
        loud = np.einsum("ij,ij->i", windows, windows) > threshold_ms * window
        first = int(loud.argmax())  # the first True (argmax of booleans stops at it); 0 when none is
        if loud[first]:
            return first * window
    rest = signal[whole * window :]
    if rest.size and float(np.dot(rest, rest)) > threshold_ms * rest.size:
        return whole * window
    return None


def is_digital_silence(samples: np.ndarray) -> bool:
    """True when no sample is further than ``DIGITAL_SILENCE_PEAK`` PCM16 steps from zero
    (an empty reply counts as silence)."""
    signal = np.asarray(samples)
    return signal.size == 0 or int(np.abs(signal.astype(np.int32)).max()) <= DIGITAL_SILENCE_PEAK
