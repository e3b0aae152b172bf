"""Signal maths of the audio checks: pure numpy functions, float samples in [-1, 1), numbers out.

Nothing here opens a device; every function is unit-tested on synthetic signals.

* levels: :func:`rms_dbfs`, :func:`peak_dbfs`, :func:`clip_count`, :func:`level_bar`
* conversions: :func:`pcm16_to_float`, :func:`float_to_pcm16`, :func:`resample`
* test signals: :func:`tone`, :func:`chirp`
* measurements: :func:`find_delay` (cross-correlation lag and normalised correlation of a
  reference in a capture), :func:`estimate_frequency` (windowed FFT peak with parabolic
  interpolation), :func:`tone_analysis` (frequency, level, SNR and THD of a captured tone)
* verdicts: :func:`mic_verdict`, :func:`loopback_verdict`, as a :class:`Verdict`

dBFS here is ``20·log10(rms)`` with full scale 1.0 (a full-scale sine is −3.0 dBFS RMS,
0 dBFS peak); digital silence reads :data:`DBFS_FLOOR` rather than −∞.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voiceharness import diagnoses, guide

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ

DBFS_FLOOR = -120.0  # what digital silence reads (below PCM16's ~ -101 dBFS quantisation floor)
CLIP_LEVEL = 32767 / 32768  # the positive PCM16 rail; -1.0 is the negative one

# Microphone verdict thresholds.
SILENT_RMS_DBFS = -60.0  # below this the input is silent: muted, broken or the wrong input
QUIET_PEAK_DBFS = -30.0  # speech peaks below this are too quiet for speech recognition
CLIPPING_MIN_SAMPLES = 3  # this many samples at the rails make the verdict "clipping"

# Level bars.
BAR_WIDTH = 32
BAR_FLOOR_DBFS = -60.0

# Test signals.
SPEAKER_TONE_HZ = 440.0
TONE_LEVEL_DBFS = -12.0  # peak level of the speaker tone
LOOPBACK_LEVEL_DBFS = -6.0  # peak level of the loopback chirp and tone
CHIRP_F0_HZ = 100.0
CHIRP_F1_HZ = 7000.0
CHIRP_S = 0.5
FADE_S = 0.005

# Loopback pass criteria.
MIN_CORRELATION = 0.8
MAX_FREQUENCY_ERROR_HZ = 5.0
MIN_SNR_DB = 20.0
MAX_THD_PERCENT = 10.0
MIN_LOOPBACK_LEVEL_DBFS = -50.0
SNR_CAP_DB = 140.0  # what a noiseless (digital) path reads

_HARMONICS = 5  # 2nd to 5th harmonic count as distortion
_MAINLOBE_BINS = 5  # Blackman-Harris main lobe is +-4 bins; one more for the interpolation

def pcm16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    """PCM16 little-endian bytes (or int16 samples) as float64 samples in [-1, 1)."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else np.asarray(pcm)
    return samples.astype(np.float64) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples as PCM16 little-endian bytes, clipped to the rails."""
    scaled = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def _to_dbfs(amplitude: float) -> float:
    if amplitude <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 20.0 * math.log10(amplitude))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (full scale 1.0); :data:`DBFS_FLOOR` for silence or no samples."""
    x = np.asarray(samples, dtype=np.float64)
    return _to_dbfs(float(np.sqrt(np.mean(x * x)))) if x.size else DBFS_FLOOR


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dBFS; :data:`DBFS_FLOOR` for silence or no samples."""
    x = np.asarray(samples, dtype=np.float64)
    return _to_dbfs(float(np.max(np.abs(x)))) if x.size else DBFS_FLOOR


def clip_count(samples: np.ndarray) -> int:
    """How many samples sit at a PCM16 rail (32767 or -32768, i.e. >= 32767/32768 or <= -1.0)."""
    x = np.asarray(samples)
    return int(np.count_nonzero((x >= CLIP_LEVEL) | (x <= -1.0)))


@dataclass(frozen=True)
class Verdict:
    """A check's outcome: a short name, whether it passed, and what to do."""

    name: str
    passed: bool
    advice: str
    diagnosis: str | None = None  # a voiceharness.diagnoses code, when one describes the problem


def mic_verdict(rms: float, peak: float, clipped: int) -> Verdict:
    """silent / clipping / too quiet / OK, from the capture's RMS and peak dBFS and clip count.

    >>> mic_verdict(-120.0, -120.0, 0).name
    'silent'
    """
    if rms < SILENT_RMS_DBFS:
        return Verdict(
            "silent",
            False,
            f"RMS below {SILENT_RMS_DBFS:.0f} dBFS: nothing reaches the input. "
            + diagnoses.explain("mic_silent"),
            "mic_silent",
        )
    if clipped >= CLIPPING_MIN_SAMPLES:
        return Verdict(
            "clipping",
            False,
            f"{clipped} samples hit full scale: lower the input gain or move away from the microphone",
        )
    if peak < QUIET_PEAK_DBFS:
        return Verdict(
            "too quiet",
            False,
            f"peaks stay below {QUIET_PEAK_DBFS:.0f} dBFS: speak during the check, closer to the "
            "microphone, or raise the input gain",
        )
    return Verdict("OK", True, "the level suits speech recognition")


