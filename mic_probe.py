"""mic_probe — is my microphone, speaker or loopback working? With numbers.

The usage guide's "Audio checks" (the microphone check whose level bars must react to sound,
the speaker check with a 440 Hz tone) and its "Failed to access microphone" troubleshooting,
as a command-line tool. Capture is the guide's format: 16 kHz, mono, PCM16, 1024-sample
chunks (64 ms)::

    python mic_probe.py devices                 input and output devices, defaults marked *
    python mic_probe.py mic [--duration 5]      live level bars, then RMS/peak dBFS, clipping, verdict
    python mic_probe.py speaker [--level -12]   a 440 Hz tone; confirmed when the input hears it back
    python mic_probe.py loopback                chirp + tone out and back: latency, frequency error,
                                                SNR, THD, level
    python mic_probe.py acoustic                "hello jarvis" out of the speaker, into the microphone,
                                                to the gateway: the intent and the roundtrip

Every command takes ``--json`` (one JSON object on stdout, for scripts); those that use a
device take ``--device`` (an index or part of a name; ``IN,OUT`` for the commands that play and
capture) and ``--rate``; ``speaker``, ``loopback`` and ``acoustic`` take ``--attempts N`` (run a
failed check again when the failure may be a dropout of a busy machine). Exit status:
0 the check passed, 1 it failed, 2 it could not run (no device, device busy or denied,
PortAudio missing, gateway unreachable...). Device failures are reported with the guide's
"Failed to access microphone" diagnosis — finding, likely causes, fixes — never a traceback.
When the device refuses 16 kHz, the probe captures at the device's own rate and resamples
to 16 kHz, and says so.

Signal functions (pure; float samples in [-1, 1), numbers out; unit-tested on synthetic signals):

* :func:`rms_dbfs`, :func:`peak_dbfs`, :func:`clip_count`, :func:`mic_verdict`, :func:`level_bar`
* :func:`tone`, :func:`chirp`, :func:`resample`, :func:`pcm16_to_float`, :func:`float_to_pcm16`
* :func:`find_delay` — cross-correlation lag and normalised correlation of a reference in a capture
* :func:`estimate_frequency` — windowed FFT peak with parabolic interpolation
* :func:`tone_analysis` — frequency, level, SNR and THD of a captured tone
* :func:`loopback_verdict`

Device functions (import :mod:`sounddevice` inside, so this module imports without PortAudio):
:func:`list_devices`, :func:`capture`, :func:`play_and_capture`, and one ``run_*`` function per
command returning a :class:`Result`. They raise :class:`voiceharness.errors.DeviceError` with a
diagnosis code from :mod:`voiceharness.diagnoses`.

dBFS here is ``20·log10(rms)`` with full scale 1.0 (a full-scale sine is −3.0 dBFS RMS,
0 dBFS peak); digital silence reads :data:`DBFS_FLOOR` rather than −∞.

Output on this machine, on the virtual loopback of ``scripts/virtual-audio.sh``::

    $ python mic_probe.py devices
    Input devices (* = default):
         0  pulse    32 ch   44100 Hz  ALSA
      *  1  default  32 ch   44100 Hz  ALSA
    Output devices (* = default):
         0  pulse    32 ch   44100 Hz  ALSA
      *  1  default  32 ch   44100 Hz  ALSA
    Verdict: OK — 2 devices

    $ python mic_probe.py loopback
    Output: 1 default, 16000 Hz mono
    Input: 1 default, 16000 Hz mono
    Played a 100-7000 Hz chirp (0.5 s) and a 440 Hz tone (1 s) at -6.0 dBFS peak
    Round-trip latency 144.0 ms (2304 samples), chirp correlation 1.000
    Tone 440.00 Hz (error +0.00 Hz) · level -9.0 dBFS · SNR 93.1 dB · THD 0.00042 % (-107.5 dB)
    Verdict: OK — the signal went out and came back intact

See docs/mic_probe.md for every command's output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np

from voiceharness import diagnoses, guide
from voiceharness.errors import ConnectionFailed, DeviceError, GatewayError, HarnessError, UsageError

# ---------------------------------------------------------------------------------- constants

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ
CHUNK_SAMPLES = guide.CHUNK_SAMPLES

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_COULD_NOT_RUN = 2

DBFS_FLOOR = -120.0  # what digital silence reads (below PCM16's ~ -101 dBFS quantisation floor)
CLIP_LEVEL = 32767 / 32768  # the positive PCM16 rail; -1.0 is the negative one

# Microphone verdict thresholds.
SILENT_RMS_DBFS = -60.0  # below this the input is silent: muted, broken or the wrong input
QUIET_PEAK_DBFS = -30.0  # speech peaks below this are too quiet for speech recognition
CLIPPING_MIN_SAMPLES = 3  # this many samples at the rails make the verdict "clipping"

# Level bars: ~15 Hz on a terminal (one redraw per 64 ms chunk), a line per 0.5 s otherwise.
BAR_WIDTH = 32
BAR_FLOOR_DBFS = -60.0
BAR_LINE_INTERVAL_S = 0.5

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
SNR_CAP_DB = 140.0
STREAM_LATENCY: str | float = "high"  # PortAudio's suggested latency for play/record streams
STREAM_WATCHDOG_S = (
    10.0  # a stream this late past its signal's end has stalled  # what a noiseless (digital) path reads
)

_HARMONICS = 5  # 2nd to 5th harmonic count as distortion
_MAINLOBE_BINS = 5  # Blackman-Harris main lobe is +-4 bins; one more for the interpolation


# ---------------------------------------------------------------------------- signal maths


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
    diagnosis: str | None = None  # a voiceharness.diagnoses code when the guide has one


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


# ------------------------------------------------------------------------------ devices


def _sounddevice() -> Any:
    """Import sounddevice, or raise the guide's diagnosis when PortAudio (or the module) is missing."""
    # PulseAudio's ALSA plugin (the "pulse"/"default" devices) otherwise picks buffers so small
    # that a duplex stream underruns on a busy machine and drops pieces of the chirp; one chunk
    # of buffering (64 ms) keeps it whole. Only PulseAudio clients read this; a user's own
    # setting wins.
    os.environ.setdefault("PULSE_LATENCY_MSEC", str(round(guide.CHUNK_MS)))
    try:
        import sounddevice
    except OSError as error:  # sounddevice raises OSError('PortAudio library not found')
        raise DeviceError(diagnoses.explain("portaudio_missing", str(error)), "portaudio_missing") from None
    except ImportError as error:
        raise DeviceError(
            diagnoses.explain(
                "mic_unavailable", f"python-sounddevice is not installed ({error}); pip install sounddevice"
            ),
            "mic_unavailable",
        ) from None
    return sounddevice