def level_bar(dbfs: float, width: int = BAR_WIDTH, floor_dbfs: float = BAR_FLOOR_DBFS) -> str:
    """A text level meter: ``[#########.......] -23.4 dBFS``; empty at ``floor_dbfs``, full at 0.

    >>> level_bar(-30.0, width=10)
    '[#####.....]  -30.0 dBFS'
    """
    fraction = min(1.0, max(0.0, (dbfs - floor_dbfs) / -floor_dbfs))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {dbfs:6.1f} dBFS"


def _fade(x: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    # Raised-cosine ends so switching the signal on and off does not splatter into all bins.
    n = min(int(FADE_S * sample_rate_hz), x.size // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def tone(
    frequency_hz: float,
    duration_s: float,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    level_dbfs: float = TONE_LEVEL_DBFS,
) -> np.ndarray:
    """A sine of ``level_dbfs`` peak, with 5 ms fades."""
    t = np.arange(round(duration_s * sample_rate_hz)) / sample_rate_hz
    x = 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * frequency_hz * t)
    return _fade(x, sample_rate_hz)


def chirp(
    f0_hz: float = CHIRP_F0_HZ,
    f1_hz: float = CHIRP_F1_HZ,
    duration_s: float = CHIRP_S,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    level_dbfs: float = LOOPBACK_LEVEL_DBFS,
) -> np.ndarray:
    """A linear sweep from ``f0_hz`` to ``f1_hz`` of ``level_dbfs`` peak, with 5 ms fades.

    Its autocorrelation is one sharp peak, so cross-correlation finds it to the sample.
    """
    t = np.arange(round(duration_s * sample_rate_hz)) / sample_rate_hz
    phase = 2 * np.pi * (f0_hz * t + (f1_hz - f0_hz) * t * t / (2 * duration_s))
    return _fade(10 ** (level_dbfs / 20) * np.sin(phase), sample_rate_hz)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling from one integer rate to another (a no-op when they are equal)."""
    if from_hz == to_hz:
        return np.asarray(samples, dtype=np.float64)
    from scipy.signal import resample_poly

    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(np.asarray(samples, dtype=np.float64), int(to_hz) // g, int(from_hz) // g)


def find_delay(reference: np.ndarray, captured: np.ndarray) -> tuple[int, float]:
    """Where ``reference`` starts in ``captured``: (lag in samples, normalised correlation).

    The correlation at each lag is divided by the energies of the reference and of the
    capture window it overlaps, so 1.0 is a perfect (scaled) copy whatever the level. The
    sign is ignored: a path that inverts polarity still finds its lag. ``(0, 0.0)`` when the
    capture is shorter than the reference or silent.
    """
    from scipy.signal import correlate

    ref = np.asarray(reference, dtype=np.float64)
    cap = np.asarray(captured, dtype=np.float64)
    n = ref.size
    if n == 0 or cap.size < n:
        return 0, 0.0
    corr = correlate(cap, ref, mode="valid", method="fft")
    energy = np.concatenate(([0.0], np.cumsum(cap * cap)))
    window_energy = energy[n:] - energy[:-n]
    ref_energy = float(np.dot(ref, ref))
    top = float(window_energy.max()) if window_energy.size else 0.0
    if ref_energy <= 0.0 or top <= 0.0:
        return 0, 0.0
    # Windows of (near) silence would divide FFT round-off by ~0; floor them.
    denominator = np.sqrt(ref_energy * np.maximum(window_energy, 1e-6 * top))
    normalised = np.abs(corr) / denominator
    lag = int(np.argmax(normalised))
    return lag, float(min(1.0, normalised[lag]))


def _window(n: int) -> np.ndarray:
    from scipy.signal.windows import blackmanharris

    return blackmanharris(n, sym=False)


def estimate_frequency(
    samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, min_hz: float = 20.0
) -> float:
    """The strongest frequency: Blackman-Harris window, FFT, parabolic interpolation of the
    log magnitude around the peak bin. Accurate to a small fraction of a bin (rate / length).
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 8 or not np.all(np.isfinite(x)):
        return 0.0
    n_fft = 1 << (2 * x.size - 1).bit_length()  # zero-pad to >= 2x: finer bins for the parabola
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * _window(x.size), n_fft))
    start = max(1, int(min_hz * n_fft / sample_rate_hz))
    if start >= spectrum.size - 1:
        return 0.0
    k = start + int(np.argmax(spectrum[start:-1]))
    a, b, c = np.log(np.maximum(spectrum[k - 1 : k + 2], 1e-300))
    denominator = a - 2 * b + c
    offset = 0.5 * (a - c) / denominator if denominator != 0 else 0.0
    frequency = (k + offset) * sample_rate_hz / n_fft
    return float(frequency) if math.isfinite(frequency) else 0.0