def _is_invalid_rate(error: BaseException) -> bool:
    return "Invalid sample rate" in str(error) or "-9997" in str(error)


def classify_device_error(error: BaseException) -> str:
    """The diagnosis code of a PortAudio error (or sounddevice's ValueError for a bad --device).

    paDeviceUnavailable (-9985), EBUSY and EACCES/permission errors → ``mic_busy``; no such
    device, no input channels, no default device (index -1) → ``mic_no_device``; anything
    else → ``mic_unavailable``.
    """
    text = str(error).lower()
    if any(
        s in text
        for s in (
            "-9985",
            "device unavailable",
            "busy",
            "permission",
            "denied",
            "eacces",
            "ebusy",
            "not permitted",
        )
    ):
        return "mic_busy"
    if any(
        s in text
        for s in (
            "-9996",
            "-9998",
            "no input device",
            "no output device",
            "no device",
            "error querying device",
            "invalid device",
            "invalid number of channels",
            "no such",
            "device -1",
        )
    ):
        return "mic_no_device"
    return "mic_unavailable"


def _device_error(error: BaseException, what: str) -> DeviceError:
    code = classify_device_error(error)
    return DeviceError(diagnoses.explain(code, f"{what}: {error}"), code)


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate_hz: int
    default_input: bool
    default_output: bool


def list_devices() -> list[Device]:
    """Every PortAudio device with its host API, channels, default rate and default flags."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as error:
        raise _device_error(error, "listing devices") from None
    if isinstance(default_in, str) or default_in is None:
        default_in = -1
    if isinstance(default_out, str) or default_out is None:
        default_out = -1
    return [
        Device(
            index=d["index"],
            name=d["name"],
            hostapi=hostapis[d["hostapi"]]["name"],
            max_input_channels=d["max_input_channels"],
            max_output_channels=d["max_output_channels"],
            default_samplerate_hz=int(d["default_samplerate"]),
            default_input=d["index"] == default_in,
            default_output=d["index"] == default_out,
        )
        for d in devices
    ]


def _parse_device(spec: str | None) -> tuple[int | str | None, int | str | None]:
    """``--device`` as (input, output): ``3``, ``pulse``, or ``IN,OUT`` (either part may be empty)."""
    if spec is None or spec == "":
        return None, None

    def one(part: str) -> int | str | None:
        part = part.strip()
        if not part:
            return None
        return int(part) if part.lstrip("-").isdigit() else part

    if "," in spec:
        inp, out = spec.split(",", 1)
        return one(inp), one(out)
    return one(spec), one(spec)


def _resolve(sd: Any, spec: int | str | None, kind: str) -> dict[str, Any]:
    """The device dict sounddevice knows for ``spec`` (None = the default), or the no-device diagnosis."""
    label = "input" if kind == "input" else "output"
    try:
        available = [d for d in sd.query_devices() if d[f"max_{label}_channels"] > 0]
    except sd.PortAudioError as error:
        raise _device_error(error, f"listing {label} devices") from None
    if not available:
        raise DeviceError(
            diagnoses.explain("mic_no_device", f"PortAudio sees no {label} device at all"), "mic_no_device"
        )
    try:
        return dict(sd.query_devices(spec, kind=kind))
    except (ValueError, sd.PortAudioError) as error:
        names = ", ".join(f"{d['index']} {d['name']}" for d in available)
        detail = f"{label} device {spec if spec is not None else '(default)'}: {error}; available: {names}"
        if spec is None:
            detail += "; pick one with --device"
        code = classify_device_error(error)
        if isinstance(error, ValueError):
            code = "mic_no_device"
        raise DeviceError(diagnoses.explain(code, detail), code) from None


def negotiate_rate(
    check: Callable[[int], None], wanted_hz: int, device_rate_hz: int
) -> tuple[int, str | None]:
    """The rate to open the device at: ``wanted_hz`` if ``check`` accepts it, else the device's own
    rate (and a note saying so). ``check`` raises like ``sounddevice.check_input_settings``.
    """
    try:
        check(wanted_hz)
        return wanted_hz, None
    except Exception as error:
        if not _is_invalid_rate(error) or device_rate_hz == wanted_hz:
            raise
    check(device_rate_hz)
    note = f"the device does not support {wanted_hz} Hz; using its own rate {device_rate_hz} Hz" + (
        f" and resampling to {SAMPLE_RATE_HZ} Hz" if device_rate_hz != SAMPLE_RATE_HZ else ""
    )
    return device_rate_hz, note


@dataclass
class _Opened:
    """A device chosen and a rate negotiated."""

    index: int
    name: str
    rate_hz: int
    note: str | None


def _open_input(sd: Any, spec: int | str | None, wanted_hz: int) -> _Opened:
    info = _resolve(sd, spec, "input")

    def check(rate: int) -> None:
        sd.check_input_settings(device=info["index"], samplerate=rate, channels=1, dtype="int16")

    try:
        rate, note = negotiate_rate(check, wanted_hz, int(info["default_samplerate"]))
    except (sd.PortAudioError, ValueError) as error:
        raise _device_error(error, f"input device {info['index']} {info['name']}") from None
    return _Opened(info["index"], info["name"], rate, note)


def _open_duplex(
    sd: Any, in_spec: int | str | None, out_spec: int | str | None, wanted_hz: int
) -> tuple[_Opened, _Opened]:
    inp = _resolve(sd, in_spec, "input")
    out = _resolve(sd, out_spec, "output")

    def check(rate: int) -> None:
        sd.check_input_settings(device=inp["index"], samplerate=rate, channels=1, dtype="float32")
        sd.check_output_settings(device=out["index"], samplerate=rate, channels=1, dtype="float32")

    try:
        rate, note = negotiate_rate(check, wanted_hz, int(out["default_samplerate"]))
    except (sd.PortAudioError, ValueError) as error:
        raise _device_error(
            error, f"devices {inp['index']} {inp['name']} / {out['index']} {out['name']}"
        ) from None
    return _Opened(inp["index"], inp["name"], rate, note), _Opened(out["index"], out["name"], rate, note)


class LevelMeter:
    """Live level bars: one line redrawn with ``\\r`` per chunk on a terminal, else a line per 0.5 s."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, enabled: bool = True) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.enabled = enabled
        self._pending: list[np.ndarray] = []
        self._pending_s = 0.0
        self._drawn = False

    def update(self, chunk: np.ndarray, duration_s: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + level_bar(rms_dbfs(chunk)) + f"  peak {peak_dbfs(chunk):6.1f}")
            self.stream.flush()
            self._drawn = True
            return
        self._pending.append(chunk)
        self._pending_s += duration_s
        if self._pending_s >= BAR_LINE_INTERVAL_S - 1e-9:
            self._flush_line()

    def _flush_line(self) -> None:
        block = np.concatenate(self._pending)
        self.stream.write(level_bar(rms_dbfs(block)) + f"  peak {peak_dbfs(block):6.1f}\n")
        self.stream.flush()
        self._pending, self._pending_s = [], 0.0

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\n")
        elif self._pending:
            self._flush_line()
        self.stream.flush()