@dataclass(frozen=True)
class ToneAnalysis:
    """A captured tone: its frequency, RMS level, SNR and THD."""

    frequency_hz: float
    level_dbfs: float
    snr_db: float  # fundamental vs everything but DC and harmonics 2..5
    thd_percent: float  # harmonics 2..5 vs fundamental, by amplitude
    thd_db: float


def tone_analysis(samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> ToneAnalysis:
    """Measure a (mostly) pure tone: frequency (:func:`estimate_frequency`), RMS level, SNR and THD.

    Powers come from a Blackman-Harris-windowed power spectrum: the fundamental and each
    harmonic (2nd to 5th) own ±5 bins; the rest (DC excluded) is noise, scaled up for the
    bins set aside. A noiseless path reads :data:`SNR_CAP_DB`.
    """
    x = np.asarray(samples, dtype=np.float64)
    frequency = estimate_frequency(x, sample_rate_hz)
    level = rms_dbfs(x)
    if x.size < 64 or frequency <= 0.0:
        return ToneAnalysis(frequency, level, 0.0, 0.0, DBFS_FLOOR)
    power = np.abs(np.fft.rfft((x - x.mean()) * _window(x.size))) ** 2
    bin_hz = sample_rate_hz / x.size
    owner = np.zeros(power.size, dtype=np.int8)  # 0 noise, 1 fundamental, 2 harmonic, 3 DC
    owner[: _MAINLOBE_BINS + 1] = 3

    def claim(f_hz: float, tag: int) -> bool:
        centre = round(f_hz / bin_hz)
        if centre + _MAINLOBE_BINS >= power.size:
            return False
        lo = max(0, centre - _MAINLOBE_BINS)
        owner[lo : centre + _MAINLOBE_BINS + 1] = np.where(
            owner[lo : centre + _MAINLOBE_BINS + 1] == 0, tag, owner[lo : centre + _MAINLOBE_BINS + 1]
        )
        return True

    claim(frequency, 1)
    for k in range(2, _HARMONICS + 1):
        if not claim(k * frequency, 2):
            break
    signal = float(power[owner == 1].sum())
    harmonics = float(power[owner == 2].sum())
    noise_bins = owner == 0
    usable = owner != 3
    noise = float(power[noise_bins].sum()) * usable.sum() / max(1, noise_bins.sum())
    if signal <= 0.0:
        return ToneAnalysis(frequency, level, 0.0, 0.0, DBFS_FLOOR)
    snr = SNR_CAP_DB if noise <= signal * 10 ** (-SNR_CAP_DB / 10) else 10 * math.log10(signal / noise)
    thd = math.sqrt(harmonics / signal)
    return ToneAnalysis(frequency, level, snr, 100.0 * thd, _to_dbfs(thd))


def loopback_verdict(
    correlation: float, frequency_error_hz: float, analysis: ToneAnalysis, capture_rms_dbfs: float
) -> tuple[Verdict, list[str]]:
    """The loopback's verdict and every problem found (the verdict names the first)."""
    if capture_rms_dbfs < SILENT_RMS_DBFS:
        advice = (
            "nothing came back: route the output to the input — a cable, a monitor source "
            "(PulseAudio: default source = <sink>.monitor), or the speaker next to the microphone"
        )
        return Verdict("silent", False, advice, "mic_silent"), [advice]
    problems = []
    if correlation < MIN_CORRELATION:
        problems.append(
            f"chirp not found (normalised correlation {correlation:.2f} < {MIN_CORRELATION}): "
            "the path is noisy, distorted or filtered"
        )
    if abs(frequency_error_hz) > MAX_FREQUENCY_ERROR_HZ:
        problems.append(
            f"tone off by {frequency_error_hz:+.1f} Hz (> {MAX_FREQUENCY_ERROR_HZ:g}): playback and "
            "capture disagree on the sample rate"
        )
    if analysis.level_dbfs < MIN_LOOPBACK_LEVEL_DBFS:
        problems.append(
            f"tone too quiet ({analysis.level_dbfs:.1f} dBFS < {MIN_LOOPBACK_LEVEL_DBFS:g}): "
            "raise the output volume or the input gain"
        )
    if analysis.snr_db < MIN_SNR_DB:
        problems.append(f"noisy: SNR {analysis.snr_db:.1f} dB < {MIN_SNR_DB:g} dB")
    if analysis.thd_percent > MAX_THD_PERCENT:
        problems.append(
            f"distorted: THD {analysis.thd_percent:.1f} % > {MAX_THD_PERCENT:g} %: lower --level "
            "or the input gain"
        )
    if problems:
        return Verdict("FAIL", False, problems[0]), problems
    return Verdict("OK", True, "the signal went out and came back intact"), []