def _block_size(rate_hz: int) -> int:
    """The guide's chunk (1024 samples, 64 ms at 16 kHz) at another rate: the same 64 ms."""
    return max(1, round(CHUNK_SAMPLES * rate_hz / SAMPLE_RATE_HZ))


def capture(
    device: int | str | None,
    duration_s: float,
    *,
    wanted_hz: int = SAMPLE_RATE_HZ,
    on_chunk: Callable[[np.ndarray, float], None] | None = None,
) -> tuple[np.ndarray, _Opened, bool]:
    """Record ``duration_s`` from an input device in 64 ms chunks, resampled to 16 kHz.

    ``on_chunk(samples, seconds)`` sees each chunk at the device rate as it arrives (the level
    bars). Ctrl-C ends the capture early. Returns (16 kHz float samples, the device, whether
    the input overflowed).
    """
    sd = _sounddevice()
    opened = _open_input(sd, device, wanted_hz)
    block = _block_size(opened.rate_hz)
    total = round(duration_s * opened.rate_hz)
    chunks: list[np.ndarray] = []
    overflowed = False
    got = 0
    try:
        with sd.InputStream(
            device=opened.index, samplerate=opened.rate_hz, channels=1, dtype="int16", blocksize=block
        ) as stream:
            while got < total:
                data, overflow = stream.read(min(block, total - got))
                overflowed |= bool(overflow)
                chunk = pcm16_to_float(data[:, 0])
                chunks.append(chunk)
                got += chunk.size
                if on_chunk is not None:
                    on_chunk(chunk, chunk.size / opened.rate_hz)
    except KeyboardInterrupt:
        pass  # the capture so far is the result
    except sd.PortAudioError as error:
        raise _device_error(error, f"capturing from {opened.index} {opened.name}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0)
    return resample(samples, opened.rate_hz, SAMPLE_RATE_HZ), opened, overflowed


def play_and_capture(
    signal: np.ndarray, device: str | None, *, wanted_hz: int = SAMPLE_RATE_HZ, capture_back: bool = True
) -> tuple[np.ndarray | None, _Opened | None, _Opened]:
    """Play a 16 kHz signal on the output and, when ``capture_back``, record the input at the
    same time (one duplex stream, so both share a clock). Returns (16 kHz capture or None,
    input device or None, output device).
    """
    sd = _sounddevice()
    in_spec, out_spec = _parse_device(device)
    if capture_back:
        inp, out = _open_duplex(sd, in_spec, out_spec, wanted_hz)
    else:
        info = _resolve(sd, out_spec, "output")

        def check(rate: int) -> None:
            sd.check_output_settings(device=info["index"], samplerate=rate, channels=1, dtype="float32")

        try:
            rate, note = negotiate_rate(check, wanted_hz, int(info["default_samplerate"]))
        except (sd.PortAudioError, ValueError) as error:
            raise _device_error(error, f"output device {info['index']} {info['name']}") from None
        inp, out = None, _Opened(info["index"], info["name"], rate, note)
    played = resample(signal, SAMPLE_RATE_HZ, out.rate_hz).astype(np.float32)
    try:
        recorded = _play_record(sd, played, out.rate_hz, out.index, inp.index if inp else None)
    except sd.PortAudioError as error:
        raise _device_error(error, f"playing on {out.index} {out.name}") from None
    if recorded is None or inp is None:
        return None, None, out
    return resample(recorded, out.rate_hz, SAMPLE_RATE_HZ), inp, out


class StreamHung(DeviceError):
    """The audio stream stopped calling back; the process should exit without PortAudio's cleanup."""


class StreamDropped(DeviceError):
    """The audio stream ended before its signal did (PortAudio's host layer failed mid-stream);
    the stream is closed cleanly, so the check can be run again (``--attempts``)."""


def _stream_dropped(stream: Any) -> StreamDropped | None:
    # PortAudio's ALSA layer over PulseAudio sometimes fails a poll and ends the stream early.
    if stream.active:
        return None
    return StreamDropped(
        diagnoses.explain(
            "mic_unavailable", "the audio stream stopped early (PortAudio reported a host error)"
        ),
        "mic_unavailable",
    )


def _stream_stalled(seconds: float) -> StreamHung:
    return StreamHung(
        diagnoses.explain("mic_unavailable", f"the audio stream stalled for {seconds:.0f} s"),
        "mic_unavailable",
    )


def _play_record(
    sd: Any, played: np.ndarray, rate_hz: int, out_index: int, in_index: int | None
) -> np.ndarray | None:
    """Play ``played`` (and record as many samples when ``in_index`` is given) in 64 ms blocks,
    with a watchdog: PortAudio's ALSA layer over PulseAudio can stall, and a probe must not hang.
    """
    block = _block_size(rate_hz)
    recorded = np.zeros(played.size, dtype=np.float32) if in_index is not None else None
    position = 0
    done = threading.Event()

    def fill(outdata: np.ndarray, frames: int) -> None:
        nonlocal position
        n = max(0, min(frames, played.size - position))
        outdata[:n, 0] = played[position : position + n]
        outdata[n:] = 0

    def on_output(outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        fill(outdata, frames)
        position += frames
        if position >= played.size:
            raise sd.CallbackStop

    def on_duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        assert recorded is not None
        n = max(0, min(frames, played.size - position))
        recorded[position : position + n] = indata[:n, 0]
        on_output(outdata, frames, _time, _status)

    # "high" latency and 64 ms blocks: a measurement wants whole signals more than low latency.
    if in_index is None:
        stream = sd.OutputStream(
            samplerate=rate_hz,
            blocksize=block,
            device=out_index,
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_output,
            finished_callback=done.set,
        )
    else:
        stream = sd.Stream(
            samplerate=rate_hz,
            blocksize=block,
            device=(in_index, out_index),
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_duplex,
            finished_callback=done.set,
        )
    deadline_s = played.size / rate_hz + STREAM_WATCHDOG_S
    deadline = time.monotonic() + deadline_s
    with stream:
        while not done.wait(0.1):
            dropped = _stream_dropped(stream)
            if dropped is not None:
                raise dropped
            if time.monotonic() > deadline:
                raise _stream_stalled(deadline_s)
    if position < played.size:  # finished, but not because the signal was played out
        raise StreamDropped(
            diagnoses.explain("mic_unavailable", "the audio stream stopped before the signal was played"),
            "mic_unavailable",
        )
    return recorded


# ------------------------------------------------------------------------------ commands


@dataclass
class Result:
    """What a command found: printed as text, or as one JSON object with ``--json``."""

    command: str
    exit_code: int
    verdict: str
    advice: str = ""
    lines: list[str] = field(default_factory=list)  # the text report, line by line
    data: dict[str, Any] = field(default_factory=dict)  # the numbers, for --json
    diagnosis: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "passed": self.exit_code == EXIT_PASS,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "advice": self.advice,
        }
        out.update(self.data)
        if self.diagnosis:
            out["diagnosis"] = _diagnosis_json(self.diagnosis)
        return out


def _diagnosis_json(code: str) -> dict[str, Any]:
    d = diagnoses.DIAGNOSES.get(code)
    if d is None:
        return {"code": code}
    return {
        "code": code,
        "headline": d.headline,
        "finding": d.finding,
        "causes": list(d.causes),
        "fixes": list(d.fixes),
    }


def _device_line(kind: str, opened: _Opened) -> str:
    line = f"{kind}: {opened.index} {opened.name}, {opened.rate_hz} Hz mono"
    return line + (f" ({opened.note})" if opened.note else "")


def run_devices() -> Result:
    """The device list; fails (mic_no_device) when there is no input device."""
    devices = list_devices()
    lines = []
    for kind, channels in (("Input", "max_input_channels"), ("Output", "max_output_channels")):
        rows = [d for d in devices if getattr(d, channels) > 0]
        lines.append(f"{kind} devices (* = default):")
        if not rows:
            lines.append("    (none)")
        width = max((len(d.name) for d in rows), default=0)
        for d in rows:
            mark = "*" if (d.default_input if kind == "Input" else d.default_output) else " "
            lines.append(
                f"  {mark} {d.index:2d}  {d.name:<{width}}  {getattr(d, channels):2d} ch  "
                f"{d.default_samplerate_hz:6d} Hz  {d.hostapi}"
            )
    data = {"devices": [asdict(d) for d in devices]}
    if not any(d.max_input_channels > 0 for d in devices):
        advice = diagnoses.explain("mic_no_device", "PortAudio sees no input device")
        return Result("devices", EXIT_FAIL, "no input device", advice, lines, data, "mic_no_device")
    return Result("devices", EXIT_PASS, "OK", f"{len(devices)} devices", lines, data)


def run_mic(
    device: str | None,
    duration_s: float,
    *,
    bars: bool = True,
    bar_stream: TextIO | None = None,
    wanted_hz: int = SAMPLE_RATE_HZ,
    save: str | None = None,
) -> Result:
    """Capture with live level bars, then RMS/peak dBFS, clipping and the verdict."""
    in_spec, _ = _parse_device(device)
    stream = bar_stream if bar_stream is not None else sys.stdout
    meter = LevelMeter(stream, enabled=bars)
    chunk_levels: list[float] = []

    def on_chunk(chunk: np.ndarray, seconds: float) -> None:
        chunk_levels.append(round(rms_dbfs(chunk), 1))
        meter.update(chunk, seconds)

    try:
        samples, opened, overflowed = capture(in_spec, duration_s, wanted_hz=wanted_hz, on_chunk=on_chunk)
    finally:
        meter.close()
    rms, peak, clipped = rms_dbfs(samples), peak_dbfs(samples), clip_count(samples)
    verdict = mic_verdict(rms, peak, clipped)
    if save:
        import soundfile

        soundfile.write(save, np.clip(samples, -1.0, CLIP_LEVEL), SAMPLE_RATE_HZ, subtype="PCM_16")
    seconds = samples.size / SAMPLE_RATE_HZ
    lines = [
        _device_line("Input", opened) + f", PCM16, {CHUNK_SAMPLES}-sample chunks, {seconds:.1f} s",
        f"RMS {rms:.1f} dBFS · peak {peak:.1f} dBFS · clipped {clipped} samples"
        + (" · input overflowed" if overflowed else ""),
    ]
    if save:
        lines.append(f"Saved the 16 kHz capture to {save}")
    data = {
        "device": {
            "index": opened.index,
            "name": opened.name,
            "rate_hz": opened.rate_hz,
            "resampled": opened.rate_hz != SAMPLE_RATE_HZ,
            "note": opened.note,
        },
        "duration_s": round(seconds, 3),
        "rms_dbfs": round(rms, 2),
        "peak_dbfs": round(peak, 2),
        "clipped_samples": clipped,
        "overflowed": overflowed,
        "chunk_rms_dbfs": chunk_levels,
    }
    code = EXIT_PASS if verdict.passed else EXIT_FAIL
    return Result("mic", code, verdict.name, verdict.advice, lines, data, verdict.diagnosis)


def run_speaker(
    device: str | None,
    duration_s: float,
    level_dbfs: float,
    *,
    capture_back: bool = True,
    wanted_hz: int = SAMPLE_RATE_HZ,
) -> Result:
    """Play the guide's 440 Hz tone; when the input hears it back, say so with its numbers."""
    lead_s, tail_s = 0.1, 0.5
    signal = np.concatenate(
        [
            np.zeros(round(lead_s * SAMPLE_RATE_HZ)),
            tone(SPEAKER_TONE_HZ, duration_s, SAMPLE_RATE_HZ, level_dbfs),
            np.zeros(round(tail_s * SAMPLE_RATE_HZ) if capture_back else 0),
        ]
    )
    captured, inp, out = play_and_capture(signal, device, wanted_hz=wanted_hz, capture_back=capture_back)
    lines = [
        _device_line("Output", out),
        f"Played {SPEAKER_TONE_HZ:.0f} Hz at {level_dbfs:.1f} dBFS peak for {duration_s:.1f} s",
    ]
    data: dict[str, Any] = {
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "tone_hz": SPEAKER_TONE_HZ,
        "level_dbfs": level_dbfs,
        "duration_s": duration_s,
        "confirmed": None,
    }
    if captured is None or inp is None:
        advice = "listen: you should have heard a steady 440 Hz tone; no capture was made to confirm it"
        return Result("speaker", EXIT_PASS, "played", advice, lines, data)
    # The tone's middle: skip the lead, the fades and up to 0.4 s of output latency.
    start = round((lead_s + 0.4) * SAMPLE_RATE_HZ)
    middle = captured[start : start + max(round((duration_s - 0.5) * SAMPLE_RATE_HZ), CHUNK_SAMPLES)]
    analysis = tone_analysis(middle)
    heard = (
        abs(analysis.frequency_hz - SPEAKER_TONE_HZ) <= MAX_FREQUENCY_ERROR_HZ
        and analysis.snr_db >= MIN_SNR_DB
        and analysis.level_dbfs > SILENT_RMS_DBFS
    )
    data.update(
        input={"index": inp.index, "name": inp.name},
        confirmed=heard,
        heard_frequency_hz=round(analysis.frequency_hz, 2),
        heard_level_dbfs=round(analysis.level_dbfs, 2),
        heard_snr_db=round(analysis.snr_db, 1),
    )
    lines.append(_device_line("Captured back on", inp))
    lines.append(
        f"Heard {analysis.frequency_hz:.1f} Hz at {analysis.level_dbfs:.1f} dBFS RMS, "
        f"SNR {analysis.snr_db:.1f} dB"
    )
    if heard:
        return Result(
            "speaker", EXIT_PASS, "confirmed", "the input heard the tone: the output works", lines, data
        )
    advice = (
        "the input did not hear the tone: the output may be muted or disconnected, or the input "
        "cannot hear it (headphones?). If you heard it, the speaker works; --no-capture skips the check"
    )
    return Result("speaker", EXIT_FAIL, "not heard back", advice, lines, data)


def _loopback_signal(tone_s: float, level_dbfs: float) -> tuple[np.ndarray, int, int, int]:
    """silence · chirp · silence · 440 Hz tone · silence; returns it and the chirp/tone starts and tone length."""
    rate = SAMPLE_RATE_HZ
    parts = [
        np.zeros(rate // 4),
        chirp(level_dbfs=level_dbfs),
        np.zeros(rate // 4),
        tone(SPEAKER_TONE_HZ, tone_s, rate, level_dbfs),
        np.zeros(rate),
    ]
    chirp_start = parts[0].size
    tone_start = chirp_start + parts[1].size + parts[2].size
    return np.concatenate(parts), chirp_start, tone_start, parts[3].size


def _with_attempts(
    run_once: Callable[[], Result], attempts: int, retry: Callable[[Result], bool], summary: tuple[str, ...]
) -> Result:
    """Run a check up to ``attempts`` times while ``retry(result)`` says the failure may be a
    dropout (a busy machine can starve a duplex stream for a block); keep every attempt's numbers."""
    tries: list[Result] = []

    def once() -> Result:
        try:
            return run_once()
        except StreamDropped as error:
            if len(tries) + 1 >= attempts:
                raise
            return Result("", EXIT_COULD_NOT_RUN, "stream dropped", str(error), [], {}, error.diagnosis)

    tries.append(once())
    while len(tries) < attempts and (tries[-1].verdict == "stream dropped" or retry(tries[-1])):
        tries.append(once())
    result = tries[-1]
    if len(tries) > 1:
        result.data["attempts"] = [
            {"verdict": r.verdict} | {k: r.data.get(k) for k in summary} for r in tries
        ]
        result.lines.append(f"Attempts: {len(tries)} (" + ", ".join(r.verdict for r in tries) + ")")
    return result


def run_loopback(
    device: str | None,
    duration_s: float,
    level_dbfs: float,
    *,
    wanted_hz: int = SAMPLE_RATE_HZ,
    attempts: int = 1,
) -> Result:
    """Chirp and tone out and back: latency, correlation, frequency error, SNR, THD, level.

    With ``attempts`` > 1 the measurement is repeated until one passes (a busy machine can
    drop a block of a duplex stream); every attempt's numbers are kept in ``data["attempts"]``.
    """
    return _with_attempts(
        lambda: _loopback_once(device, duration_s, level_dbfs, wanted_hz),
        attempts,
        lambda r: r.exit_code == EXIT_FAIL,
        ("latency_ms", "correlation", "frequency_error_hz", "snr_db"),
    )


def _loopback_once(device: str | None, duration_s: float, level_dbfs: float, wanted_hz: int) -> Result:
    signal, chirp_start, tone_start, tone_len = _loopback_signal(duration_s, level_dbfs)
    captured, inp, out = play_and_capture(signal, device, wanted_hz=wanted_hz)
    assert captured is not None and inp is not None
    reference = signal[chirp_start : chirp_start + round(CHIRP_S * SAMPLE_RATE_HZ)]
    lag, correlation = find_delay(reference, captured)
    latency_samples = lag - chirp_start
    latency_ms = latency_samples * 1000 / SAMPLE_RATE_HZ
    trim = SAMPLE_RATE_HZ // 10
    begin = max(0, tone_start + max(0, latency_samples) + trim)
    segment = captured[begin : begin + max(tone_len - 2 * trim, CHUNK_SAMPLES)]
    analysis = tone_analysis(segment)
    error_hz = analysis.frequency_hz - SPEAKER_TONE_HZ
    capture_rms = rms_dbfs(captured)
    verdict, problems = loopback_verdict(correlation, error_hz, analysis, capture_rms)
    lines = [
        _device_line("Output", out),
        _device_line("Input", inp),
        (
            f"Played a {CHIRP_F0_HZ:.0f}-{CHIRP_F1_HZ:.0f} Hz chirp ({CHIRP_S:g} s) and a {SPEAKER_TONE_HZ:.0f} Hz "
            f"tone ({duration_s:g} s) at {level_dbfs:.1f} dBFS peak"
        ),
        f"Round-trip latency {latency_ms:.1f} ms ({latency_samples} samples), chirp correlation {correlation:.3f}",
        (
            f"Tone {analysis.frequency_hz:.2f} Hz (error {error_hz:+.2f} Hz) · level {analysis.level_dbfs:.1f} dBFS"
            f" · SNR {analysis.snr_db:.1f} dB · THD {analysis.thd_percent:.2g} % ({analysis.thd_db:.1f} dB)"
        ),
    ]
    lines += [f"Problem: {p}" for p in problems[1:]]
    data = {
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "input": {"index": inp.index, "name": inp.name, "rate_hz": inp.rate_hz},
        "latency_ms": round(latency_ms, 2),
        "latency_samples": latency_samples,
        "correlation": round(correlation, 4),
        "frequency_hz": round(analysis.frequency_hz, 3),
        "frequency_error_hz": round(error_hz, 3),
        "level_dbfs": round(analysis.level_dbfs, 2),
        "snr_db": round(analysis.snr_db, 2),
        "thd_percent": round(analysis.thd_percent, 4),
        "thd_db": round(analysis.thd_db, 2),
        "capture_rms_dbfs": round(capture_rms, 2),
        "problems": problems,
    }
    code = EXIT_PASS if verdict.passed else EXIT_FAIL
    return Result("loopback", code, verdict.name, verdict.advice, lines, data, verdict.diagnosis)


def _pick_utterance(text: str, utterance_id: str | None) -> Any:
    from audio_corpus import load_corpus

    corpus = load_corpus()
    if utterance_id:
        chosen = [u for u in corpus if u.id == utterance_id]
    else:
        wanted = text.strip().lower()
        chosen = sorted(
            (u for u in corpus if u.text.lower() == wanted), key=lambda u: u.kind != "clean"
        )  # stable: manifest order
    if not chosen:
        what = f"utterance {utterance_id!r}" if utterance_id else f"text {text!r}"
        texts = sorted({u.text for u in corpus})
        raise UsageError(f"the corpus has no {what}; corpus texts: {', '.join(texts)}")
    return chosen[0]


def _connect(url: str, timeout_s: float) -> Any:
    import websocket

    ws = websocket.WebSocket(enable_multithread=True)
    try:
        ws.connect(url, timeout=timeout_s, suppress_origin=True)
    except Exception as error:  # noqa: BLE001 - websocket-client raises many kinds; classify them all
        code = diagnoses.classify_connect_error(error)
        raise ConnectionFailed(diagnoses.explain(code, f"{url}: {error}"), code) from None
    return ws


def run_acoustic(args: argparse.Namespace) -> Result:
    """The guide's manual test, acoustically: play a corpus utterance on the output, capture the
    input in 1024-sample chunks and stream each chunk to the gateway as it arrives (the real
    pace of a microphone), then report the intent and the roundtrip.

    The protocol is :class:`voiceharness.protocol.ClientSession`; this function only moves
    bytes. End of speech is where the *capture* holds the utterance's last speech sample
    (found by cross-correlating the utterance with the capture), so the roundtrip counts from
    the frame that carried it to the socket, as DESIGN.md defines it.
    """
    import websocket

    from voiceharness import protocol

    utterance = _pick_utterance(args.text, args.utterance)
    speech = pcm16_to_float(utterance.pcm)
    # Play the utterance then silence; stream until a little after it (room for the audio
    # path's latency), shorter than the gateway's 500 ms end-of-speech silence when the end
    # marker is sent, and the browser tester's 1 s of trailing silence when it is not.
    tail_s = 0.3 if args.end_marker else 1.0
    stream_samples = speech.size + round(tail_s * SAMPLE_RATE_HZ)
    played16 = np.concatenate([speech, np.zeros(round(1.5 * SAMPLE_RATE_HZ))])

    sd = _sounddevice()
    in_spec, out_spec = _parse_device(args.device)
    inp, out = _open_duplex(sd, in_spec, out_spec, args.rate)
    rate = out.rate_hz
    played = resample(played16, SAMPLE_RATE_HZ, rate).astype(np.float32)

    ws = _connect(args.url, args.timeout)
    session = protocol.ClientSession(reply_timeout_s=args.timeout)
    chunks: queue.Queue[np.ndarray] = queue.Queue()
    position = 0

    def on_duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        n = max(0, min(frames, played.size - position))
        outdata[:n, 0] = played[position : position + n]
        outdata[n:] = 0
        position += frames
        chunks.put(indata[:, 0].copy())

    events: list[object] = []
    send_times: list[float] = []
    captured: list[np.ndarray] = []
    pending = np.zeros(0)
    try:
        ws.send_binary(session.header_message(as_binary=True))
        # End of speech is placed after streaming, from the capture itself (below).
        session.begin_turn(
            utterance_id=utterance.id,
            expected_intent=utterance.expected_intent,
            now=time.monotonic(),
            speech_ms=utterance.duration_ms,
        )
        stream = sd.Stream(
            samplerate=rate,
            blocksize=_block_size(rate),
            device=(inp.index, out.index),
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_duplex,
        )
        with stream:
            sent = 0
            while sent < stream_samples:
                waited_s = 0.0
                while True:
                    try:
                        block = chunks.get(timeout=0.1)
                        break
                    except queue.Empty:
                        dropped = _stream_dropped(stream)
                        if dropped is not None:
                            raise dropped from None
                        waited_s += 0.1
                        if waited_s > STREAM_WATCHDOG_S:
                            raise _stream_stalled(STREAM_WATCHDOG_S) from None
                pending = np.concatenate([pending, resample(block, rate, SAMPLE_RATE_HZ)])
                while pending.size >= CHUNK_SAMPLES and sent < stream_samples:
                    frame, pending = pending[:CHUNK_SAMPLES], pending[CHUNK_SAMPLES:]
                    ws.send_binary(float_to_pcm16(frame))
                    send_times.append(time.monotonic())
                    captured.append(frame)
                    sent += frame.size
        events += session.close_mic(time.monotonic(), chunks_sent=len(send_times))
        if args.end_marker:
            ws.send(protocol.end_marker_message())
        while not any(isinstance(e, protocol.TurnEnded) for e in events):
            deadline = session.next_deadline()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                events += session.poll(now)
                continue
            ws.settimeout(max(0.01, (deadline - now) if deadline else 0.5))
            try:
                opcode, payload = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                events += session.poll(time.monotonic())
                continue
            now = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                events += session.connection_lost(
                    now, int.from_bytes(payload[:2], "big") if payload else None
                )
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                events += session.receive(payload.decode("utf-8"), now)
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                events += session.receive(bytes(payload), now)
            else:
                session.frame_received(now)
    except (websocket.WebSocketException, OSError) as error:
        events += session.connection_lost(time.monotonic(), None, str(error))
    except sd.PortAudioError as error:
        raise _device_error(error, f"devices {inp.index} {inp.name} / {out.index} {out.name}") from None
    finally:
        ws.close()

    ended = [e for e in events if isinstance(e, protocol.TurnEnded)]
    record = ended[0].record if ended else None
    if ended:
        from voiceharness.judge import Expectation, judge

        judge(record, ended[0].audio, ended[0].metadata, Expectation(intent=utterance.expected_intent),
              ended_by=ended[0].ended_by, reply_timeout_ms=args.timeout * 1000)
    capture16 = np.concatenate(captured) if captured else np.zeros(0)
    lag, correlation = find_delay(
        speech[utterance.speech_start_sample : utterance.speech_end_sample], capture16
    )
    speech_end_in_capture = lag + (utterance.speech_end_sample - utterance.speech_start_sample)
    latency_ms = (lag - utterance.speech_start_sample) * 1000 / SAMPLE_RATE_HZ
    end_frame = min(max(speech_end_in_capture - 1, 0) // CHUNK_SAMPLES, len(send_times) - 1)
    end_of_speech_at = send_times[end_frame] if send_times else math.nan
    metadata = next((e for e in events if isinstance(e, protocol.ReplyMetadata)), None)
    first_audio = next((e for e in events if isinstance(e, protocol.ReplyAudio)), None)
    roundtrip_ms = (first_audio.at - end_of_speech_at) * 1000 if first_audio else math.nan
    intent_ms = (metadata.at - end_of_speech_at) * 1000 if metadata else math.nan
    level = rms_dbfs(capture16)

    def num(value: float, digits: int = 1) -> float | None:
        return None if math.isnan(value) else round(value, digits)

    data = {
        "url": args.url,
        "utterance": {
            "id": utterance.id,
            "text": utterance.text,
            "expected_intent": utterance.expected_intent,
        },
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "input": {"index": inp.index, "name": inp.name, "rate_hz": inp.rate_hz},
        "capture_rms_dbfs": round(level, 2),
        "capture_correlation": round(correlation, 4),
        "audio_latency_ms": round(latency_ms, 1),
        "intent": record.intent if record else "",
        "confidence": num(record.confidence, 3) if record else None,
        "transcript": record.transcript if record else "",
        "roundtrip_ms": num(roundtrip_ms),
        "intent_ms": num(intent_ms),
        "chunks_sent": record.chunks_sent if record else len(send_times),
        "chunks_received": record.chunks_received if record else 0,
        "reply_audio_bytes": record.reply_audio_bytes if record else 0,
        "end_marker": args.end_marker,
    }
    from voiceharness.bands import band_of

    band = band_of("roundtrip", roundtrip_ms) if not math.isnan(roundtrip_ms) else ""
    data["roundtrip_band"] = band
    lines = [
        _device_line("Output", out),
        _device_line("Input", inp),
        (
            f"Said {utterance.text!r} ({utterance.id}, {utterance.duration_ms:.0f} ms); captured at {level:.1f} dBFS, "
            f"audio path latency {latency_ms:.0f} ms, correlation {correlation:.2f}"
        ),
        f"Streamed {data['chunks_sent']} chunks of {CHUNK_SAMPLES} samples to {args.url}"
        + (" + end marker" if args.end_marker else ""),
    ]
    if record is not None and record.intent:
        lines.append(
            f"Intent {record.intent} (expected {utterance.expected_intent}), confidence "
            f"{record.confidence:.2f}, transcript {record.transcript!r}"
        )
    if not math.isnan(roundtrip_ms):
        lines.append(
            f"Roundtrip {roundtrip_ms:.0f} ms ({band}) · intent after {intent_ms:.0f} ms · "
            f"reply {data['reply_audio_bytes']} bytes in {data['chunks_received']} chunks"
        )
    if record is not None and record.success:
        return Result(
            "acoustic",
            EXIT_PASS,
            "OK",
            f"{record.intent} came back for {utterance.text!r}: the voice path works",
            lines,
            data,
        )
    failure = record.failure if record else "no_intent"
    detail = record.failure_detail if record else "the turn did not end"
    if level < SILENT_RMS_DBFS:
        failure, detail = "mic_silent", "the microphone heard nothing of the utterance"
    advice = diagnoses.explain(failure, detail)
    return Result("acoustic", EXIT_FAIL, failure, advice, lines, data, failure)


# ------------------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    dev = argparse.ArgumentParser(add_help=False)
    dev.add_argument("--device", help="device index or part of its name; IN,OUT for separate input/output")
    dev.add_argument(
        "--rate",
        type=int,
        default=SAMPLE_RATE_HZ,
        metavar="HZ",
        help="rate to open the device at (default %(default)s, the guide's); "
        "an unsupported rate falls back to the device's own, resampled to 16 kHz",
    )

    retry = argparse.ArgumentParser(add_help=False)
    retry.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="run a failed check again, up to this many times in all, when the failure may be a "
        "dropout of a busy machine (default %(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="mic_probe.py",
        description="Audio checks from the usage guide: devices, microphone levels, speaker tone, "
        "loopback measurements and the acoustic voice path. "
        "Exit 0 pass, 1 fail, 2 could not run.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("devices", parents=[common], help="input and output devices, defaults marked")
    mic = sub.add_parser(
        "mic", parents=[common, dev], help="live level bars, RMS/peak dBFS, clipping, verdict"
    )
    mic.add_argument("--duration", type=float, default=5.0, help="seconds to capture (default %(default)s)")
    mic.add_argument("--no-bars", action="store_true", help="no live level bars")
    mic.add_argument("--save", metavar="WAV", help="write the 16 kHz PCM16 capture to this file")
    spk = sub.add_parser(
        "speaker", parents=[common, dev, retry], help="play a 440 Hz tone, confirm it if captured back"
    )
    spk.add_argument(
        "--duration", type=float, default=2.0, help="tone length in seconds (default %(default)s)"
    )
    spk.add_argument("--level", type=float, default=TONE_LEVEL_DBFS, help="peak dBFS (default %(default)s)")
    spk.add_argument("--no-capture", action="store_true", help="only play; do not try to hear it back")
    loop = sub.add_parser(
        "loopback", parents=[common, dev, retry], help="chirp + tone out and back: latency, SNR, THD"
    )
    loop.add_argument(
        "--duration", type=float, default=1.0, help="tone length in seconds (default %(default)s)"
    )
    loop.add_argument(
        "--level", type=float, default=LOOPBACK_LEVEL_DBFS, help="peak dBFS (default %(default)s)"
    )
    ac = sub.add_parser(
        "acoustic",
        parents=[common, dev, retry],
        help="play a corpus utterance, capture it, stream it to the gateway: intent, roundtrip",
    )
    ac.add_argument(
        "--url",
        default=f"ws://127.0.0.1:7090{guide.WS_PATH_GATEWAY}",
        help="the gateway's WebSocket URL (default %(default)s)",
    )
    ac.add_argument(
        "--text",
        default="hello jarvis",
        help="say the first clean corpus utterance with this text (default %(default)r)",
    )
    ac.add_argument("--utterance", metavar="ID", help="say this corpus utterance instead")
    ac.add_argument(
        "--no-end-marker",
        dest="end_marker",
        action="store_false",
        help="end the utterance by trailing silence only (the browser tester's way)",
    )
    ac.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the reply (default %(default)s)"
    )
    return parser


def _emit(result: Result, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    out.writelines(line + "\n" for line in result.lines)
    out.write(f"Verdict: {result.verdict}" + (f" — {result.advice}" if result.advice else "") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if getattr(args, "duration", 1.0) <= 0:
            raise UsageError("--duration must be a positive number of seconds")
        if args.command == "devices":
            result = run_devices()
        elif args.command == "mic":
            result = run_mic(
                args.device,
                args.duration,
                bars=not args.no_bars,
                bar_stream=sys.stderr if args.json else sys.stdout,
                wanted_hz=args.rate,
                save=args.save,
            )
        elif args.command == "speaker":
            result = _with_attempts(
                lambda: run_speaker(
                    args.device,
                    args.duration,
                    args.level,
                    capture_back=not args.no_capture,
                    wanted_hz=args.rate,
                ),
                args.attempts,
                lambda r: r.exit_code == EXIT_FAIL,
                ("heard_frequency_hz", "heard_level_dbfs", "heard_snr_db"),
            )
        elif args.command == "loopback":
            result = run_loopback(
                args.device, args.duration, args.level, wanted_hz=args.rate, attempts=args.attempts
            )
        else:
            result = _with_attempts(
                lambda: run_acoustic(args),
                args.attempts,
                # only a capture that does not match what was played (dropouts) is worth a retry
                lambda r: (
                    r.exit_code == EXIT_FAIL and r.data.get("capture_correlation", 1.0) < MIN_CORRELATION
                ),
                ("intent", "capture_correlation", "roundtrip_ms"),
            )
    except StreamHung as error:
        # PortAudio's cleanup would wait for the stalled stream forever: report and leave now.
        _emit(
            Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, error.diagnosis),
            args.json,
            sys.stdout if args.json else sys.stderr,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_COULD_NOT_RUN)
    except DeviceError as error:
        result = Result(
            args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, error.diagnosis
        )
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except GatewayError as error:
        code = getattr(error, "diagnosis", None)
        result = Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, code)
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except HarnessError as error:
        result = Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error))
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_COULD_NOT_RUN
    _emit(result, args.json, out)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
